"""The FacturaDirecta exporter on moto (state table, queues, secrets) against the sandbox peers on loopback."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.errors import PermanentSyncError, PlatformError, RetryLater
from invoice_bridge.facturadirecta.client import FacturaDirectaXmlClient
from invoice_bridge.facturadirecta.exporter import DESTINATION, FacturaDirectaExporter, Outcome
from invoice_bridge.facturadirecta.models import PurchaseOrderDocument, PurchaseOrderRecord
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Ledger, StateTable, SyncStatus
from sandbox.aws_local import intrinsics_for
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cfn import Template
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.lambda_host import LocalLambdaContext
from sandbox.settings import LocalSettings
from tests.conftest import ROOT, emitted_metrics, load_event, load_handler_module
from tests.integration.conftest import Aws

TOKEN = LocalSettings.from_env({}).facturadirecta_api_token


def logged_messages(log_stream: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in log_stream.getvalue().splitlines()]


SERVICE = "webhook-receiver"  # POWERTOOLS_SERVICE_NAME as tests/conftest.py sets it


@dataclass
class World:
    aws: Aws
    bn: BuildNexionPeer
    fd: FacturaDirectaPeer
    table: StateTable

    def exporter(self, *, clock: Any = time.time, read_timeout: float = 5.0) -> FacturaDirectaExporter:
        bn = BuildNexionClient(self.bn.base_url, SecretStr(DEFAULT_API_KEY))
        fd = FacturaDirectaXmlClient(self.fd.base_url, lambda: SecretStr(TOKEN), timeout=(2.0, read_timeout))
        return FacturaDirectaExporter(table=self.table, buildnexion=lambda: bn, api=lambda: fd, clock=clock)

    def event(self, name: str, **changes: Any) -> WebhookEvent:
        """A demo event whose object BuildNexion now holds (its latest state)."""
        envelope = load_event(f"buildnexion/{name}")
        envelope["data"]["object"].update(changes)
        self.bn.put_objects([envelope["data"]["object"]])
        return WebhookEvent.model_validate(envelope)

    def ledger(self, order_id: str) -> Any:
        return Ledger(self.table).get(DESTINATION, order_id)


@pytest.fixture
def world(aws: Aws) -> Iterator[World]:
    bn = BuildNexionPeer(DEFAULT_API_KEY, ["whsec_test"])
    fd = FacturaDirectaPeer(TOKEN, buildnexion_api_key=DEFAULT_API_KEY)
    bn.start()
    fd.start()
    try:
        yield World(aws, bn, fd, StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"]))
    finally:
        fd.stop()
        bn.stop()


def fd_writes(world: World) -> dict[str, int]:
    return {k: v for k, v in world.fd.calls.items() if not k.startswith("GET")}


def test_create_makes_the_provider_and_the_order_with_exact_lines_and_totals(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    event = world.event("08_purchase_order_created.json")
    outcome = world.exporter().sync(event, Deadline.unlimited())
    assert outcome.action == "created"
    (order,) = world.fd.orders_tagged("bn:po_55")
    (provider,) = world.fd.state.providers.values()
    assert provider["name"] == "Hormigones Muñoz, S.L."
    assert provider["taxCode"] == "B12345678"
    assert [(ln.product_code, ln.description, str(ln.quantity), str(ln.unit_price)) for ln in order.lines] == [
        ("HA25", "Hormigón HA-25", "3", "84.50")
    ]
    assert (order.document_serial, order.document_number, order.document_status) == ("PO-2026-", 7, "pendingToReceive")
    net, _taxes, gross = order.totals()
    assert (str(net), str(gross)) == ("253.50", "306.74")
    entry = world.ledger("po_55")
    assert entry.status == SyncStatus.SYNCED
    assert entry.remote_id == order.id
    assert entry.details["totals_match"] == "true"
    assert entry.details["remote_gross"] == "306.74"
    assert entry.details["expected_gross"] == "306.74"
    assert entry.details["provider_id"] == order.provider_id
    assert entry.details["document_status"] == "pendingToReceive"
    assert (entry.last_event_id, entry.last_event_type) == (event.id, event.type)
    assert (entry.expected_total_cents, entry.remote_total_cents) == (30674, 30674)
    assert sum(world.fd.calls.values()) == 3  # provider lookup, provider create, order create
    metrics = [name for name, _ in emitted_metrics(capsys.readouterr().out)]
    assert "TotalsMismatch" not in metrics


def test_update_replaces_lines_keeps_custom_attributes_and_costs_one_call(world: World) -> None:
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    (order,) = world.fd.orders_tagged("bn:po_55")
    world.fd.add_custom_attribute(order.id, "Obra", "Torre Sur ]]> fase 2")
    world.fd.calls.clear()
    outcome = world.exporter().sync(world.event("09_purchase_order_updated.json"), Deadline.unlimited())
    assert outcome == type(outcome)("updated", order.id, True)
    (updated,) = world.fd.orders_tagged("bn:po_55")
    assert [ln.description for ln in updated.lines] == ["Hormigón HA-25", "Servicio de bomba"]
    assert {slot: str(rate) for slot, (_n, rate) in updated.taxes.items()} == {1: "21.00", 2: "10.00"}
    net, taxes, gross = updated.totals()
    assert (str(net), str(taxes[1][1]), str(taxes[2][1]), str(gross)) == ("503.50", "53.24", "25.00", "581.74")
    assert updated.custom == {"Obra": "Torre Sur ]]> fase 2"}
    assert updated.notes == "Entregar en obra, acceso por C/ Mayor"
    assert dict(world.fd.calls) == {"PUT /api/purchaseOrders/{id}.xml": 1}
    entry = world.ledger("po_55")
    updated_event = load_event("buildnexion/09_purchase_order_updated.json")
    assert (entry.last_event_id, entry.last_event_type) == (updated_event["id"], "purchase_order.updated")


def test_cancel_sets_document_status_canceled(world: World) -> None:
    world.exporter().sync(world.event("10_purchase_order_created.json"), Deadline.unlimited())
    outcome = world.exporter().sync(world.event("11_purchase_order_canceled.json"), Deadline.unlimited())
    assert outcome.action == "updated"
    (order,) = world.fd.orders_tagged("bn:po_56")
    assert order.document_status == "canceled"
    assert str(order.totals()[2]) == "874.88"
    assert world.ledger("po_56").closed is True


def test_an_order_reopened_after_its_cancel_is_open_again(world: World) -> None:
    # Given a canceled order (its ledger entry closed)
    world.exporter().sync(world.event("10_purchase_order_created.json"), Deadline.unlimited())
    world.exporter().sync(world.event("11_purchase_order_canceled.json"), Deadline.unlimited())
    # When BuildNexion reopens it: a newer version, sent again
    reopened = world.event("11_purchase_order_canceled.json", status="sent", updated_at="2026-11-05T09:00:00Z")
    outcome = world.exporter().sync(
        reopened.model_copy(update={"type": "purchase_order.updated"}), Deadline.unlimited()
    )
    # Then FacturaDirecta's order is open again, and the ledger no longer closed
    (order,) = world.fd.orders_tagged("bn:po_56")
    assert outcome.action == "updated"
    assert order.document_status == "pendingToReceive"  # the reference's status of an order not yet received
    assert world.ledger("po_56").closed is False


def test_duplicate_delivery_changes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    event = world.event("08_purchase_order_created.json")
    world.exporter().sync(event, Deadline.unlimited())
    world.fd.calls.clear()
    capsys.readouterr()
    (order,) = world.fd.orders_tagged("bn:po_55")
    assert world.exporter().sync(event, Deadline.unlimited()) == Outcome("current", order.id)
    assert len(world.fd.orders_tagged("bn:po_55")) == 1
    assert sum(world.fd.calls.values()) == 0
    # the skip is a log line, not a metric series of its own
    assert emitted_metrics(capsys.readouterr().out) == []


def test_update_before_create_ends_with_the_latest_order_and_the_create_is_stale(world: World) -> None:
    created = WebhookEvent.model_validate(load_event("buildnexion/08_purchase_order_created.json"))
    updated = world.event("09_purchase_order_updated.json")  # BuildNexion already holds the update
    assert world.exporter().sync(updated, Deadline.unlimited()).action == "created"
    (order,) = world.fd.orders_tagged("bn:po_55")
    assert world.exporter().sync(created, Deadline.unlimited()) == Outcome("stale", order.id)
    assert len(order.lines) == 2


def test_crash_between_create_and_ledger_write_is_resolved_by_the_tag(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = world.event("08_purchase_order_created.json")
    crash_after_create(world, event, monkeypatch)
    assert len(world.fd.orders_tagged("bn:po_55")) == 1
    # The intent left behind says which event started it
    pending = world.ledger("po_55")
    assert (pending.status, pending.intent_id is not None) == (SyncStatus.PENDING, True)
    assert (pending.last_event_id, pending.last_event_type) == (event.id, event.type)
    # While the intent is young it may be a create in flight elsewhere: wait.
    with pytest.raises(RetryLater):
        world.exporter().sync(event, Deadline.unlimited())
    # The message comes back after the visibility timeout: the order is found by its tag, not created again.
    later = world.exporter(clock=lambda: time.time() + 400)
    capsys.readouterr()
    assert later.sync(event, Deadline.unlimited()).action == "updated"
    assert len(world.fd.orders_tagged("bn:po_55")) == 1
    assert world.ledger("po_55").status == SyncStatus.SYNCED
    resolved = [m for m in emitted_metrics(capsys.readouterr().out) if m[0] == "IntentResolved"]
    assert resolved == [("IntentResolved", {"destination": "facturadirecta", "found": "true", "service": SERVICE})]


def test_timeout_on_create_then_retry_finds_the_order_instead_of_a_second_one(world: World) -> None:
    event = world.event("08_purchase_order_created.json")
    known = world.event("10_purchase_order_created.json", id="po_57", provider_id="prv_123")
    world.exporter().sync(known, Deadline.unlimited())  # the provider is known: the timeout hits the order create
    world.fd.write_delay_seconds = 1.5
    with pytest.raises(PlatformError) as caught:
        world.exporter(read_timeout=0.3).sync(event, Deadline.unlimited())
    assert (caught.value.retryable, caught.value.code) == (True, "timeout")
    world.fd.write_delay_seconds = 0
    assert world.exporter().sync(event, Deadline.unlimited()).action == "updated"
    assert len(world.fd.orders_tagged("bn:po_55")) == 1


def test_5xx_on_create_is_retryable_and_the_retry_creates_once(world: World) -> None:
    event = world.event("08_purchase_order_created.json")
    world.fd.inject_failures(503, method="POST")
    with pytest.raises(PlatformError) as caught:
        world.exporter().sync(event, Deadline.unlimited())
    assert caught.value.retryable is True
    assert world.exporter().sync(event, Deadline.unlimited()).action in {"created", "updated"}
    assert len(world.fd.orders_tagged("bn:po_55")) == 1


def test_two_workers_meeting_a_new_provider_create_it_once(world: World) -> None:
    first = world.event("08_purchase_order_created.json")
    second = world.event("10_purchase_order_created.json", id="po_57", provider_id="prv_123", number="PO-2026-0009")
    world.fd.write_delay_seconds = 0.3
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(event: WebhookEvent) -> None:
        for _ in range(20):
            try:
                result = world.exporter().sync(event, Deadline.unlimited()).action
            except RetryLater:
                time.sleep(0.1)  # the queue's backoff, shortened
                continue
            with lock:
                outcomes.append(result)
            return

    threads = [threading.Thread(target=run, args=(e,)) for e in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["created", "created"]
    assert [p["taxCode"] for p in world.fd.state.providers.values()] == ["B12345678"]
    providers = {o.provider_id for o in world.fd.state.orders.values()}
    assert len(providers) == 1


# -- through the handler and SQS ----------------------------------------------------------------------


@pytest.fixture
def exporter_app(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    template = Template.load(ROOT / "template.yaml")
    parameters = {
        **template.parameter_defaults(),
        "BuildNexionApiUrl": world.bn.base_url,
        "FacturaDirectaApiUrl": world.fd.base_url,
    }
    intrinsics = intrinsics_for(template, parameters, world.aws.provisioned)
    (spec,) = [f for f in template.functions if f.logical_id == "FacturaDirectaExporterFunction"]
    for name, value in intrinsics.resolve(spec.environment).items():
        monkeypatch.setenv(name, str(value))
    module = load_handler_module(spec.code_dir, "facturadirecta_exporter_app")
    yield module
    module.exporter.cache_clear()


def sqs_batch(world: World, *names: str) -> dict[str, Any]:
    """Send the events to FacturaDirectaQueue as the receiver does and receive them as Lambda would."""
    sqs = world.aws.session.client("sqs")
    url = world.aws.provisioned.queues["FacturaDirectaQueue"].url
    for name in names:
        envelope = load_event(f"buildnexion/{name}")
        world.bn.put_objects([envelope["data"]["object"]])
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(envelope),
            MessageGroupId=envelope["data"]["object"]["id"],
            MessageDeduplicationId=envelope["id"],
        )
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    arn = world.aws.provisioned.queues["FacturaDirectaQueue"].arn
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


def context() -> LocalLambdaContext:
    return LocalLambdaContext("FacturaDirectaExporterFunction", 512, "req-1", int(time.time() * 1000) + 60_000)


def test_handler_syncs_a_batch(world: World, exporter_app: ModuleType) -> None:
    event = sqs_batch(world, "08_purchase_order_created.json", "10_purchase_order_created.json")
    assert exporter_app.lambda_handler(event, context()) == {"batchItemFailures": []}
    assert len(world.fd.orders_tagged("bn:po_55")) == 1
    assert len(world.fd.orders_tagged("bn:po_56")) == 1


def test_a_400_invalid_input_goes_straight_to_the_dead_letter_queue(world: World, exporter_app: ModuleType) -> None:
    world.fd.inject_failures(400, code="INVALID_INPUT_DATA", method="POST")
    event = sqs_batch(world, "08_purchase_order_created.json")
    # The provider create is the first POST: FacturaDirecta refuses it.
    assert exporter_app.lambda_handler(event, context()) == {"batchItemFailures": []}
    (dead,) = world.aws.queue_messages("FacturaDirectaDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "INVALID_INPUT_DATA"
    assert "Error interno simulado" in dead["MessageAttributes"]["error_message"]["StringValue"]
    assert json.loads(dead["Body"])["id"] == "evt_01JDEMO0000000000000000008"
    assert world.fd.state.orders == {}


def test_an_update_facturadirecta_refuses_is_recorded_as_failed_in_the_ledger(world: World) -> None:
    # Given a synced order
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    # When FacturaDirecta refuses its update
    world.fd.inject_failures(400, code="INVALID_INPUT_DATA", method="PUT")
    with pytest.raises(PlatformError) as caught:
        world.exporter().sync(world.event("09_purchase_order_updated.json"), Deadline.unlimited())
    # Then the error is permanent and the ledger says why, for `status` and `reconcile`
    assert caught.value.retryable is False
    entry = world.ledger("po_55")
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "INVALID_INPUT_DATA")
    assert "Error interno simulado" in entry.error_message


def test_an_order_with_more_vat_rates_than_tax_slots_is_recorded_as_failed(world: World) -> None:
    envelope = load_event("buildnexion/08_purchase_order_created.json")
    lines = envelope["data"]["object"]["lines"]
    many = [{**lines[0], "vat_percent": rate} for rate in ["21", "10", "5", "4", "0"]]  # one more than 4 slots
    with pytest.raises(PermanentSyncError):
        world.exporter().sync(world.event("08_purchase_order_created.json", lines=many), Deadline.unlimited())
    entry = world.ledger("po_55")
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "too_many_tax_rates")
    assert world.fd.orders_tagged("bn:po_55") == []


def crash_after_create(world: World, event: WebhookEvent, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that created the order and died before the ledger knew: its intent stays behind."""
    crashing = world.exporter()
    real_save = crashing.ledger.save

    def save_then_crash(entry: Any) -> Any:
        if entry.status == SyncStatus.SYNCED:
            raise SystemExit("the instance died")
        return real_save(entry)

    # Only for this sync: what the test runs next saves as usual.
    with monkeypatch.context() as patch:
        patch.setattr(crashing.ledger, "save", save_then_crash)
        with pytest.raises(SystemExit):
            crashing.sync(event, Deadline.unlimited())


