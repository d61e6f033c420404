"""The sync engine's rules, each played by every destination's worker (Quipu, FacturaDirecta, tuimprenta).

tests/unit/test_sync_engine.py checks each adapter's lookup answer; here the whole worker runs against its
sandbox peer on moto, and each rule is judged by what a user sees: what the platform holds for our object,
what the ledger says, and which message went to the dead-letter queue with which reason. Quipu and
FacturaDirecta run behind their SQS edge (BatchEdge); the tuimprenta poller drains its own queue.

Where a platform differs the driver says so: Quipu keeps an expense invoice's number unique per supplier and
year (another document there blocks ours for good: `Taken`), FacturaDirecta and tuimprenta take a second
document beside ours. The unknown outcome each rule starts from is the platform's own: Quipu and
FacturaDirecta a worker that stops after the create took effect and before the ledger heard of it,
tuimprenta a batch that 404s on every poll after it was created.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.errors import PlatformError
from invoice_bridge.facturadirecta.client import FacturaDirectaXmlClient
from invoice_bridge.facturadirecta.exporter import FacturaDirectaExporter
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Ledger, LedgerEntry, StateTable, SyncStatus
from invoice_bridge.quipu.sync import QuipuSync
from invoice_bridge.tuimprenta.client import TuimprentaClient
from invoice_bridge.tuimprenta.poller import TuimprentaPoller
from invoice_bridge.worker import BatchEdge, DeadLetters, parse_event
from sandbox.aws_local import intrinsics_for
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cfn import Template
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.lambda_host import LocalLambdaContext
from sandbox.quipu import QuipuOptions, QuipuPeer
from sandbox.runner import lambda_sqs_event
from sandbox.stack import localize_api_urls
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import ROOT, load_event
from tests.integration.conftest import TUIMPRENTA_SECRET, WEBHOOK_SECRETS, Aws
from tests.integration.test_facturadirecta_exporter import TOKEN as FD_TOKEN
from tests.integration.test_quipu_sync import Rig
from tests.integration.test_tuimprenta_poller import API_KEY as TUI_KEY
from tests.integration.test_tuimprenta_poller import envelope as sales_envelope

# The versions of our object BuildNexion serves, oldest first.
VERSIONS = ("2026-11-07T09:00:00Z", "2026-11-07T10:00:00Z")


def at(version: int) -> datetime:
    return datetime.fromisoformat(VERSIONS[version].replace("Z", "+00:00")).astimezone(UTC)


class Crash(BaseException):
    """The worker's instance stops (a timeout, a crash): nothing after it runs, not even an except clause."""


@dataclass
class DeadLetter:
    error_code: str
    error_message: str


class Driver(Protocol):
    """One destination's worker and its peer, driven the same way for every rule."""

    name: str
    # Whether another document holding our document's place (its number) blocks ours for good.
    number_blocks: bool

    def deliver(self, version: int, *, publish: bool = True) -> None:
        """BuildNexion holds our object at `version` (unless not `publish`); its event reaches the worker."""

    def deliver_other(self) -> str:
        """Another BuildNexion object with our object's number and supplier is synced; its document's id."""

    def held(self) -> list[str]:
        """The ids of the documents the platform holds with our marker."""

    def document(self, remote_id: str) -> dict[str, Any]:
        """What the platform holds under `remote_id` (the fields a rule compares)."""

    def entry(self) -> LedgerEntry | None:
        """Our object's ledger entry."""

    def dead_letters(self) -> list[DeadLetter]:
        """Every message dead-lettered so far."""

    def writes(self) -> int:
        """Write requests the platform has received so far."""

    def watch_creates(self, seen: Callable[[], None]) -> None:
        """Call `seen` whenever the worker is about to send a create to the platform."""

    def crash_after_create(self, version: int) -> None:
        """Deliver `version`; the create takes effect, then the outcome is lost (the ledger never hears it)."""

    def refuse_lookup(self) -> None:
        """The platform refuses (for good) the next lookups of our document."""

    def fail_create_once(self) -> None:
        """The next create of our document fails before it takes effect, with an error that may pass."""

    def refuse_create(self, code: str) -> None:
        """The platform refuses the next create of our document for good with `code`."""

    def later(self) -> None:
        """Time passes: a message that failed comes back after its visibility timeout."""


