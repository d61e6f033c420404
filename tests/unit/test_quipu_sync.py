"""The Quipu sync rules against an in-memory Quipu, BuildNexion and state table: every decision, fast.

The integration tests (tests/integration/test_quipu_sync.py) run the same rules on moto against the sandbox
peers; here each rule is pinned with what the ledger records, what Quipu received and what was counted.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import pytest

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import Invoice, Provider, WebhookEvent
from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, Ledger, LedgerEntry, References, StateTable, SyncStatus
from invoice_bridge.observability import metrics
from invoice_bridge.quipu.client import DUPLICATE_NUMBER, QuipuClient, RemoteInvoice, RemoteItem
from invoice_bridge.quipu.settings import VoidMode
from invoice_bridge.quipu.sync import Outcome, QuipuSync
from invoice_bridge.sync.contract import Undecided
from tests.conftest import emitted_metrics, load_event

DEADLINE = Deadline.unlimited()


def passed(deadline: Deadline) -> None:
    """Every call to a platform carries the event's deadline."""
    assert deadline is DEADLINE


# -- an in-memory world --------------------------------------------------------------------------------


class MemoryTable:
    """The state table's conditional writes as the ledger uses them, every saved ledger entry kept in order."""

    table_name = "state"

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.saved: list[LedgerEntry] = []

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.items.get((pk, sk))

    def put_if(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None) -> bool:
        key = (item["pk"]["S"], item["sk"]["S"])
        existing = self.items.get(key)
        if condition == "attribute_not_exists(pk)":
            ok = existing is None
        else:
            assert condition == "version = :v"
            assert values is not None
            ok = existing is not None and existing["version"] == values[":v"]
        if ok:
            self.items[key] = item
            self.saved.append(LedgerEntry.from_item(item))
        return ok


class MemoryReferences:
    def __init__(self) -> None:
        self.ids: dict[tuple[str, str, str], str] = {}

    def get(self, destination: str, kind: str, key: str) -> str | None:
        return self.ids.get((destination, kind, key))

    def put(self, destination: str, kind: str, key: str, remote_id: str) -> None:
        self.ids[(destination, kind, key)] = remote_id


class FreeLeases:
    def acquire(self, name: str, owner: str, seconds: float) -> bool:
        return True

    def release(self, name: str, owner: str) -> None:
        return None


@dataclass
class FakeQuipu:
    """Quipu's invoices as the sync sees them; each call is recorded as (name, arguments)."""

    total: Decimal | None = Decimal("1278.06")
    invoices: dict[str, RemoteInvoice] = field(default_factory=dict)
    contacts: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_create: list[Exception] = field(default_factory=list)
    next_id: int = 0

    def _id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}{self.next_id}"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def find_contact(self, tax_id: str, deadline: Deadline) -> str | None:
        passed(deadline)
        self.calls.append(("find_contact", tax_id))
        return self.contacts.get(tax_id)

    def create_contact(self, attributes: dict[str, Any], deadline: Deadline) -> str:
        passed(deadline)
        self.calls.append(("create_contact", attributes))
        contact_id = self._id("c")
        self.contacts[attributes["tax_id"]] = contact_id
        return contact_id

    def _store(self, document: dict[str, Any], invoice_id: str) -> RemoteInvoice:
        data = document["data"]
        items = tuple(
            RemoteItem(item.get("id") or self._id("item"), item["attributes"]["concept"])
            for item in data["relationships"]["items"]["data"]
        )
        stored = RemoteInvoice(
            id=invoice_id,
            number=data["attributes"]["number"],
            kind="expenses",
            contact_id=data["relationships"]["contact"]["data"]["id"],
            total_amount=self.total,
            items=items,
            amending_invoice_ids=(),
            # the reference's format: a list of strings separated by comma
            tags=tuple(t.strip() for t in str(data["attributes"].get("tags") or "").split(",") if t.strip()),
        )
        self.invoices[invoice_id] = stored
        return stored

    def create_invoice(self, document: dict[str, Any], deadline: Deadline) -> RemoteInvoice:
        passed(deadline)
        self.calls.append(("create_invoice", document))
        if self.fail_create:
            raise self.fail_create.pop(0)
        amended = document["data"]["relationships"].get("amended_invoice")
        if amended is None:
            return self._store(document, self._id("q"))
        original = self.invoices[amended["data"]["id"]]
        note = replace(
            original,
            id=self._id("n"),
            total_amount=None if original.total_amount is None else -original.total_amount,
            items=(),
        )
        self.invoices[note.id] = note
        self.invoices[original.id] = replace(original, amending_invoice_ids=(*original.amending_invoice_ids, note.id))
        return note

    def update_invoice(self, invoice_id: str, document: dict[str, Any], deadline: Deadline) -> RemoteInvoice:
        passed(deadline)
        self.calls.append(("update_invoice", (invoice_id, document)))
        assert document["data"]["id"] == invoice_id
        return self._store(document, invoice_id)

    def get_invoice(self, invoice_id: str, deadline: Deadline) -> RemoteInvoice | None:
        passed(deadline)
        self.calls.append(("get_invoice", invoice_id))
        return self.invoices.get(invoice_id)

    def delete_invoice(self, invoice_id: str, deadline: Deadline) -> None:
        passed(deadline)
        self.calls.append(("delete_invoice", invoice_id))
        self.invoices.pop(invoice_id, None)

    def find_expense_invoice(self, contact_id: str, number: str, year: int, deadline: Deadline) -> RemoteInvoice | None:
        passed(deadline)
        self.calls.append(("find_expense_invoice", (contact_id, number, year)))
        return next(
            (i for i in self.invoices.values() if i.number == number and i.contact_id == contact_id),
            None,
        )

    def attach(self, book_entry_id: str, filename: str, content: bytes, deadline: Deadline) -> str:
        passed(deadline)
        self.calls.append(("attach", (book_entry_id, filename, content)))
        return "att-1"


