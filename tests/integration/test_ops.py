"""The operator commands on moto (the deployed-stack path) with the sandbox BuildNexion on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from invoice_bridge.config import Destination
from invoice_bridge.ledger import Ledger, LedgerEntry, StateTable
from ops import commands
from ops.target import Target, TargetError, from_stack
from sandbox.aws_local import intrinsics_for
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cfn import REGION, Template, TemplateError
from tests.conftest import ROOT, load_event
from tests.integration.conftest import WEBHOOK_SECRETS, Aws

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

T0 = datetime(2026, 11, 3, 10, 15, tzinfo=UTC)


@pytest.fixture
def peer() -> Iterator[BuildNexionPeer]:
    running = BuildNexionPeer(DEFAULT_API_KEY, WEBHOOK_SECRETS)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def target(aws: Aws, peer: BuildNexionPeer) -> Target:
    template = Template.load(ROOT / "template.yaml")
    parameters = {**template.parameter_defaults(), "BuildNexionApiUrl": peer.base_url}
    intrinsics = intrinsics_for(template, parameters, aws.provisioned)
    outputs: dict[str, str] = {}
    for key, spec in template.document["Outputs"].items():
        try:
            outputs[key] = str(intrinsics.resolve(spec["Value"]))
        except TemplateError:
            continue  # the HTTP API's URLs: no API Gateway on moto
    routing = json.loads(parameters["RoutingTable"])
    return Target("test-stack", outputs, aws.session, routing_table=routing)


def invoice(index: int, updated: datetime) -> dict[str, Any]:
    obj = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    return {
        **obj,
        "id": f"inv_bf{index:04d}",
        "invoice_number": f"F-BF-{index:04d}",
        "updated_at": updated.isoformat().replace("+00:00", "Z"),
    }


def dead_letter(aws: Aws, destination_queue: str, body: str, reason: str | None, group: str) -> None:
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        "event_id": {"DataType": "String", "StringValue": json.loads(body)["id"]}
    }
    if reason:
        attributes["error_message"] = {"DataType": "String", "StringValue": reason}
        attributes["error_code"] = {"DataType": "String", "StringValue": "422"}
        attributes["attempts"] = {"DataType": "Number", "StringValue": "1"}
    aws.session.client("sqs").send_message(
        QueueUrl=aws.provisioned.queues[destination_queue].url,
        MessageBody=body,
        MessageAttributes=attributes,
        MessageGroupId=group,
        MessageDeduplicationId=json.loads(body)["id"],
    )


def envelope(event_id: str, object_id: str) -> str:
    event = load_event("buildnexion/01_invoice_created.json")
    event["id"] = event_id
    event["data"]["object"]["id"] = object_id
    return json.dumps(event)


def test_status_counts_the_ledger_and_the_queues(aws: Aws, target: Target) -> None:
    # Given a ledger with two synced invoices (one whose Quipu total differs) and one failed, one event
    # waiting and one dead-lettered
    ledger = Ledger(StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"]))
    ledger.save(
        LedgerEntry(destination="quipu", object_id="inv_1").synced(
            "q1", T0, expected_total_cents=100, remote_total_cents=100
        )
    )
    ledger.save(
        LedgerEntry(destination="quipu", object_id="inv_2").synced(
            "q2", T0, expected_total_cents=100, remote_total_cents=99
        )
    )
    ledger.save(LedgerEntry(destination="quipu", object_id="inv_3").failed("422", "bad"))
    sqs = aws.session.client("sqs")
    sqs.send_message(
        QueueUrl=aws.provisioned.queues["QuipuQueue"].url,
        MessageBody=envelope("e1", "inv_4"),
        MessageGroupId="inv_4",
        MessageDeduplicationId="e1",
    )
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_3"), "number: ya existe", "inv_3")

    # When the operator asks for the status
    rows = {row.destination: row for row in commands.status(target)}

    # Then each destination's row says what happened
    quipu = rows["quipu"]
    assert (quipu.synced, quipu.failed, quipu.pending, quipu.in_flight, quipu.dead_lettered) == (2, 1, 1, 0, 1)
    assert quipu.mismatches == ["inv_2"]
    assert quipu.last_success is not None
    assert rows["facturadirecta"].as_json()["synced"] == 0
    assert set(rows) == {"quipu", "tuimprenta", "facturadirecta"}


def test_dlq_list_shows_reasons_and_leaves_messages_in_place(aws: Aws, target: Target) -> None:
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "number: ya existe", "inv_1")
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_2"), None, "inv_2")  # redriven by SQS itself
    letters = commands.dlq_list(target, Destination.QUIPU)
    by_object = {letter.object_id: letter for letter in letters}
    assert by_object["inv_1"].reason == "number: ya existe"
    assert by_object["inv_1"].event_type == "invoice.created"
    assert by_object["inv_1"].attempts == 1
    assert by_object["inv_2"].reason == "failed on every receive (maxReceiveCount reached)"
    # listing twice finds the same two: nothing was consumed
    assert {letter.message_id for letter in commands.dlq_list(target, Destination.QUIPU)} == {
        letter.message_id for letter in letters
    }


def test_dlq_redrive_by_id_moves_only_that_event_back_without_its_failure_attributes(aws: Aws, target: Target) -> None:
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "number: ya existe", "inv_1")
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_2"), "other", "inv_2")
    result = commands.dlq_redrive(target, Destination.QUIPU, ["inv_1", "inv_404"])
    assert len(result.moved) == 1
    assert result.missing == ["inv_404"]
    (back,) = aws.queue_messages("QuipuQueue")
    assert json.loads(back["Body"])["id"] == "e1"
    assert back["Attributes"]["MessageGroupId"] == "inv_1"
    assert set(back["MessageAttributes"]) == {"event_id", "first_failed_at"}
    assert [letter.object_id for letter in commands.dlq_list(target, Destination.QUIPU)] == ["inv_2"]


def test_dlq_redrive_of_everything_on_a_fifo_queue_moves_each_message(aws: Aws, target: Target) -> None:
    for index in range(3):
        dead_letter(aws, "QuipuDeadLetterQueue", envelope(f"e{index}", f"inv_{index}"), "x", f"inv_{index}")
    result = commands.dlq_redrive(target, Destination.QUIPU)
    assert (len(result.moved), result.task_handle) == (3, None)
    assert len(aws.queue_messages("QuipuQueue")) == 3
    assert commands.dlq_list(target, Destination.QUIPU) == []


def test_dlq_redrive_of_a_standard_queue_uses_sqs_own_message_move_task(
    aws: Aws, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto has no StartMessageMoveTask: the real client is used for everything else, that call is recorded.
    sqs = target.sqs()
    aws.session.client("sqs").send_message(
        QueueUrl=aws.provisioned.queues["TuimprentaDeadLetterQueue"].url, MessageBody=envelope("e1", "sin_1")
    )
    calls: list[dict[str, str]] = []

    def move(**kwargs: str) -> dict[str, str]:
        calls.append(kwargs)
        return {"TaskHandle": "task-1"}

    monkeypatch.setattr(sqs, "start_message_move_task", move)
    result = commands.dlq_redrive(target, Destination.TUIMPRENTA)
    assert result.task_handle == "task-1"
    assert calls == [
        {
            "SourceArn": aws.provisioned.queues["TuimprentaDeadLetterQueue"].arn,
            "DestinationArn": aws.provisioned.queues["TuimprentaQueue"].arn,
        }
    ]
    # the message was left visible for SQS to move
    assert len(commands.dlq_list(target, Destination.TUIMPRENTA)) == 1


def test_a_rejected_sales_invoice_report_is_not_redriven_but_pointed_to_replay(aws: Aws, target: Target) -> None:
    report = {
        "object_id": "sin_9",
        "event_id": "evt_9",
        "batch_id": "batch_1",
        "error_code": "E1001",
        "error_message": "El campo tax_id es requerido",
    }
    aws.session.client("sqs").send_message(
        QueueUrl=aws.provisioned.queues["TuimprentaDeadLetterQueue"].url,
        MessageBody=json.dumps(report),
        MessageAttributes={"error_message": {"DataType": "String", "StringValue": report["error_message"]}},
    )
    (letter,) = commands.dlq_list(target, Destination.TUIMPRENTA)
    assert (letter.object_id, letter.event_id, letter.is_event) == ("sin_9", "evt_9", False)
    assert letter.reason == "El campo tax_id es requerido"
    result = commands.dlq_redrive(target, Destination.TUIMPRENTA, ["sin_9"])
    assert (result.moved, result.missing, result.replay_only) == ([], [], ["sin_9"])
    assert aws.queue_messages("TuimprentaQueue") == []
    assert len(commands.dlq_list(target, Destination.TUIMPRENTA)) == 1


def test_dlq_drop_deletes_only_the_named_event(aws: Aws, target: Target) -> None:
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "x", "inv_1")
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_2"), "y", "inv_2")
    (first,) = [letter for letter in commands.dlq_list(target, Destination.QUIPU) if letter.object_id == "inv_1"]
    result = commands.dlq_drop(target, Destination.QUIPU, [first.message_id])
    assert result.moved == [first.message_id]
    assert [letter.object_id for letter in commands.dlq_list(target, Destination.QUIPU)] == ["inv_2"]
    assert aws.queue_messages("QuipuQueue") == []


def test_replay_enqueues_the_latest_state_as_a_fresh_event(aws: Aws, target: Target, peer: BuildNexionPeer) -> None:
    latest = {**invoice(1, T0 + timedelta(days=1)), "status": "void"}
    peer.put_objects([latest, load_event("buildnexion/08_purchase_order_created.json")["data"]["object"]])
    done = commands.replay(target, ["inv_bf0001", "po_55"])
    assert done == [("inv_bf0001", "invoice.voided", "quipu"), ("po_55", "purchase_order.updated", "facturadirecta")]
    (message,) = aws.queue_messages("QuipuQueue")
    body = json.loads(message["Body"])
    assert body["type"] == "invoice.voided"
    assert body["data"]["object"]["updated_at"] == latest["updated_at"]
    assert body["id"].startswith("evt_replay_")
    assert message["Attributes"]["MessageGroupId"] == "inv_bf0001"
    with pytest.raises(TargetError, match="pass --kind"):
        commands.replay(target, ["x_1"])


def test_backfill_of_250_interrupted_and_resumed_enqueues_each_once(
    aws: Aws, target: Target, peer: BuildNexionPeer
) -> None:
    # Given 250 invoices updated in November and 5 updated before the backfill's period
    peer.put_objects([invoice(i, T0 + timedelta(minutes=i)) for i in range(250)])
    peer.put_objects([invoice(900 + i, datetime(2026, 9, 1, tzinfo=UTC)) for i in range(5)])

    # When a backfill is stopped after 100 objects (what Ctrl-C does) and then run again
    run = commands.backfill(target, Destination.QUIPU, date(2026, 11, 1), page_size=40)
    for checkpoint in run:
        if checkpoint.enqueued == 100:
            break
    run.close()
    *_, last = commands.backfill(target, Destination.QUIPU, date(2026, 11, 1), page_size=40)

    # Then every invoice of the period is on the queue exactly once, and nothing else
    assert (last.enqueued, last.done) == (250, True)
    ids = [json.loads(m["Body"])["data"]["object"]["id"] for m in aws.queue_messages("QuipuQueue")]
    assert sorted(ids) == sorted(f"inv_bf{i:04d}" for i in range(250))
    # and a second full run is safe: the same versions carry the same event ids (SQS drops the copies)
    for _ in commands.backfill(target, Destination.QUIPU, date(2026, 11, 1), page_size=100):
        pass
    assert aws.queue_messages("QuipuQueue") == []


def test_backfill_until_leaves_out_later_updates(aws: Aws, target: Target, peer: BuildNexionPeer) -> None:
    peer.put_objects([invoice(1, T0), invoice(2, datetime(2026, 12, 2, tzinfo=UTC))])
    *_, last = commands.backfill(target, Destination.QUIPU, date(2026, 11, 1), date(2026, 12, 1))
    assert last.enqueued == 1
    assert [json.loads(m["Body"])["data"]["object"]["id"] for m in aws.queue_messages("QuipuQueue")] == ["inv_bf0001"]


def test_webhook_register_appends_the_new_secret_and_retire_keeps_the_newest(
    aws: Aws, target: Target, peer: BuildNexionPeer
) -> None:
    target.outputs["WebhookUrl"] = "https://example.invalid/webhooks/buildnexion"
    subscription, kept = commands.webhook_register(target)  # the first registration: the sandbox's secrets
    assert subscription.startswith("we_")
    _, kept = commands.webhook_register(target)  # the same URL again: a rotation
    stored = target.read_secret("BuildNexionSecretArn")["webhook_secrets"]
    assert kept == len(stored) == 3
    assert stored[:2] == WEBHOOK_SECRETS
    assert stored[2].startswith("whsec_")
    assert stored[2] not in WEBHOOK_SECRETS
    assert commands.webhook_retire_secret(target) == 2
    assert target.read_secret("BuildNexionSecretArn")["webhook_secrets"] == stored[2:]
    assert commands.webhook_retire_secret(target) == 0


def test_reconcile_reports_totals_and_versions_that_disagree(aws: Aws, target: Target, peer: BuildNexionPeer) -> None:
    ledger = Ledger(StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"]))
    good, wrong, stale = invoice(1, T0), invoice(2, T0), invoice(3, T0 + timedelta(hours=2))
    peer.put_objects([good, wrong, stale])
    ledger.save(
        LedgerEntry(destination="quipu", object_id=good["id"]).synced("q1", T0, remote_total_cents=good["total_amount"])
    )
    ledger.save(
        LedgerEntry(destination="quipu", object_id=wrong["id"]).synced(
            "q2", T0, remote_total_cents=good["total_amount"] - 1
        )
    )
    ledger.save(
        LedgerEntry(destination="quipu", object_id=stale["id"]).synced(
            "q3", T0, remote_total_cents=stale["total_amount"]
        )
    )
    checked, differences = commands.reconcile(target, Destination.QUIPU)
    assert checked == 3
    assert {(d.object_id, d.problem) for d in differences} == {
        (
            "inv_bf0002",
            f"total: BuildNexion {good['total_amount'] / 100:.2f}, platform {(good['total_amount'] - 1) / 100:.2f}",
        ),
        ("inv_bf0003", "BuildNexion has a newer version not yet synced"),
    }
    assert commands.reconcile(target, Destination.QUIPU, since=date(2030, 1, 1)) == (0, [])


def test_a_deployed_stack_is_found_through_its_outputs(aws: Aws) -> None:
    cloudformation = aws.session.client("cloudformation")
    queue_url = aws.provisioned.queues["QuipuQueue"].url
    cloudformation.create_stack(
        StackName="invoice-bridge",
        TemplateBody=json.dumps(
            {
                "Parameters": {"RoutingTable": {"Type": "String"}},
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"QuipuQueueUrl": {"Value": queue_url}, "StateTableName": {"Value": "t"}},
            }
        ),
        Parameters=[{"ParameterKey": "RoutingTable", "ParameterValue": '{"invoice.created": "quipu"}'}],
    )
    target = from_stack("invoice-bridge", REGION)
    assert target.queue_url(Destination.QUIPU) == queue_url
    assert target.routing_table == {"invoice.created": "quipu"}
    with pytest.raises(TargetError, match="has no output FacturaDirectaQueueUrl"):
        target.queue_url(Destination.FACTURADIRECTA)
    with pytest.raises(TargetError, match="stack missing"):
        from_stack("missing", REGION)