# -- shared: an SQS worker behind its BatchEdge ---------------------------------------------------------------


@dataclass
class EdgeRun:
    aws: Aws
    queue: str
    dead_letter_queue: str
    destination: str
    kept: list[DeadLetter] = field(default_factory=list)

    def handle(self, body: str, handler: Callable[[SQSRecord, Deadline], None]) -> None:
        """`body` sent to the queue, received as Lambda would and handled by the worker's edge."""
        sqs = self.aws.session.client("sqs")
        info = self.aws.provisioned.queues[self.queue]
        group, dedupe = uuid.uuid4().hex, uuid.uuid4().hex
        sqs.send_message(QueueUrl=info.url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedupe)
        messages = sqs.receive_message(
            QueueUrl=info.url, MaxNumberOfMessages=1, AttributeNames=["All"], MessageAttributeNames=["All"]
        )["Messages"]
        edge = BatchEdge(
            sqs=sqs,
            queue_url=info.url,
            dead_letters=DeadLetters(sqs, self.aws.provisioned.queues[self.dead_letter_queue].url, self.destination),
            destination=self.destination,
            fifo=info.url.endswith(".fifo"),
            max_receive_count=10,  # the queues' maxReceiveCount
        )
        context = LocalLambdaContext("Worker", 512, "req", int((time.time() + 60) * 1000))
        edge.handle(lambda_sqs_event(info, list(messages)), cast(LambdaContext, context), handler)
        # Handled: the test delivers a retried message again itself, when it says so.
        sqs.delete_message(QueueUrl=info.url, ReceiptHandle=messages[0]["ReceiptHandle"])

    def dead_letters(self) -> list[DeadLetter]:
        for message in self.aws.queue_messages(self.dead_letter_queue):
            attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
            self.kept.append(DeadLetter(attributes["error_code"], attributes["error_message"]))
        return list(self.kept)


# -- Quipu ------------------------------------------------------------------------------------------------------