def test_an_order_found_after_a_lost_answer_whose_update_is_refused_is_never_created_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by `make chaos` (seed 1): the create's answer was lost; the retry found the order by its tag, but
    # FacturaDirecta refused the update (400) and the ledger forgot the order: the next version created another.
    event = world.event("08_purchase_order_created.json")
    crash_after_create(world, event, monkeypatch)
    (order,) = world.fd.orders_tagged("bn:po_55")
    world.fd.inject_failures(400, code="INVALID_INPUT_DATA", method="PUT")
    later = world.exporter(clock=lambda: time.time() + 400)
    with pytest.raises(PlatformError):
        later.sync(event, Deadline.unlimited())
    assert world.ledger("po_55").remote_id == order.id
    # When BuildNexion sends the next version
    updated = world.event("09_purchase_order_updated.json")
    outcome = later.sync(updated, Deadline.unlimited())
    # Then that order is updated; no second one is made
    assert outcome == Outcome("updated", order.id, True)
    assert [o.id for o in world.fd.orders_tagged("bn:po_55")] == [order.id]


def test_an_unfinished_intent_is_waited_on_for_the_guard_and_no_longer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an intent written at a known second (the guard is 90 s)
    event = world.event("08_purchase_order_created.json")
    crash_after_create(world, event, monkeypatch)
    ledger = Ledger(world.table)
    started = 1_800_000_000.0
    ledger.save(world.ledger("po_55").model_copy(update={"intent_at": datetime.fromtimestamp(started, UTC)}))
    # When it is 30 s old, the retry waits for the rest of the guard
    with pytest.raises(RetryLater) as caught:
        world.exporter(clock=lambda: started + 30).sync(event, Deadline.unlimited())
    assert caught.value.retry_after == 60
    # When it is exactly as old as the guard, the order is looked up by its tag and updated, not created again
    assert world.exporter(clock=lambda: started + 90).sync(event, Deadline.unlimited()).action == "updated"
    assert len(world.fd.orders_tagged("bn:po_55")) == 1