@dataclass
class FakeBuildNexion:
    """BuildNexion serving each event's own object (its latest state) and one supplier."""

    nif: str = "B12345678"
    served: dict[str, Invoice] = field(default_factory=dict)
    reads: int = 0

    def latest(self, model: type[Invoice], event: WebhookEvent, deadline: Deadline) -> Invoice:
        passed(deadline)
        self.reads += 1
        return self.served.get(event.data.object.id) or model.model_validate(event.data.object.model_dump())

    def provider(self, provider_id: str, deadline: Deadline) -> Provider:
        passed(deadline)
        return Provider.model_validate(
            {"object": "provider", "id": provider_id, "name": "Hormigones Muñoz, S.L.", "nif": self.nif}
        )

    def invoice_pdf(self, invoice_id: str, deadline: Deadline) -> bytes:
        passed(deadline)
        return b"%PDF-1.4 " + invoice_id.encode()


@dataclass
class World:
    quipu: FakeQuipu = field(default_factory=FakeQuipu)
    buildnexion: FakeBuildNexion = field(default_factory=FakeBuildNexion)
    table: MemoryTable = field(default_factory=MemoryTable)
    references: MemoryReferences = field(default_factory=MemoryReferences)

    def sync(self, void_mode: VoidMode = VoidMode.CREDIT_NOTE, attach_pdf: bool = False) -> QuipuSync:
        return QuipuSync(
            quipu=cast(QuipuClient, self.quipu),
            buildnexion=cast(BuildNexionClient, self.buildnexion),
            ledger=self.ledger(),
            references=cast(References, self.references),
            leases=cast(Leases, FreeLeases()),
            void_mode=void_mode,
            attach_pdf=attach_pdf,
        )

    def ledger(self) -> Ledger:
        return Ledger(cast(StateTable, self.table))

    def entry(self, invoice_id: str) -> LedgerEntry:
        found = self.ledger().get("quipu", invoice_id)
        assert found is not None
        return found


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def counted() -> Iterator[None]:
    """Metrics without dimensions stay in Powertools' buffer (`metrics.metric_set`) until the handler flushes."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def event(name: str, event_id: str | None = None, event_type: str | None = None, **changes: Any) -> WebhookEvent:
    document = copy.deepcopy(load_event(f"buildnexion/{name}"))
    document["data"]["object"].update(changes)
    if event_id is not None:
        document["id"] = event_id
    if event_type is not None:
        document["type"] = event_type
    return WebhookEvent.model_validate(document)


def created(**changes: Any) -> WebhookEvent:
    return event("01_invoice_created.json", **changes)


def messages(log_stream: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in log_stream.getvalue().splitlines()]


def dimensions_of(stdout: str, name: str) -> list[dict[str, str]]:
    return [dims for metric, dims in emitted_metrics(stdout) if metric == name]


def sent_item_ids(document: dict[str, Any]) -> list[str | None]:
    return [item.get("id") for item in document["data"]["relationships"]["items"]["data"]]


# -- create, skip, update ----------------------------------------------------------------------------


def test_a_new_invoice_is_created_once_and_recorded(world: World, counted: None, log_stream: io.StringIO) -> None:
    first = created()
    outcome = world.sync().apply(first, DEADLINE)
    assert outcome == Outcome("created", "q2")  # c1 is the new contact
    assert world.quipu.names() == ["find_contact", "create_contact", "create_invoice"]
    assert world.references.ids == {("quipu", "contact", "B12345678"): "c1"}
    assert {"quipu contact created", "quipu invoice created"} <= set(messages(log_stream))
    # log lines, not metric series: a series costs $0.30 a month for each month it is published in
    assert not {"QuipuContactCreated", "QuipuInvoiceCreated"} & set(metrics.metric_set)
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.remote_id, entry.intent_id, entry.closed) == (SyncStatus.SYNCED, "q2", None, False)
    assert (entry.last_event_id, entry.last_event_type) == (first.id, first.type)
    assert (entry.expected_total_cents, entry.remote_total_cents) == (127806, 127806)
    assert entry.details["contact_id"] == "c1"
    assert entry.details["item_ids"] == "item3"
    # the intent was written before the create, with the version and event it is for
    intent = world.table.saved[0]
    assert intent.intent_id is not None
    assert intent.status is SyncStatus.PENDING
    assert intent.source_updated_at == first.data.object.updated_at
    assert (intent.last_event_id, intent.last_event_type) == (first.id, first.type)


def test_a_known_supplier_is_found_in_quipu_not_created_again(
    world: World, counted: None, log_stream: io.StringIO
) -> None:
    world.quipu.contacts["B12345678"] = "c-existing"
    world.sync().apply(created(), DEADLINE)
    assert "create_contact" not in world.quipu.names()
    assert ("find_contact", "B12345678") in world.quipu.calls
    assert world.entry("inv_8f3k2").details["contact_id"] == "c-existing"
    assert world.references.ids == {("quipu", "contact", "B12345678"): "c-existing"}
    assert "quipu contact created" not in messages(log_stream)


def test_a_supplier_without_a_usable_tax_id_is_refused_for_good(world: World) -> None:
    # Given a supplier whose NIF is only separators
    world.buildnexion.nif = " - . "
    # Then the invoice is refused as bad source data before Quipu is asked anything
    with pytest.raises(PermanentSyncError) as caught:
        world.sync().apply(created(), DEADLINE)
    assert (caught.value.code, caught.value.retryable) == ("invalid_source", False)
    assert "has no usable tax id" in caught.value.message
    assert world.quipu.calls == []
    assert world.references.ids == {}


def test_by_default_a_void_is_a_credit_note_and_no_pdf_is_attached(world: World) -> None:
    sync = QuipuSync(
        quipu=cast(QuipuClient, world.quipu),
        buildnexion=cast(BuildNexionClient, world.buildnexion),
        ledger=world.ledger(),
        references=cast(References, world.references),
        leases=cast(Leases, FreeLeases()),
    )
    assert sync.apply(event("04_invoice_voided.json"), DEADLINE).action == "credited"
    assert "attach" not in world.quipu.names()
    assert "delete_invoice" not in world.quipu.names()


def test_a_redelivered_event_is_skipped_and_counted_with_its_reason(
    world: World, capsys: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    # Given an invoice already in Quipu
    world.sync().apply(created(), DEADLINE)
    calls = len(world.quipu.calls)
    capsys.readouterr()

    # When the same event comes again
    outcome = world.sync().apply(created(), DEADLINE)

    # Then nothing is read or sent, the outcome names the Quipu invoice and why, the skip is counted by reason
    assert outcome == Outcome("skipped", "q2", "already applied")
    assert len(world.quipu.calls) == calls
    assert world.buildnexion.reads == 1
    assert skip_logged(log_stream) == [("inv_8f3k2", "already applied")]


def skip_logged(log_stream: io.StringIO) -> list[tuple[str, str]]:
    records = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    return [(r["invoice_id"], r["reason"]) for r in records if "reason" in r]


def test_an_event_whose_latest_state_is_already_applied_is_skipped(
    world: World, capsys: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    # Given an invoice in Quipu, and an event newer than the ledger whose invoice BuildNexion serves unchanged
    world.sync().apply(created(), DEADLINE)
    world.buildnexion.served["inv_8f3k2"] = Invoice.model_validate(created().data.object.model_dump())
    calls = len(world.quipu.calls)
    capsys.readouterr()

    # When it is applied, Then the latest state is found already applied: nothing is sent
    outcome = world.sync().apply(created(updated_at="2026-11-04T00:00:00Z"), DEADLINE)
    assert outcome == Outcome("skipped", "q2", "already applied")
    assert len(world.quipu.calls) == calls
    assert skip_logged(log_stream) == [("inv_8f3k2", "already applied")]


def test_an_event_without_a_status_is_synced_from_the_invoice_buildnexion_serves(world: World) -> None:
    document = copy.deepcopy(load_event("buildnexion/01_invoice_created.json"))
    del document["data"]["object"]["status"]
    world.buildnexion.served["inv_8f3k2"] = Invoice.model_validate(created().data.object.model_dump())
    assert world.sync().apply(WebhookEvent.model_validate(document), DEADLINE).action == "created"


def test_an_older_event_is_skipped_as_stale(world: World, log_stream: io.StringIO) -> None:
    world.sync().apply(created(updated_at="2026-11-04T00:00:00Z"), DEADLINE)
    assert world.sync().apply(created(), DEADLINE) == Outcome("skipped", "q2", "stale event")
    assert skip_logged(log_stream) == [("inv_8f3k2", "stale event")]


def test_a_status_only_change_sends_nothing_and_records_the_new_version(world: World) -> None:
    # Given an invoice in Quipu
    world.sync().apply(created(), DEADLINE)
    world.quipu.calls.clear()

    # When BuildNexion's version moves without a content change
    approved = created(
        event_id="evt_approved", event_type="invoice.updated", status="approved", updated_at="2026-11-04T08:00:00Z"
    )
    outcome = world.sync().apply(approved, DEADLINE)

    # Then Quipu is not asked to change, and the ledger holds the new version and event
    assert outcome == Outcome("unchanged", "q2")
    assert "update_invoice" not in world.quipu.names()
    entry = world.entry("inv_8f3k2")
    assert entry.source_updated_at == datetime.fromisoformat("2026-11-04T08:00:00+00:00")
    assert (entry.last_event_id, entry.last_event_type) == ("evt_approved", "invoice.updated")


def test_a_content_change_patches_the_same_items_and_is_counted(
    world: World, counted: None, log_stream: io.StringIO
) -> None:
    lines = created().data.object.model_dump()["lines"]
    world.sync().apply(created(lines=[*lines, {**lines[0], "description": "Bombeo"}]), DEADLINE)
    assert world.entry("inv_8f3k2").details["item_ids"] == "item3,item4"
    updated = event("02_invoice_updated.json", lines=[*lines, {**lines[0], "quantity": "2"}])
    outcome = world.sync().apply(updated, DEADLINE)
    assert outcome == Outcome("updated", "q2")
    ((_, (remote_id, document)),) = [c for c in world.quipu.calls if c[0] == "update_invoice"]
    assert remote_id == "q2"
    assert sent_item_ids(document) == ["item3", "item4"]  # the items Quipu created, changed in place
    assert "quipu invoice updated" in messages(log_stream)
    entry = world.entry("inv_8f3k2")
    assert (entry.last_event_id, entry.source_updated_at) == (updated.id, updated.data.object.updated_at)
    assert entry.last_event_type == "invoice.updated"


def test_a_new_supplier_contact_alone_is_a_change(world: World) -> None:
    world.sync().apply(created(), DEADLINE)
    world.buildnexion.nif = "B87654321"  # the invoice now names another supplier's tax id
    outcome = world.sync().apply(created(status="approved", updated_at="2026-11-04T08:00:00Z"), DEADLINE)
    assert outcome.action == "updated"
    ((_, (_, document)),) = [c for c in world.quipu.calls if c[0] == "update_invoice"]
    assert document["data"]["relationships"]["contact"]["data"]["id"] == world.entry("inv_8f3k2").details["contact_id"]
    assert world.entry("inv_8f3k2").details["contact_id"] != "c1"


def test_an_entry_without_item_ids_sends_every_item_as_new(world: World) -> None:
    # Given a ledger entry that knows the Quipu invoice but none of its items
    world.sync().apply(created(), DEADLINE)
    entry = world.entry("inv_8f3k2")
    details = {k: v for k, v in entry.details.items() if k != "item_ids"}
    world.ledger().save(entry.model_copy(update={"details": details}))

    # When the content changes, Then the PATCH lists the items without ids (added, the old ones removed)
    world.sync().apply(event("02_invoice_updated.json"), DEADLINE)
    ((_, (_, document)),) = [c for c in world.quipu.calls if c[0] == "update_invoice"]
    assert sent_item_ids(document) == [None]


def test_a_different_total_in_quipu_is_recorded_and_counted(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.quipu.total = Decimal("1278.07")
    world.sync().apply(created(), DEADLINE)
    entry = world.entry("inv_8f3k2")
    assert (entry.expected_total_cents, entry.remote_total_cents) == (127806, 127807)
    assert [d["destination"] for d in dimensions_of(capsys.readouterr().out, "TotalsMismatch")] == ["quipu"]


def test_an_answer_without_a_total_records_none(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.quipu.total = None
    world.sync().apply(created(), DEADLINE)
    assert world.entry("inv_8f3k2").remote_total_cents is None
    assert dimensions_of(capsys.readouterr().out, "TotalsMismatch") == []


def test_an_event_that_is_not_an_invoice_is_permanent(world: World) -> None:
    with pytest.raises(PermanentSyncError) as caught:
        world.sync().apply(event("08_purchase_order_created.json"), DEADLINE)
    assert caught.value.code == "unexpected_event"
    assert caught.value.message == "purchase_order.created is not a supplier invoice event"
    assert world.quipu.calls == []


# -- dedupe: adopt rather than create twice -----------------------------------------------------------


def apply_dying_after_create(world: World, sync: QuipuSync, delivered: WebhookEvent) -> None:
    """Apply `delivered`, the worker dying just after Quipu created the document (the ledger never hears of it)."""
    real_create = world.quipu.create_invoice

    def create_then_die(document: dict[str, Any], deadline: Deadline) -> RemoteInvoice:
        real_create(document, deadline)
        raise KeyboardInterrupt

    world.quipu.create_invoice = create_then_die  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            sync.apply(delivered, DEADLINE)
    finally:
        world.quipu.create_invoice = real_create  # type: ignore[method-assign]


def test_an_unfinished_intent_adopts_the_invoice_quipu_already_holds(
    world: World, counted: None, log_stream: io.StringIO
) -> None:
    # Given a create that reached Quipu but whose outcome the ledger never recorded
    first = world.sync()
    apply_dying_after_create(world, first, created())
    world.quipu.calls.clear()

    # When the event is delivered again
    outcome = world.sync().apply(created(), DEADLINE)

    # Then the invoice is looked up, adopted and brought up to date with its own items, never created again
    assert outcome == Outcome("adopted", "q2")
    assert world.quipu.names() == ["find_expense_invoice", "update_invoice"]
    assert world.quipu.calls[0][1] == ("c1", "F-2026-0042", 2026)
    adopting = world.quipu.calls[1][1][1]
    assert sent_item_ids(adopting) == ["item3"]
    assert adopting["data"]["relationships"]["contact"]["data"]["id"] == "c1"
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.remote_id, entry.intent_id) == (SyncStatus.SYNCED, "q2", None)
    assert "quipu invoice adopted" in messages(log_stream)
    assert "quipu invoice created" not in messages(log_stream)


def test_an_intent_that_never_reached_quipu_creates_the_invoice(world: World) -> None:
    world.quipu.fail_create.append(PlatformError("quipu", "timed out", code="timeout", retryable=True))
    with pytest.raises(PlatformError):
        world.sync().apply(created(), DEADLINE)
    assert world.entry("inv_8f3k2").status is SyncStatus.PENDING  # retryable: nothing recorded as failed
    assert world.sync().apply(created(), DEADLINE).action == "created"
    assert world.quipu.names().count("find_expense_invoice") == 1


def test_a_duplicate_number_adopts_the_suppliers_invoice_with_that_number(world: World) -> None:
    # Given Quipu holding the supplier's invoice with that number, unknown to the ledger
    world.sync().apply(created(), DEADLINE)
    world.table.items.clear()
    world.quipu.fail_create.append(
        PlatformError("quipu", "number taken", status=422, code=DUPLICATE_NUMBER, retryable=False)
    )
    # When the invoice is synced, Then the create's 422 leads to that invoice, adopted
    assert world.sync().apply(created(), DEADLINE) == Outcome("adopted", "q2")
    assert ("find_expense_invoice", ("c1", "F-2026-0042", 2026)) in world.quipu.calls
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.remote_id) == (SyncStatus.SYNCED, "q2")


def test_a_duplicate_number_that_cannot_be_found_is_rejected(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.quipu.fail_create.append(
        PlatformError("quipu", "number taken", status=422, code=DUPLICATE_NUMBER, retryable=False)
    )
    with pytest.raises(PlatformError):
        world.sync().apply(created(), DEADLINE)
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, DUPLICATE_NUMBER)
    assert [d["code"] for d in dimensions_of(capsys.readouterr().out, "QuipuRejected")] == [DUPLICATE_NUMBER]


def test_another_422_is_not_a_duplicate_and_is_not_looked_up(world: World) -> None:
    world.quipu.fail_create.append(
        PlatformError("quipu", "vat", status=422, code="validation", retryable=False, field="vat_percent")
    )
    with pytest.raises(PlatformError):
        world.sync().apply(created(), DEADLINE)
    assert "find_expense_invoice" not in world.quipu.names()
    assert world.entry("inv_8f3k2").error_code == "validation"


def test_a_permanent_error_without_a_code_is_recorded_by_its_status(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.quipu.fail_create.append(PlatformError("quipu", "Forbidden", status=403, retryable=False))
    with pytest.raises(PlatformError):
        world.sync().apply(created(), DEADLINE)
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.error_code, entry.error_message) == (SyncStatus.FAILED, "403", "Forbidden")
    assert [d["code"] for d in dimensions_of(capsys.readouterr().out, "QuipuRejected")] == ["403"]


def test_a_rejected_update_is_recorded_and_a_retryable_one_is_not(world: World) -> None:
    world.sync().apply(created(), DEADLINE)
    sync = world.sync()

    def refuse(invoice_id: str, document: dict[str, Any], deadline: Deadline) -> RemoteInvoice:
        raise refusals.pop(0)

    refusals = [
        PlatformError("quipu", "busy", status=503, retryable=True),
        PlatformError("quipu", "bad", status=422, code="validation", retryable=False),
    ]
    world.quipu.update_invoice = refuse  # type: ignore[method-assign]
    with pytest.raises(PlatformError):
        sync.apply(event("02_invoice_updated.json"), DEADLINE)
    assert world.entry("inv_8f3k2").status is SyncStatus.SYNCED
    with pytest.raises(PlatformError):
        sync.apply(event("02_invoice_updated.json"), DEADLINE)
    entry = world.entry("inv_8f3k2")
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "validation")


# -- the PDF ------------------------------------------------------------------------------------------


def test_the_pdf_is_attached_once_under_a_safe_file_name(world: World, counted: None) -> None:
    sync = world.sync(attach_pdf=True)
    sync.apply(created(invoice_number="F-2026/00.42_b #7"), DEADLINE)
    ((_, attached),) = [c for c in world.quipu.calls if c[0] == "attach"]
    assert attached == ("q2", "F-2026_00.42_b__7.pdf", b"%PDF-1.4 inv_8f3k2")
    assert world.entry("inv_8f3k2").details["attachment_id"] == "att-1"
    assert "QuipuPdfAttached" in metrics.metric_set
    sync.apply(event("02_invoice_updated.json", invoice_number="F-2026/00.42_b #7"), DEADLINE)
    assert world.quipu.names().count("attach") == 1


def test_no_pdf_is_attached_unless_asked(world: World) -> None:
    world.sync().apply(created(), DEADLINE)
    assert "attach" not in world.quipu.names()


# -- the void ------------------------------------------------------------------------------------------


def voided(**changes: Any) -> WebhookEvent:
    return event("04_invoice_voided.json", **changes)


def test_a_void_becomes_one_full_credit_note(
    world: World, counted: None, capsys: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    world.quipu.total = Decimal("1584.80")
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)
    void = voided()
    outcome = world.sync().apply(void, DEADLINE)
    assert outcome == Outcome("credited", "n5")
    entry = world.entry("inv_91c7d")
    assert entry.closed
    assert entry.status is SyncStatus.SYNCED
    assert (entry.last_event_id, entry.last_event_type) == (void.id, void.type)
    assert entry.details["void"] == "credit_note"
    assert entry.details["credit_note_id"] == "n5"
    assert entry.details["credit_note_total_cents"] == "-158480"
    assert "credit_note_intent" not in entry.details
    assert entry.details["item_ids"]  # what the invoice's sync recorded is kept
    assert "quipu credit note created" in messages(log_stream)
    assert dimensions_of(capsys.readouterr().out, "TotalsMismatch") == []
    # the intent was saved before the note was created
    assert [c for c in world.quipu.names() if c == "create_invoice"] == ["create_invoice"] * 2
    assert any("credit_note_intent" in saved.details for saved in world.table.saved)
    # and a redelivery is skipped: closed
    assert world.sync().apply(void, DEADLINE) == Outcome("skipped", "q2", "already voided in Quipu")


def test_a_credit_note_with_a_different_total_is_recorded_and_logged(
    world: World, capsys: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)  # Quipu's total: 1278.06
    world.sync().apply(voided(), DEADLINE)
    assert world.entry("inv_91c7d").details["credit_note_total_cents"] == "-127806"
    mismatches = [json.loads(line) for line in log_stream.getvalue().splitlines() if "totals differ" in line]
    assert [(m["document"], m["expected_total_cents"], m["remote_total_cents"]) for m in mismatches] == [
        ("invoice", "158480", "127806"),
        ("credit_note", "-158480", "-127806"),
    ]


def test_a_credit_note_without_a_total_records_no_total(world: World) -> None:
    world.quipu.total = None
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)
    world.sync().apply(voided(), DEADLINE)
    details = world.entry("inv_91c7d").details
    assert details["void"] == "credit_note"
    assert "credit_note_total_cents" not in details


def test_a_credit_note_created_before_a_crash_is_found_not_created_again(world: World) -> None:
    # Given a void whose credit note reached Quipu, the worker dying before the ledger recorded it
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)
    apply_dying_after_create(world, world.sync(), voided())
    assert world.entry("inv_91c7d").details["credit_note_intent"]

    # When the void is delivered again, Then the note is read from the invoice's amending invoices
    outcome = world.sync().apply(voided(), DEADLINE)
    assert outcome == Outcome("credited", "n5")
    assert [i.id for i in world.quipu.invoices.values() if i.id.startswith("n")] == ["n5"]
    assert world.entry("inv_91c7d").details["credit_note_id"] == "n5"


def test_a_credit_note_lookup_that_cannot_read_an_invoice_decides_nothing_and_is_tried_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given our invoice q2 in Quipu, amended by a credit note Quipu no longer shows (n9)
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)
    world.quipu.invoices["q2"] = replace(world.quipu.invoices["q2"], amending_invoice_ids=("n9",))
    sync = world.sync()
    # A 404 on the invoice or on its credit note decides nothing: retried later (never a create, never a letter)
    for remote_id, said in (("q404", "answered 404: its credit notes cannot be read"), ("q2", "answered 404")):
        lookup = sync._credit_note_lookup(remote_id, DEADLINE)
        assert isinstance(lookup, Undecided)
        assert (lookup.retryable, lookup.tried[-1]) == (True, said)

    # and a refusal for now keeps the platform's own retryability and pause
    def refused(invoice_id: str, deadline: Deadline) -> RemoteInvoice | None:
        raise PlatformError("quipu", "slow down", status=429, retryable=True, retry_after=7.0)

    monkeypatch.setattr(world.quipu, "get_invoice", refused)
    lookup = sync._credit_note_lookup("q2", DEADLINE)
    assert isinstance(lookup, Undecided)
    assert (lookup.retryable, lookup.retry_after, lookup.tried) == (True, 7.0, ("GET /invoices/q2", "slow down"))


def test_a_credit_note_intent_without_a_note_in_quipu_creates_it(world: World) -> None:
    world.sync().apply(event("03_invoice_created.json"), DEADLINE)
    world.quipu.fail_create.append(PlatformError("quipu", "unavailable", status=503, retryable=True))
    with pytest.raises(PlatformError):
        world.sync().apply(voided(), DEADLINE)
    assert world.sync().apply(voided(), DEADLINE) == Outcome("credited", "n5")
    assert world.quipu.names().count("get_invoice") == 1


def test_a_void_by_delete_deletes_and_never_credits(world: World, counted: None, log_stream: io.StringIO) -> None:
    world.sync(void_mode=VoidMode.DELETE).apply(event("03_invoice_created.json"), DEADLINE)
    void = voided()
    assert world.sync(void_mode=VoidMode.DELETE).apply(void, DEADLINE) == Outcome("deleted", "q2")
    assert world.quipu.names()[-1] == "delete_invoice"
    assert world.quipu.calls[-1][1] == "q2"
    assert world.quipu.names().count("create_invoice") == 1
    entry = world.entry("inv_91c7d")
    assert (entry.closed, entry.details["void"], entry.last_event_id) == (True, "deleted", void.id)
    assert "quipu invoice deleted" in messages(log_stream)
    assert "quipu credit note created" not in messages(log_stream)


def test_a_void_by_delete_of_an_invoice_never_created_creates_nothing(world: World) -> None:
    void = voided()
    outcome = world.sync(void_mode=VoidMode.DELETE).apply(void, DEADLINE)
    assert outcome == Outcome("deleted", None, "never created")
    assert world.quipu.calls == []
    entry = world.entry("inv_91c7d")
    assert (entry.status, entry.closed, entry.remote_id) == (SyncStatus.SYNCED, True, None)
    assert entry.details == {"void": "nothing_to_delete"}
    assert entry.source_updated_at == void.data.object.updated_at
    assert (entry.last_event_id, entry.last_event_type) == (void.id, void.type)


@pytest.mark.parametrize("status", ["void", "voided", "VOID"])
def test_a_void_first_creates_then_credits(world: World, status: str) -> None:
    # The void is the first event: the invoice is created with the voided version, then credited (BuildNexion's
    # sample says "void"; "voided" and another case are read the same, never as an open invoice)
    outcome = world.sync().apply(voided(status=status), DEADLINE)
    assert outcome.action == "credited"
    assert world.quipu.names().count("create_invoice") == 2
    assert world.entry("inv_91c7d").closed


def test_a_void_by_delete_after_a_create_whose_outcome_is_unknown_deletes_what_quipu_holds(world: World) -> None:
    # Given a create that reached Quipu but whose outcome the ledger never recorded (its intent stays)
    apply_dying_after_create(world, world.sync(void_mode=VoidMode.DELETE), created())
    (held,) = world.quipu.invoices
    # When the invoice is voided at the source
    void = created(status="void", updated_at="2026-11-04T09:00:00Z")
    outcome = world.sync(void_mode=VoidMode.DELETE).apply(void, DEADLINE)
    # Then the unfinished intent is looked up and the invoice Quipu holds is deleted, not left behind as
    # "never created"
    assert outcome == Outcome("deleted", held)
    assert ("delete_invoice", held) in world.quipu.calls
    assert world.quipu.invoices == {}
    entry = world.entry("inv_8f3k2")
    assert (entry.closed, entry.remote_id, entry.details["void"]) == (True, held, "deleted")


def test_a_void_of_an_invoice_never_created_is_not_counted_as_a_synced_document(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # DocumentSynced is the dashboard's count of documents a platform now holds: a void by delete of an
    # invoice that never reached Quipu closes its entry, but Quipu holds nothing, so nothing is counted.
    world.sync(void_mode=VoidMode.DELETE).apply(voided(), DEADLINE)
    assert world.entry("inv_91c7d").closed
    assert dimensions_of(capsys.readouterr().out, "DocumentSynced") == []
    # while a created invoice is counted once, for Quipu
    world.sync().apply(created(), DEADLINE)
    assert [d["destination"] for d in dimensions_of(capsys.readouterr().out, "DocumentSynced")] == ["quipu"]