class QuipuDriver:
    name = "quipu"
    number_blocks = True
    object_id = "inv_8f3k2"

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.edge = EdgeRun(rig.aws, "QuipuQueue", "QuipuDeadLetterQueue", "quipu")
        self._watch: Callable[[], None] | None = None
        self._refuse_lookup = False
        self._create_fault: tuple[int, str] | None = None

    def _envelope(self, version: int, object_id: str | None = None) -> dict[str, Any]:
        event = copy.deepcopy(load_event("buildnexion/01_invoice_created.json"))
        event["id"] = f"evt_{object_id or self.object_id}_{version}_{uuid.uuid4().hex[:6]}"
        event["data"]["object"].update({"id": object_id or self.object_id, "updated_at": VERSIONS[version]})
        return event

    def worker(self) -> QuipuSync:
        worker = self.rig.worker()
        client = worker.quipu
        real_create, real_find = client.create_invoice, client.find_expense_invoice

        def create(document: Any, deadline: Deadline) -> Any:
            if self._watch is not None:
                self._watch()
            if self._create_fault is not None:
                # The peer answers the invoice's POST with it (token and supplier are POSTs too: not those).
                status, code = self._create_fault
                self._create_fault = None
                self.rig.quipu.faults.fail_next(status, method="POST", code=code)
            return real_create(document, deadline)

        def find(*args: Any) -> Any:
            if self._refuse_lookup:
                raise PlatformError("quipu", "filter[period] is not valid", status=400, retryable=False)
            return real_find(*args)

        client.create_invoice = create  # type: ignore[method-assign]
        client.find_expense_invoice = find  # type: ignore[method-assign,assignment]
        return worker

    def _run(self, event: dict[str, Any], publish: bool = True) -> None:
        if publish:
            self.rig.buildnexion.put_objects([event["data"]["object"]])
        worker = self.worker()

        def handle(record: SQSRecord, deadline: Deadline) -> None:
            worker.apply(parse_event(record), deadline)

        self.edge.handle(json.dumps(event), handle)

    def deliver(self, version: int, *, publish: bool = True) -> None:
        self._run(self._envelope(version), publish)

    def deliver_other(self) -> str:
        self._run(self._envelope(1, "inv_other"))
        (other,) = [i.id for i in self.rig.quipu.invoices.values() if i.marker() == "inv_other"]
        return other

    def held(self) -> list[str]:
        return [i.id for i in self.rig.quipu.invoices.values() if i.marker() == self.object_id]

    def document(self, remote_id: str) -> dict[str, Any]:
        invoice = self.rig.quipu.invoices[remote_id]
        return {"number": invoice.number, "tags": invoice.tags, "total": invoice.total_cents}

    def entry(self) -> LedgerEntry | None:
        return self.rig.entry(self.object_id)  # type: ignore[no-any-return]

    def dead_letters(self) -> list[DeadLetter]:
        return self.edge.dead_letters()

    def writes(self) -> int:
        return sum(n for route, n in self.rig.quipu.calls.items() if not route.startswith(("GET", "POST /oauth")))

    def watch_creates(self, seen: Callable[[], None]) -> None:
        self._watch = seen

    def crash_after_create(self, version: int) -> None:
        event = self._envelope(version)
        self.rig.buildnexion.put_objects([event["data"]["object"]])
        worker = self.worker()
        real_save = worker.ledger.save

        def save(entry: LedgerEntry) -> LedgerEntry:
            if entry.status is SyncStatus.SYNCED:
                raise Crash
            return real_save(entry)

        worker.ledger.save = save  # type: ignore[method-assign]
        with pytest.raises(Crash):
            worker.apply(parse_event_of(event), Deadline(30))

    def refuse_lookup(self) -> None:
        self._refuse_lookup = True

    def fail_create_once(self) -> None:
        self._create_fault = (503, "Service unavailable")

    def refuse_create(self, code: str) -> None:
        self._create_fault = (422, code)

    def later(self) -> None:
        """Quipu's worker has no guard on an intent's age: a returning message resolves it at once."""


def parse_event_of(envelope: dict[str, Any]) -> WebhookEvent:
    return WebhookEvent.model_validate(envelope)


# -- FacturaDirecta ---------------------------------------------------------------------------------------------