class Overcharging:
    """FacturaDirecta answering a create with one cent more than it was sent, and without its status."""

    def __init__(self, api: FacturaDirectaXmlClient) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def create_purchase_order(self, document: PurchaseOrderDocument, deadline: Deadline) -> PurchaseOrderRecord:
        record = self._api.create_purchase_order(document, deadline)
        assert record.gross_total is not None
        return dataclasses.replace(record, gross_total=record.gross_total + Decimal("0.01"), document_status=None)


def test_totals_that_differ_are_counted_and_kept_in_the_ledger(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    bn = BuildNexionClient(world.bn.base_url, SecretStr(DEFAULT_API_KEY))
    fd = Overcharging(FacturaDirectaXmlClient(world.fd.base_url, lambda: SecretStr(TOKEN)))
    exporter = FacturaDirectaExporter(table=world.table, buildnexion=lambda: bn, api=lambda: fd)
    outcome = exporter.sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    assert (outcome.action, outcome.totals_match) == ("created", False)
    assert ("TotalsMismatch", {"destination": "facturadirecta", "service": "webhook-receiver"}) in emitted_metrics(
        capsys.readouterr().out
    )
    entry = world.ledger("po_55")
    assert (entry.details["totals_match"], entry.details["expected_gross"], entry.details["remote_gross"]) == (
        "false",
        "306.74",
        "306.75",
    )
    assert (entry.expected_total_cents, entry.remote_total_cents) == (30674, 30675)
    assert entry.details["document_status"] == ""


def test_after_a_retryable_failure_the_rest_of_the_orders_group_waits(world: World, exporter_app: ModuleType) -> None:
    # Given two events of one order in one batch (one FIFO group) and FacturaDirecta failing once
    world.fd.inject_failures(503, method="POST")  # a write: not repeated in the call
    event = sqs_batch(world, "08_purchase_order_created.json", "09_purchase_order_updated.json")
    # When the batch is handled
    failures = exporter_app.lambda_handler(event, context())["batchItemFailures"]
    # Then the second event is not applied ahead of the first: both come back, in order
    assert [f["itemIdentifier"] for f in failures] == [r["messageId"] for r in event["Records"]]
    assert world.fd.orders_tagged("bn:po_55") == []


@pytest.mark.parametrize(
    ("event_type", "object_kind"),
    [("invoice.created", "invoice"), ("purchase_order.created", "invoice"), ("invoice.created", "purchase_order")],
)
def test_an_event_that_is_not_about_a_purchase_order_is_refused_for_good(
    world: World, event_type: str, object_kind: str
) -> None:
    envelope = load_event("buildnexion/08_purchase_order_created.json")
    envelope["type"] = event_type
    envelope["data"]["object"]["object"] = object_kind
    with pytest.raises(PermanentSyncError, match=f"^{event_type} is not a purchase order event$") as refused:
        world.exporter().sync(WebhookEvent.model_validate(envelope), Deadline.unlimited())
    assert refused.value.code == "unexpected_event"
    assert world.fd.calls == {}


@pytest.mark.parametrize("served_at", ["2026-11-02T08:00:00Z", "2026-11-01T08:00:00Z"])
def test_an_event_newer_than_what_buildnexion_serves_changes_nothing(world: World, served_at: str) -> None:
    # Given an order synced at its 08:00 version
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    (order,) = world.fd.orders_tagged("bn:po_55")
    world.fd.calls.clear()
    # When an event says 09:00 but BuildNexion still serves the synced version (or an older one)
    world.event("08_purchase_order_created.json", updated_at=served_at)
    newer = load_event("buildnexion/08_purchase_order_created.json")
    newer["data"]["object"]["updated_at"] = "2026-11-02T09:00:00Z"
    outcome = world.exporter().sync(WebhookEvent.model_validate(newer), Deadline.unlimited())
    # Then FacturaDirecta is not written to again
    assert outcome == Outcome("current", order.id)
    assert fd_writes(world) == {}


def test_a_provider_without_a_usable_tax_code_fails_the_order_for_good(world: World) -> None:
    # Given a supplier whose NIF is only separators
    world.bn.put_objects(
        [{"object": "provider", "id": "prv_blank", "name": "Sin NIF", "nif": " - . ", "country_code": "ES"}]
    )
    event = world.event("08_purchase_order_created.json", provider_id="prv_blank")
    # When its order is exported, Then it is refused as bad source data, never retried, and nothing is created
    with pytest.raises(PermanentSyncError) as caught:
        world.exporter().sync(event, Deadline.unlimited())
    assert (caught.value.code, caught.value.retryable) == ("invalid_source", False)
    assert "prv_blank has no usable tax code" in str(caught.value)
    assert world.fd.calls.get("POST /api/providers.xml", 0) == 0


def test_a_provider_facturadirecta_already_holds_is_used_not_created_again(
    world: World, log_stream: io.StringIO
) -> None:
    # Given FacturaDirecta already holds the supplier (entered by hand, or by an earlier install)
    world.fd.state.providers["900"] = {"name": "Hormigones Muñoz, S.L.", "taxCode": "b-12345678"}
    # When its first purchase order is synced
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    # Then the order names that provider and no second one is created
    assert list(world.fd.state.providers) == ["900"]
    (order,) = world.fd.orders_tagged("bn:po_55")
    assert order.provider_id == "900"
    assert "provider created" not in logged_messages(log_stream)


@pytest.mark.parametrize(
    ("held", "buildnexion_nif"),
    [
        ("ESB12345678", "B12345678"),  # stored with the ES VAT prefix, as Quipu's own examples store it
        ("B12345678", "ESB12345678"),
        ("B12345678", "\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"),  # typed in fullwidth
    ],
)
def test_a_provider_held_in_another_form_of_its_tax_code_is_used_not_created_again(
    world: World, held: str, buildnexion_nif: str
) -> None:
    # Given FacturaDirecta holds the supplier in one form of its NIF and BuildNexion another
    world.fd.state.providers["900"] = {"name": "Hormigones Muñoz, S.L.", "taxCode": held}
    world.bn.put_objects(
        [
            {
                "object": "provider",
                "id": "prv_123",
                "name": "Hormigones Muñoz, S.L.",
                "nif": buildnexion_nif,
                "country_code": "ES",
            }
        ]
    )
    # When its first purchase order is synced
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    # Then the order names the provider FacturaDirecta holds and no second one is created
    assert list(world.fd.state.providers) == ["900"]
    (order,) = world.fd.orders_tagged("bn:po_55")
    assert order.provider_id == "900"


def test_a_new_provider_typed_in_fullwidth_is_created_with_its_ascii_tax_code(world: World) -> None:
    world.bn.put_objects(
        [
            {
                "object": "provider",
                "id": "prv_123",
                "name": "Hormigones Muñoz, S.L.",
                "nif": "\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
                "country_code": "ES",
            }
        ]
    )
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    assert [p["taxCode"] for p in world.fd.state.providers.values()] == ["B12345678"]


def test_a_new_provider_is_logged_once(world: World, log_stream: io.StringIO) -> None:
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    assert logged_messages(log_stream).count("provider created") == 1


def test_an_order_whose_tag_was_not_kept_is_found_by_its_series_and_number_not_created_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a create that reached FacturaDirecta before the worker died, and an order that kept no tag
    # (the reference documents the tag filter, not how a tag is written)
    event = world.event("08_purchase_order_created.json")
    crash_after_create(world, event, monkeypatch)
    (order,) = world.fd.orders_tagged("bn:po_55")
    order.tags.clear()
    world.fd.calls.clear()
    # When the message comes back after the visibility timeout
    outcome = world.exporter(clock=lambda: time.time() + 400).sync(event, Deadline.unlimited())
    # Then the order is found by the provider's series and number and updated, not created a second time
    assert outcome == Outcome("updated", order.id, True)
    assert len(world.fd.state.orders) == 1
    assert world.fd.calls["POST /api/purchaseOrders.xml"] == 0
    assert world.ledger("po_55").remote_id == order.id


def test_an_order_with_our_number_but_another_purchase_orders_tag_is_not_ours(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an intent left unfinished by a create that never reached FacturaDirecta
    event = world.event("08_purchase_order_created.json")
    monkeypatch.setattr(FacturaDirectaXmlClient, "create_purchase_order", _die)
    with pytest.raises(SystemExit):
        world.exporter().sync(event, Deadline.unlimited())
    monkeypatch.undo()
    # and another BuildNexion purchase order holding the same series and number for the provider
    other = world.event("08_purchase_order_created.json", id="po_other")
    world.exporter().sync(other, Deadline.unlimited())
    # When the first comes back: the order found by number is the other one's, so ours is created
    outcome = world.exporter(clock=lambda: time.time() + 400).sync(event, Deadline.unlimited())
    assert outcome.action == "created"
    assert len(world.fd.orders_tagged("bn:po_55")) == 1
    assert len(world.fd.orders_tagged("bn:po_other")) == 1


def test_two_untagged_orders_with_our_number_leave_the_outcome_unknown_and_nothing_is_created(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = world.event("08_purchase_order_created.json")
    crash_after_create(world, event, monkeypatch)
    world.exporter().sync(world.event("08_purchase_order_created.json", id="po_twin"), Deadline.unlimited())
    for order in world.fd.state.orders.values():
        order.tags.clear()
    with pytest.raises(PermanentSyncError) as caught:
        world.exporter(clock=lambda: time.time() + 400).sync(event, Deadline.unlimited())
    assert caught.value.code == "outcome_unknown"
    assert "series 'PO-2026-' number 7" in caught.value.message
    assert len(world.fd.state.orders) == 2
    assert world.ledger("po_55").error_code == "outcome_unknown"


def _die(*_args: Any, **_kwargs: Any) -> Any:
    raise SystemExit("the instance died before the request left")


def test_an_order_whose_number_has_no_digits_and_whose_tag_was_not_kept_is_never_created_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a create that reached FacturaDirecta before the worker died, for an order numbered without digits
    # (FacturaDirecta numbers it in the series), and an order that kept no tag
    event = world.event("08_purchase_order_created.json", number="PEDIDO-OBRA-SUR")
    crash_after_create(world, event, monkeypatch)
    (order,) = world.fd.orders_tagged("bn:po_55")
    order.tags.clear()
    # When the message comes back: there is no series and number to find it by, and the tag proves nothing
    with pytest.raises(PermanentSyncError) as caught:
        world.exporter(clock=lambda: time.time() + 400).sync(event, Deadline.unlimited())
    # Then nothing is created a second time: an operator decides, told what was tried
    assert caught.value.code == "outcome_unknown"
    assert "no digits" in caught.value.message
    assert list(world.fd.state.orders) == [order.id]
    assert world.ledger("po_55").error_code == "outcome_unknown"


def test_a_new_order_is_created_with_its_open_status_stated_not_left_to_a_default(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reference shows documentStatus on every order but documents no default for a create.
    sent: list[PurchaseOrderDocument] = []
    real_create = FacturaDirectaXmlClient.create_purchase_order

    def create(self: FacturaDirectaXmlClient, document: PurchaseOrderDocument, deadline: Deadline) -> Any:
        sent.append(document)
        return real_create(self, document, deadline)

    monkeypatch.setattr(FacturaDirectaXmlClient, "create_purchase_order", create)
    world.exporter().sync(world.event("08_purchase_order_created.json"), Deadline.unlimited())
    assert [d.document_status for d in sent] == ["pendingToReceive"]
    (order,) = world.fd.orders_tagged("bn:po_55")
    assert order.document_status == "pendingToReceive"
