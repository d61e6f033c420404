"""The webhook receiver through its real handler and API Gateway v2 events, on the template's resources."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.config import DEFAULT_ROUTING
from invoice_bridge.errors import ConfigurationError
from invoice_bridge.keys import BUILDNEXION_EVENTS_PK
from invoice_bridge.queues import QueuePublisher
from invoice_bridge.receiver import MAX_BODY_BYTES
from sandbox.lambda_host import LocalLambdaContext
from tests.conftest import BUILDNEXION_EVENTS, emitted_metrics, load_event
from tests.integration.conftest import (
    WEBHOOK_SECRETS,
    Aws,
    apigw_event,
    context,
    invoke,
    signed_buildnexion,
    signed_tuimprenta,
)

QUEUE_OF = {"quipu": "QuipuQueue", "tuimprenta": "TuimprentaQueue", "facturadirecta": "FacturaDirectaQueue"}
ALL_QUEUES = tuple(QUEUE_OF.values())


def body_of(name: str) -> bytes:
    return json.dumps(load_event(f"buildnexion/{name}"), ensure_ascii=False).encode("utf-8")


def tuimprenta_body(name: str) -> bytes:
    """A sample tuimprenta event dated now (the receiver refuses one created more than a day ago)."""
    event = {**load_event(f"tuimprenta/{name}"), "created_at": datetime.now(UTC).isoformat()}
    return json.dumps(event).encode()


def total_depth(aws: Aws) -> int:
    return sum(aws.depth(q) for q in ALL_QUEUES)


@pytest.mark.parametrize("path", BUILDNEXION_EVENTS, ids=lambda p: Path(p).stem)
def test_each_sample_event_is_routed_to_its_queue_in_order_groups(handler: ModuleType, aws: Aws, path: Path) -> None:
    # Given a correctly signed sample event
    envelope = load_event(f"buildnexion/{path.name}")
    # Indented and not ASCII-escaped: a queue body re-serialised from the parsed event would differ.
    body = json.dumps(envelope, ensure_ascii=False, indent=2).encode()
    # When BuildNexion delivers it
    status, answer = invoke(handler, signed_buildnexion(body))
    # Then it is answered 200 and sits on the right queue, grouped by object and deduped by event id
    assert status == 200
    destination = DEFAULT_ROUTING.get(envelope["type"])
    if destination is None:
        assert answer == {"status": "ignored", "event_id": envelope["id"]}
        assert total_depth(aws) == 0
        return
    assert answer == {"status": "accepted", "event_id": envelope["id"], "destination": destination.value}
    queue = QUEUE_OF[destination.value]
    (message,) = aws.queue_messages(queue)
    assert message["Body"] == body.decode("utf-8")  # exactly the signed text
    assert message["MessageAttributes"]["event_id"]["StringValue"] == envelope["id"]
    assert message["MessageAttributes"]["event_type"]["StringValue"] == envelope["type"]
    if aws.provisioned.queues[queue].fifo:
        assert message["Attributes"]["MessageGroupId"] == envelope["data"]["object"]["id"]
        assert message["Attributes"]["MessageDeduplicationId"] == envelope["id"]
    assert sum(aws.depth(q) for q in ALL_QUEUES if q != queue) == 0


def test_redelivery_is_answered_200_and_enqueued_once(handler: ModuleType, aws: Aws) -> None:
    body = body_of("01_invoice_created.json")
    first = invoke(handler, signed_buildnexion(body))
    # A later retry carries a new timestamp and signature, as BuildNexion's retries do.
    second = invoke(handler, signed_buildnexion(body, timestamp=int(time.time()) + 5))
    assert first == (200, {"status": "accepted", "event_id": "evt_01JDEMO0000000000000000001", "destination": "quipu"})
    assert second == (
        200,
        {"status": "duplicate", "event_id": "evt_01JDEMO0000000000000000001", "destination": "quipu"},
    )
    assert aws.depth("QuipuQueue") == 1


def test_events_of_one_object_share_a_group_and_keep_their_order(handler: ModuleType, aws: Aws) -> None:
    for name in ("01_invoice_created.json", "02_invoice_updated.json", "03_invoice_created.json"):
        assert invoke(handler, signed_buildnexion(body_of(name)))[0] == 200
    messages = aws.queue_messages("QuipuQueue")
    groups = [(m["Attributes"]["MessageGroupId"], json.loads(m["Body"])["type"]) for m in messages]
    assert [g for g in groups if g[0] == "inv_8f3k2"] == [
        ("inv_8f3k2", "invoice.created"),
        ("inv_8f3k2", "invoice.updated"),
    ]


def test_rotation_either_secret_signs(handler: ModuleType, aws: Aws) -> None:
    old = invoke(handler, signed_buildnexion(body_of("01_invoice_created.json"), secrets=WEBHOOK_SECRETS[:1]))
    both = invoke(handler, signed_buildnexion(body_of("03_invoice_created.json"), secrets=WEBHOOK_SECRETS))
    assert old[0] == both[0] == 200
    assert aws.depth("QuipuQueue") == 2


def test_base64_encoded_body_is_verified_on_its_raw_bytes(handler: ModuleType, aws: Aws) -> None:
    body = body_of("08_purchase_order_created.json")
    event = signed_buildnexion(body)
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    assert invoke(handler, event)[0] == 200
    assert aws.depth("FacturaDirectaQueue") == 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda e: e["headers"].pop("buildnexion-signature"), id="missing"),
        pytest.param(lambda e: e["headers"].update({"buildnexion-signature": "nonsense"}), id="malformed"),
        pytest.param(lambda e: e.update(body=e["body"].replace("F-2026-0042", "F-2026-0043")), id="tampered"),
    ],
)
def test_bad_signatures_are_401_with_no_detail_and_nothing_enqueued(
    handler: ModuleType, aws: Aws, mutate: object
) -> None:
    event = signed_buildnexion(body_of("01_invoice_created.json"))
    mutate(event)  # type: ignore[operator]
    assert invoke(handler, event) == (401, {"message": "Unauthorized"})
    assert total_depth(aws) == 0


# The exact 300 s boundary is tested with a fixed clock in tests/unit; here a margin covers test run time.
@pytest.mark.parametrize("offset", [-330, 330])
def test_stale_or_future_signatures_are_401(handler: ModuleType, aws: Aws, offset: int) -> None:
    event = signed_buildnexion(body_of("01_invoice_created.json"), timestamp=int(time.time()) + offset)
    assert invoke(handler, event) == (401, {"message": "Unauthorized"})
    assert total_depth(aws) == 0


def test_a_secret_not_in_the_list_is_401(handler: ModuleType) -> None:
    event = signed_buildnexion(body_of("01_invoice_created.json"), secrets=["whsec_someone_else"])
    assert invoke(handler, event)[0] == 401


def test_body_over_256_kib_is_413_before_the_signature_is_looked_at(handler: ModuleType, aws: Aws) -> None:
    body = b'{"id": "evt_big", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    event = apigw_event("/webhooks/buildnexion", body, {})  # not even signed
    assert invoke(handler, event) == (413, {"message": "Payload Too Large"})
    assert total_depth(aws) == 0


def test_body_of_exactly_256_kib_is_not_refused_for_size(handler: ModuleType) -> None:
    envelope = load_event("buildnexion/01_invoice_created.json")
    envelope["data"]["object"]["notes"] = ""
    base = len(json.dumps(envelope).encode())
    envelope["data"]["object"]["notes"] = "x" * (MAX_BODY_BYTES - base)
    body = json.dumps(envelope).encode()
    assert len(body) == MAX_BODY_BYTES
    assert invoke(handler, signed_buildnexion(body))[0] == 200


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"{not json", "body", "is not valid JSON"),
        (
            '{"id": "evt_utf16", "type": "invoice.created", "created": 1}'.encode("utf-16"),
            "body",
            "is not UTF-8 text",
        ),
        (b"[1, 2]", "body", "must be a JSON object"),
        (b'{"type": "invoice.created", "created": 1}', "id", "Field required"),
        (b'{"id": "evt_1", "type": "invoice.created", "created": 1}', "data", "Field required"),
        (
            b'{"id": "evt_1", "type": "invoice.created", "created": 1, "data": {"object": {"object": "invoice"}}}',
            "data.object.id",
            "Field required",
        ),
    ],
)
def test_malformed_payloads_are_400_naming_the_field(
    handler: ModuleType, aws: Aws, body: bytes, field: str, message: str
) -> None:
    status, answer = invoke(handler, signed_buildnexion(body))
    assert (status, answer) == (400, {"message": message, "field": field})
    assert total_depth(aws) == 0


def test_unknown_event_type_is_200_and_ignored(handler: ModuleType, aws: Aws) -> None:
    body = b'{"id": "evt_new_kind", "type": "timesheet.approved", "created": 1763719200, "data": {"object": {}}}'
    assert invoke(handler, signed_buildnexion(body)) == (200, {"status": "ignored", "event_id": "evt_new_kind"})
    assert total_depth(aws) == 0


def test_logs_carry_the_event_id_and_no_body_or_secret(handler: ModuleType, aws: Aws, log_stream: io.StringIO) -> None:
    invoke(handler, signed_buildnexion(body_of("05_sales_invoice_created.json")))
    invoke(handler, signed_buildnexion(body_of("05_sales_invoice_created.json"), secrets=["wrong"]))
    invoke(handler, signed_buildnexion(body_of("12_provider_updated.json")))
    output = log_stream.getvalue()
    logs = [json.loads(line) for line in output.splitlines()]
    enqueued = next(log for log in logs if log["message"] == "event enqueued")
    assert (enqueued["correlation_id"], enqueued["event_type"], enqueued["object_id"], enqueued["destination"]) == (
        "evt_01JDEMO0000000000000000005",
        "sales_invoice.created",
        "sin_9",
        "tuimprenta",
    )
    ignored = next(log for log in logs if log["message"] == "event type not routed; ignored")
    assert ignored["event_type"] == "provider.updated"
    assert any(log.get("reason") == "signature_mismatch" for log in logs)
    for leaked in ("Inversiones ABC", "admin@abc.com", "J-12345678-9", *WEBHOOK_SECRETS):
        assert leaked not in output


def test_metrics_count_each_outcome(handler: ModuleType, aws: Aws, capfd: pytest.CaptureFixture[str]) -> None:
    body = body_of("01_invoice_created.json")
    invoke(handler, signed_buildnexion(body))
    invoke(handler, signed_buildnexion(body))
    invoke(handler, signed_buildnexion(body, secrets=["wrong"]))
    invoke(handler, signed_buildnexion(body_of("12_provider_updated.json")))
    metrics = emitted_metrics(capfd.readouterr().out)
    names = [name for name, _ in metrics]
    for name in ("WebhookDuplicate", "WebhookRejected", "WebhookIgnored"):
        assert name in names
    # Deliveries are API Gateway's own Count metric and enqueued events the queue's NumberOfMessagesSent (both
    # free): no custom blob per delivery for either
    assert "WebhookReceived" not in names
    assert "WebhookAccepted" not in names
    rejected = next(dimensions for name, dimensions in metrics if name == "WebhookRejected")
    assert rejected["reason"] == "signature_mismatch"
    assert sum(1 for name, _ in metrics) == 3  # the duplicate, the rejection, the ignored event


def test_tuimprenta_webhook_is_recorded_once_for_the_poller(handler: ModuleType, aws: Aws) -> None:
    body = tuimprenta_body("invoice_issued.json")
    assert invoke(handler, signed_tuimprenta(body)) == (200, {"status": "recorded", "event_id": "evt_tui_0002"})
    assert invoke(handler, signed_tuimprenta(body)) == (200, {"status": "duplicate", "event_id": "evt_tui_0002"})
    items = aws.session.client("dynamodb").scan(TableName=aws.provisioned.tables["StateTable"])["Items"]
    assert len(items) == 1
    assert items[0]["pk"]["S"] == "tuimprenta#webhook-events"
    assert items[0]["invoice_id"]["S"] == "inv_123"
    # What the poller needs and nothing of the invoice's content (customer, totals).
    assert set(items[0]) == {"pk", "sk", "event_type", "created_at", "received_at", "ttl", "invoice_id"}
    assert items[0]["sk"]["S"] == "event#evt_tui_0002"
    assert total_depth(aws) == 0


def test_tuimprenta_webhook_with_a_bad_signature_is_401(handler: ModuleType, aws: Aws) -> None:
    body = tuimprenta_body("batch_completed.json")
    assert invoke(handler, signed_tuimprenta(body, secret="wrong")) == (401, {"message": "Unauthorized"})
    assert aws.session.client("dynamodb").scan(TableName=aws.provisioned.tables["StateTable"])["Count"] == 0


def test_tuimprenta_malformed_event_names_the_field(handler: ModuleType) -> None:
    status, answer = invoke(handler, signed_tuimprenta(b'{"id": "evt_x", "type": "batch.completed", "data": {}}'))
    assert (status, answer["field"]) == (400, "created_at")


def test_unknown_destination_in_the_routing_table_fails_the_cold_start(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTING_TABLE", json.dumps({"invoice.created": "holded"}))
    with pytest.raises(ConfigurationError, match=r'ROUTING_TABLE\["invoice.created"\]: unknown destination'):
        handler.lambda_handler(signed_buildnexion(body_of("01_invoice_created.json")), context())


def test_empty_secret_fails_the_invocation_naming_the_field_only(handler: ModuleType, aws: Aws) -> None:
    # The template creates the secret with empty fields until the operator fills it.
    aws.session.client("secretsmanager").put_secret_value(
        SecretId=aws.provisioned.secrets["BuildNexionSecret"], SecretString='{"api_key": "", "webhook_secrets": []}'
    )
    with pytest.raises(ConfigurationError) as caught:
        handler.lambda_handler(signed_buildnexion(body_of("01_invoice_created.json")), context())
    assert caught.value.name == "secret buildnexion field api_key"
    assert total_depth(aws) == 0


def secret_unreadable(aws: Aws, logical_id: str) -> None:
    """Make reading the secret fail the invocation (as an unfilled secret does)."""
    aws.session.client("secretsmanager").put_secret_value(
        SecretId=aws.provisioned.secrets[logical_id], SecretString="{}"
    )


@pytest.mark.parametrize("path", ["/webhooks/buildnexion", "/webhooks/tuimprenta"])
@pytest.mark.parametrize("encoding", ["text", "base64", "invalid base64"])
def test_oversized_body_is_413_before_the_secret_or_the_encoding_is_looked_at(
    handler: ModuleType, aws: Aws, path: str, encoding: str
) -> None:
    # Given secrets that would fail the invocation if they were read at all
    secret_unreadable(aws, "BuildNexionSecret")
    secret_unreadable(aws, "TuimprentaSecret")
    body = b'{"id": "evt_big", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    event = apigw_event(path, body, {})
    if encoding != "text":
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    if encoding == "invalid base64":
        event["body"] = "!" + event["body"][1:]
    # When it arrives, it is refused for its size first, on both routes
    assert invoke(handler, event) == (413, {"message": "Payload Too Large"})
    assert total_depth(aws) == 0


def test_base64_body_of_exactly_256_kib_is_not_refused_for_size(handler: ModuleType, aws: Aws) -> None:
    envelope = load_event("buildnexion/01_invoice_created.json")
    envelope["data"]["object"]["notes"] = ""
    envelope["data"]["object"]["notes"] = "x" * (MAX_BODY_BYTES - len(json.dumps(envelope).encode()))
    body = json.dumps(envelope).encode()
    event = signed_buildnexion(body)
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    assert invoke(handler, event)[0] == 200
    assert aws.depth("QuipuQueue") == 1


def dedupe_items(aws: Aws) -> list[dict[str, Any]]:
    table = aws.provisioned.tables["StateTable"]
    items: list[dict[str, Any]] = aws.session.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": BUILDNEXION_EVENTS_PK}},
    )["Items"]
    return items


@pytest.mark.parametrize(("ttl", "expected"), [(None, 7 * 24 * 3600), ("7200", 7200)])
def test_dedupe_record_is_keyed_by_the_event_id_and_lives_the_configured_time(
    handler: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch, ttl: str | None, expected: int
) -> None:
    if ttl is None:
        monkeypatch.delenv("IDEMPOTENCY_TTL_SECONDS", raising=False)
    else:
        monkeypatch.setenv("IDEMPOTENCY_TTL_SECONDS", ttl)
    before = int(time.time())
    assert invoke(handler, signed_buildnexion(body_of("01_invoice_created.json")))[0] == 200
    after = int(time.time())
    (item,) = dedupe_items(aws)
    # The key survives code renames: a fixed partition and the event id, nothing else.
    assert item["sk"]["S"] == "event#evt_01JDEMO0000000000000000001"
    (message,) = aws.queue_messages("QuipuQueue")
    assert item["message_id"]["S"] == message["MessageId"]
    assert item["destination"]["S"] == "quipu"
    assert before + expected <= int(item["ttl"]["N"]) <= after + expected


def test_an_expired_dedupe_record_no_longer_counts_before_dynamodb_deletes_it(handler: ModuleType, aws: Aws) -> None:
    # Given an event enqueued once, whose record has expired (DynamoDB's TTL deletes items only eventually)
    body = body_of("08_purchase_order_created.json")
    assert invoke(handler, signed_buildnexion(body))[1]["status"] == "accepted"
    (item,) = dedupe_items(aws)
    expired = {**item, "ttl": {"N": str(int(time.time()) - 1)}}
    aws.session.client("dynamodb").put_item(TableName=aws.provisioned.tables["StateTable"], Item=expired)
    # When BuildNexion delivers it again, then it is enqueued again and recorded afresh
    assert invoke(handler, signed_buildnexion(body, timestamp=int(time.time()) + 5))[1]["status"] == "accepted"
    (renewed,) = dedupe_items(aws)
    assert int(renewed["ttl"]["N"]) > int(time.time())


class InvocationKilled(BaseException):
    """Stands for Lambda killing the instance mid-invocation (no exception handler runs)."""


def test_a_delivery_killed_mid_enqueue_does_not_block_the_retry(
    handler: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = body_of("08_purchase_order_created.json")

    def killed(*args: object, **kwargs: object) -> str:
        raise InvocationKilled

    # Given a delivery whose instance is killed while enqueueing (no handler of ours runs after it)
    at_deadline = LocalLambdaContext("WebhookReceiverFunction", 512, "req-killed", int(time.time() * 1000))
    with monkeypatch.context() as patch:
        patch.setattr(QueuePublisher, "publish", killed)
        with pytest.raises(InvocationKilled):
            handler.lambda_handler(signed_buildnexion(body), cast(LambdaContext, at_deadline))
    # When BuildNexion retries it, then nothing of the dead invocation stands in the way: enqueued
    assert invoke(handler, signed_buildnexion(body))[1]["status"] == "accepted"
    assert aws.depth("FacturaDirectaQueue") == 1


def test_tuimprenta_delivery_is_counted_logged_and_its_secret_named(
    handler: ModuleType, aws: Aws, log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    body = tuimprenta_body("invoice_issued.json")
    invoke(handler, signed_tuimprenta(body))
    invoke(handler, signed_tuimprenta(body))
    names = [name for name, _ in emitted_metrics(capfd.readouterr().out)]
    assert "WebhookReceived" not in names
    # each outcome is its log line below, not a metric series of its own ($0.30 a month each)
    assert "TuimprentaEventRecorded" not in names
    assert "TuimprentaEventDuplicate" not in names
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    outcomes = [log for log in logs if "tuimprenta event" in log["message"]]
    assert [log["message"] for log in outcomes] == [
        "tuimprenta event recorded for the poller",
        "tuimprenta event already recorded",
    ]
    assert {(log["correlation_id"], log["event_type"]) for log in outcomes} == {("evt_tui_0002", "invoice.issued")}
    secret_unreadable(aws, "TuimprentaSecret")
    handler.receiver.cache_clear()  # a cold start: the warm one keeps the secret it read for a minute
    with pytest.raises(ConfigurationError) as caught:
        handler.lambda_handler(signed_tuimprenta(body), context())
    assert caught.value.name == "secret tuimprenta field api_key"


def test_a_webhook_secret_added_since_the_container_read_them_is_read_again_on_a_mismatch(
    handler: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from invoice_bridge import secrets
    from sandbox.settings import LocalSettings

    # The secrets are cached an hour; a mismatch reads them again (at most once a minute: 0 here, no waiting).
    monkeypatch.setattr(secrets, "REREAD_AFTER_REFUSAL_SECONDS", 0.0)
    reads: list[str] = []
    real_get = SecretsProvider.get

    def counted_get(provider: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("force_fetch"):
            reads.append(name)
        return real_get(provider, name, *args, **kwargs)

    monkeypatch.setattr(SecretsProvider, "get", counted_get)
    assert invoke(handler, signed_buildnexion(body_of("01_invoice_created.json")))[0] == 200
    assert invoke(handler, signed_buildnexion(body_of("02_invoice_updated.json")))[0] == 200
    assert len(reads) == 1  # one read for two deliveries
    # When the operator appends a new webhook secret and BuildNexion signs with it alone
    api_key = LocalSettings.from_env({}).buildnexion_api_key
    aws.session.client("secretsmanager").put_secret_value(
        SecretId=aws.provisioned.secrets["BuildNexionSecret"],
        SecretString=json.dumps({"api_key": api_key, "webhook_secrets": [*WEBHOOK_SECRETS, "whsec_rotated"]}),
    )
    body = body_of("05_sales_invoice_created.json")
    # Then the first such delivery is accepted: the secrets are read again before answering
    assert invoke(handler, signed_buildnexion(body, secrets=["whsec_rotated"]))[0] == 200
    assert len(reads) == 2
    # And a signature no secret makes is still refused, after one more read at most
    assert invoke(handler, signed_buildnexion(body, secrets=["whsec_nobody"]))[0] == 401
    assert len(reads) == 3