class FacturaDirectaDriver:
    name = "facturadirecta"
    number_blocks = False
    object_id = "po_55"

    def __init__(self, aws: Aws, bn: BuildNexionPeer, fd: FacturaDirectaPeer) -> None:
        self.aws, self.bn, self.fd = aws, bn, fd
        self.table = StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"])
        self.edge = EdgeRun(aws, "FacturaDirectaQueue", "FacturaDirectaDeadLetterQueue", "facturadirecta")
        self._watch: Callable[[], None] | None = None
        self._now = time.time
        self._refuse_lookup = False
        self._create_fault: tuple[int, str] | None = None

    def exporter(self) -> FacturaDirectaExporter:
        bn = BuildNexionClient(self.bn.base_url, SecretStr(DEFAULT_API_KEY))
        fd = FacturaDirectaXmlClient(self.fd.base_url, lambda: SecretStr(FD_TOKEN), timeout=(2.0, 5.0))
        real_create, real_find = fd.create_purchase_order, fd.find_purchase_order_by_tag

        def create(document: Any, deadline: Deadline) -> Any:
            if self._watch is not None:
                self._watch()
            if self._create_fault is not None:
                # The peer answers the order's POST with it (a provider create is a POST too: not that one).
                status, code = self._create_fault
                self._create_fault = None
                self.fd.inject_failures(status, code=code, method="POST")
            return real_create(document, deadline)

        def find(*args: Any) -> Any:
            if self._refuse_lookup:
                raise PlatformError("facturadirecta", "INVALID_REQUEST: tag", status=400, retryable=False)
            return real_find(*args)

        fd.create_purchase_order = create  # type: ignore[method-assign]
        fd.find_purchase_order_by_tag = find  # type: ignore[method-assign,assignment]
        return FacturaDirectaExporter(table=self.table, buildnexion=lambda: bn, api=lambda: fd, clock=self._now)

    def _envelope(self, version: int, object_id: str | None = None) -> dict[str, Any]:
        event = copy.deepcopy(load_event("buildnexion/08_purchase_order_created.json"))
        event["id"] = f"evt_{object_id or self.object_id}_{version}_{uuid.uuid4().hex[:6]}"
        event["data"]["object"].update({"id": object_id or self.object_id, "updated_at": VERSIONS[version]})
        return event

    def _run(self, event: dict[str, Any], publish: bool = True) -> None:
        if publish:
            self.bn.put_objects([event["data"]["object"]])
        exporter = self.exporter()
        self.edge.handle(json.dumps(event), exporter.handle_record)

    def deliver(self, version: int, *, publish: bool = True) -> None:
        self._run(self._envelope(version), publish)

    def deliver_other(self) -> str:
        self._run(self._envelope(1, "po_other"))
        (other,) = self.fd.orders_tagged("bn:po_other")
        return other.id

    def held(self) -> list[str]:
        return [o.id for o in self.fd.orders_tagged(f"bn:{self.object_id}")]

    def document(self, remote_id: str) -> dict[str, Any]:
        order = self.fd.state.orders[remote_id]
        return {"number": (order.document_serial, order.document_number), "tags": list(order.tags)}

    def entry(self) -> LedgerEntry | None:
        return Ledger(self.table).get("facturadirecta", self.object_id)

    def dead_letters(self) -> list[DeadLetter]:
        return self.edge.dead_letters()

    def writes(self) -> int:
        return sum(n for route, n in self.fd.calls.items() if not route.startswith("GET"))

    def watch_creates(self, seen: Callable[[], None]) -> None:
        self._watch = seen

    def crash_after_create(self, version: int) -> None:
        event = self._envelope(version)
        self.bn.put_objects([event["data"]["object"]])
        exporter = self.exporter()
        real_save = exporter.ledger.save

        def save(entry: LedgerEntry) -> LedgerEntry:
            if entry.status is SyncStatus.SYNCED:
                raise Crash
            return real_save(entry)

        exporter.ledger.save = save  # type: ignore[method-assign]
        with pytest.raises(Crash):
            exporter.sync(parse_event_of(event), Deadline(30))

    def refuse_lookup(self) -> None:
        self._refuse_lookup = True

    def fail_create_once(self) -> None:
        self._create_fault = (503, "INTERNAL_ERROR")

    def refuse_create(self, code: str) -> None:
        self._create_fault = (422, code)

    def later(self) -> None:
        # Past the intent guard: the visibility timeout (360 s) has brought the message back.
        self._now = lambda: time.time() + 400


# -- tuimprenta -------------------------------------------------------------------------------------------------


class TuimprentaDriver:
    name = "tuimprenta"
    number_blocks = False
    object_id = "sin_rule"

    def __init__(self, aws: Aws, peer: TuimprentaPeer, environment: dict[str, str]) -> None:
        self.aws, self.peer, self.environment = aws, peer, environment
        self.table = StateTable(aws.session.client("dynamodb"), environment["STATE_TABLE_NAME"])
        self._watch: Callable[[], None] | None = None
        self._refuse_lookup = False
        self._refuse_next = False
        self._kept: list[DeadLetter] = []

    def poller(self) -> TuimprentaPoller:
        from invoice_bridge.tuimprenta.settings import TuimprentaPollerSettings

        settings = TuimprentaPollerSettings.from_env(self.environment)
        sqs = self.aws.session.client("sqs")

        def client() -> TuimprentaClient:
            made = TuimprentaClient(settings.tuimprenta_api_url, SecretStr(TUI_KEY))
            real_create, real_list = made.create_batch, made.invoices

            def create(*args: Any) -> Any:
                if self._watch is not None:
                    self._watch()
                return real_create(*args)

            def listing(*args: Any, **kwargs: Any) -> Any:
                if self._refuse_lookup:
                    raise PlatformError("tuimprenta", "created_from is not valid", status=400, retryable=False)
                return real_list(*args, **kwargs)

            made.create_batch = create  # type: ignore[method-assign,assignment]
            made.invoices = listing  # type: ignore[method-assign]
            return made

        return TuimprentaPoller(
            settings=settings,
            client_factory=client,
            sqs=sqs,
            table=self.table,
            dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, "tuimprenta"),
        )

    def _send(self, event: dict[str, Any]) -> None:
        sqs = self.aws.session.client("sqs")
        sqs.send_message(QueueUrl=self.aws.provisioned.queues["TuimprentaQueue"].url, MessageBody=json.dumps(event))
        self.poller().run(Deadline(60))

    def deliver(self, version: int, *, publish: bool = True) -> None:
        # The poller reads the sales invoice from its event (BuildNexion is not asked again).
        changes: dict[str, Any] = {"updated_at": VERSIONS[version]}
        if self._refuse_next:
            # tuimprenta's fiscal validation refuses an invoice without the customer's tax id (a failed row)
            self._refuse_next = False
            changes["customer"] = {"name": "Sin RIF", "tax_id": " ", "email": None}
        self._send(sales_envelope(self.object_id, **changes))

    def deliver_other(self) -> str:
        self._send(sales_envelope("sin_other", updated_at=VERSIONS[1]))
        (other,) = self.peer.issued_for("sin_other")
        return other.id

    def held(self) -> list[str]:
        return [i.id for i in self.peer.issued_for(self.object_id)]

    def document(self, remote_id: str) -> dict[str, Any]:
        invoice = self.peer.invoices[remote_id]
        return {"number": (invoice.series, invoice.number), "buildnexion_id": invoice.buildnexion_id}

    def entry(self) -> LedgerEntry | None:
        return Ledger(self.table).get("tuimprenta", self.object_id)

    def dead_letters(self) -> list[DeadLetter]:
        for message in self.aws.queue_messages("TuimprentaDeadLetterQueue"):
            attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
            self._kept.append(DeadLetter(attributes["error_code"], attributes["error_message"]))
        return list(self._kept)

    def writes(self) -> int:
        return sum(n for route, n in self.peer.calls.items() if route.startswith("POST"))

    def watch_creates(self, seen: Callable[[], None]) -> None:
        self._watch = seen

    def crash_after_create(self, version: int) -> None:
        # The batch is created and issues our invoice, but each poll of it answers 404 (BATCH_MISSING_POLLS
        # times): its outcome is unknown, and the poller settles it within the run.
        self.peer.fail_next("GET /batches/{id}", 404, 404, 404)
        self.deliver(version)

    def refuse_lookup(self) -> None:
        self._refuse_lookup = True

    def fail_create_once(self) -> None:
        # 409 on our own Idempotency-Key on every try (MAX_BATCH_ATTEMPTS): the batch's fate is unknown.
        self.peer.fail_next("POST /batches", 409, 409, 409)

    def refuse_create(self, code: str) -> None:
        """tuimprenta's code for the refusal is its own (E1001): `code` is not ours to choose there."""
        self._refuse_next = True

    def later(self) -> None:
        """The poller's own schedule: each run polls what is due."""


@pytest.fixture(params=["quipu", "facturadirecta", "tuimprenta"])
def driver(request: pytest.FixtureRequest, aws: Aws) -> Iterator[Driver]:
    if request.param == "quipu":
        bn = BuildNexionPeer(DEFAULT_API_KEY, WEBHOOK_SECRETS)
        peer = QuipuPeer(QuipuOptions())
        bn.start()
        peer.start()
        try:
            yield QuipuDriver(Rig(aws, bn, peer, aws.provisioned.tables["StateTable"]))
        finally:
            peer.stop()
            bn.stop()
    elif request.param == "facturadirecta":
        bn = BuildNexionPeer(DEFAULT_API_KEY, ["whsec_test"])
        fd = FacturaDirectaPeer(FD_TOKEN, buildnexion_api_key=DEFAULT_API_KEY)
        bn.start()
        fd.start()
        try:
            yield FacturaDirectaDriver(aws, bn, fd)
        finally:
            fd.stop()
            bn.stop()
    else:
        tuimprenta = TuimprentaPeer(TUI_KEY, TUIMPRENTA_SECRET, processing_seconds=0.3, send_callbacks=False)
        tuimprenta.start()
        template = Template.load(ROOT / "template.yaml")
        parameters = {**template.parameter_defaults(), "TuimprentaApiUrl": tuimprenta.base_url}
        (spec,) = [f for f in template.functions if f.logical_id == "TuimprentaPollerFunction"]
        resolved = intrinsics_for(template, parameters, aws.provisioned).resolve(
            localize_api_urls(spec.environment, {"WebhookApi"}, "http://127.0.0.1:9")
        )
        environment = {k: str(v) for k, v in resolved.items()}
        environment.update(
            {
                "RUN_SECONDS": "20",
                "POLL_BASE_SECONDS": "0.1",
                "POLL_MAX_SECONDS": "0.5",
                "BATCH_WINDOW_SECONDS": "0",
                "HINT_CHECK_SECONDS": "0.05",
            }
        )
        try:
            yield TuimprentaDriver(aws, tuimprenta, environment)
        finally:
            tuimprenta.stop()


# -- the rules --------------------------------------------------------------------------------------------------


def test_an_older_event_changes_nothing_the_platform_holds(driver: Driver) -> None:
    # Given the platform holding our object's newer version
    driver.deliver(1)
    (held,) = driver.held()
    before, writes = driver.document(held), driver.writes()
    # When an event of the older version arrives late
    driver.deliver(0, publish=False)
    # Then nothing is written, the ledger keeps the newer version, and nothing is dead-lettered
    assert driver.writes() == writes
    assert driver.held() == [held]
    assert driver.document(held) == before
    entry = driver.entry()
    assert entry is not None
    assert (entry.status, entry.source_updated_at, entry.remote_id) == (SyncStatus.SYNCED, at(1), held)
    assert driver.dead_letters() == []


def test_an_event_already_applied_is_not_sent_again(driver: Driver) -> None:
    driver.deliver(0)
    writes = driver.writes()
    driver.deliver(0)
    assert driver.writes() == writes
    assert len(driver.held()) == 1
    entry = driver.entry()
    assert entry is not None
    assert (entry.status, entry.source_updated_at) == (SyncStatus.SYNCED, at(0))


def test_an_intent_is_in_the_ledger_before_the_platform_sees_a_create(driver: Driver) -> None:
    seen: list[LedgerEntry | None] = []
    driver.watch_creates(lambda: seen.append(driver.entry()))
    driver.deliver(0)
    assert seen, "no create was sent"
    for entry in seen:
        assert entry is not None
        assert (entry.status, entry.intent_id is not None) == (SyncStatus.PENDING, True)
    # and once the platform answered, the intent is settled
    done = driver.entry()
    assert done is not None
    assert (done.status, done.intent_id, done.remote_id) == (SyncStatus.SYNCED, None, driver.held()[0])


def test_an_unknown_outcome_is_looked_up_and_the_document_adopted_never_created_twice(driver: Driver) -> None:
    # Given a create that took effect but whose outcome the worker never learnt
    driver.crash_after_create(0)
    (held,) = driver.held()
    # When the document's event comes back
    creates: list[None] = []
    driver.watch_creates(lambda: creates.append(None))
    driver.later()
    driver.deliver(0)
    # Then it is found by our marker: no create is sent again (Quipu's unique number would refuse one, but
    # the rule does not lean on that), the platform holds one document of ours, and the ledger names it
    assert creates == []
    assert driver.held() == [held]
    entry = driver.entry()
    assert entry is not None
    assert (entry.status, entry.remote_id, entry.intent_id) == (SyncStatus.SYNCED, held, None)
    assert driver.dead_letters() == []


def test_someone_elses_document_in_our_place_is_never_adopted(driver: Driver) -> None:
    # Given the platform holding another BuildNexion object's document with our number and supplier
    other = driver.deliver_other()
    theirs = driver.document(other)
    # and a create of ours whose outcome is unknown (it failed before taking effect)
    driver.fail_create_once()
    driver.deliver(1)
    # When ours is synced again and looked up
    driver.later()
    driver.deliver(1)
    # Then theirs is untouched and never recorded as ours
    assert driver.document(other) == theirs
    entry = driver.entry()
    assert entry is not None
    assert entry.remote_id != other
    if driver.number_blocks:
        # Taken: ours can neither be adopted nor created; it fails for good, with the reason, dead-lettered once
        assert driver.held() == []
        assert entry.status is SyncStatus.FAILED
        (dead,) = driver.dead_letters()
        assert dead.error_code == entry.error_code
        assert "not adopted" in dead.error_message
    else:
        # the platform takes a second document with that number: ours is created beside theirs, once
        (ours,) = driver.held()
        assert (entry.status, entry.remote_id) == (SyncStatus.SYNCED, ours)
        assert driver.dead_letters() == []


def test_an_unknown_outcome_the_lookup_cannot_decide_is_dead_lettered_as_outcome_unknown(driver: Driver) -> None:
    # Given a lookup the platform refuses, and a create whose outcome is unknown
    driver.refuse_lookup()
    driver.crash_after_create(0)
    (held,) = driver.held()
    driver.later()
    # When the document's event comes back
    driver.deliver(0)
    # Then it is not created again: dead-lettered as "outcome unknown", saying what was tried
    assert driver.held() == [held]
    # (tuimprenta settles the batch within the run that posted it: its redelivery is looked up, and
    # dead-lettered, once more)
    letters = driver.dead_letters()
    assert 1 <= len(letters) <= 2
    assert {d.error_code for d in letters} == {"outcome_unknown"}
    dead = letters[0]
    entry = driver.entry()
    assert entry is not None
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "outcome_unknown")
    assert entry.error_message
    assert dead.error_message.startswith(entry.error_message[:40])


def test_after_an_outcome_unknown_no_version_is_created_without_a_lookup(driver: Driver) -> None:
    # Given a document dead-lettered as "outcome unknown" (the platform may hold it; the lookup could not tell)
    driver.refuse_lookup()
    driver.crash_after_create(0)
    (held,) = driver.held()
    driver.later()
    driver.deliver(0)
    # When BuildNexion sends a newer version of it, and the old one again
    driver.later()
    driver.deliver(1)
    driver.deliver(0, publish=False)
    # Then nothing is created beside what the platform may hold: each is dead-lettered as "outcome unknown"
    assert driver.held() == [held]
    assert {d.error_code for d in driver.dead_letters()} == {"outcome_unknown"}
    assert len(driver.dead_letters()) >= 2


def test_a_document_the_platform_refuses_is_recorded_failed_and_dead_lettered_with_the_reason(
    driver: Driver,
) -> None:
    driver.refuse_create("E_REFUSED")
    driver.deliver(0)
    assert driver.held() == []
    entry = driver.entry()
    assert entry is not None
    assert entry.status is SyncStatus.FAILED
    assert entry.error_code
    (dead,) = driver.dead_letters()
    assert dead.error_code == entry.error_code
    assert entry.error_message
    assert entry.error_message[:40] in dead.error_message
