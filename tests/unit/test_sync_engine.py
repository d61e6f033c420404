"""The engine's rules, each checked for every destination adapter (Quipu, tuimprenta, FacturaDirecta).

After an unknown outcome each adapter looks our document up by its marker and answers through the engine's
contract; the engine then adopts only what is provably ours, creates only what is shown absent, and never
creates on a lookup that cannot decide. Each adapter's real lookup runs here against its platform's answers
as the references show them (a Quipu JSON-API client stand-in, tuimprenta's listing over a fake HTTP
session, a FacturaDirecta order API stand-in). The same rules played by each whole worker against its sandbox
peer (what the platform holds, the ledger, the dead letters) are in tests/integration/test_sync_rules_every_adapter.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from pydantic import SecretStr

from invoice_bridge.buildnexion.models import Invoice as SupplierInvoice
from invoice_bridge.buildnexion.models import PurchaseOrder
from invoice_bridge.errors import PlatformError, RetryLater
from invoice_bridge.facturadirecta import exporter as facturadirecta
from invoice_bridge.facturadirecta.client import PurchaseOrderApi
from invoice_bridge.facturadirecta.models import PurchaseOrderRecord
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Ledger, LedgerEntry, StateTable, SyncStatus
from invoice_bridge.quipu import sync as quipu
from invoice_bridge.quipu.client import QuipuClient, RemoteInvoice
from invoice_bridge.quipu.mapping import expense_invoice
from invoice_bridge.sync.contract import Absent, Found, Lookup, NotOurs, OutcomeUnknown, Undecided, resolve
from invoice_bridge.sync.engine import SyncEngine
from invoice_bridge.tuimprenta.client import TuimprentaClient
from invoice_bridge.tuimprenta.lookup import find_ours
from tests.conftest import load_event
from tests.unit.test_quipu_sync import MemoryTable
from tests.unit.test_tuimprenta_client import FakeSession, response

DEADLINE = Deadline(30)

# What the platform holds where our document would be.
OURS = "ours"  # our document, with our marker
SOMEONE_ELSES = "someone else's"  # another document in our document's place (same number, or listed with it)
NOTHING = "nothing"  # nothing: a lookup read to its end
BROKEN = "lookup refused"  # the lookup is refused for good (a 400, a 404 on the listing)
UNAVAILABLE = "lookup unavailable"  # the lookup fails for now (a 503, a timeout)


@dataclass
class Adapter:
    """One destination's lookup, played against what its platform holds."""

    name: str
    look_up: Callable[[str], Lookup[Any]]
    # What "someone else's document in our place" means there: Quipu keeps numbers unique per supplier and
    # year, so ours can never be created (Taken); tuimprenta and FacturaDirecta accept another document
    # beside ours, so ours is simply absent.
    someone_elses_blocks: bool


def refused(status: int) -> PlatformError:
    return PlatformError("x", f"HTTP {status}", status=status, retryable=status >= 500)


# -- Quipu -------------------------------------------------------------------------------------------------------


def quipu_adapter() -> Adapter:
    source = SupplierInvoice.model_validate(load_event("buildnexion/01_invoice_created.json")["data"]["object"])
    desired = expense_invoice(source)

    def remote(tags: tuple[str, ...]) -> RemoteInvoice:
        return RemoteInvoice("q9", desired.number, "expenses", "c1", Decimal("1278.06"), (), (), tags)

    def look_up(holding: str) -> Lookup[Any]:
        class Client:
            def find_expense_invoice(self, contact_id: str, number: str, year: int, deadline: Deadline) -> Any:
                if holding == BROKEN:
                    raise refused(400)
                if holding == UNAVAILABLE:
                    raise refused(503)
                return {OURS: remote(("bn:inv_8f3k2",)), SOMEONE_ELSES: remote(("bn:inv_other",)), NOTHING: None}[
                    holding
                ]

        return quipu.look_up(cast(QuipuClient, Client()), "c1", desired, DEADLINE)

    return Adapter("quipu", look_up, someone_elses_blocks=True)


# -- tuimprenta --------------------------------------------------------------------------------------------------


def tuimprenta_adapter() -> Adapter:
    def invoice(buildnexion_id: str, invoice_id: str) -> dict[str, Any]:
        return {
            "id": invoice_id,
            "status": "issued",
            "series": "TD-2025",
            "metadata": {"buildnexion_id": buildnexion_id},
        }

    def look_up(holding: str) -> Lookup[Any]:
        answers = {
            OURS: [response(200, {"data": [invoice("sin_1", "inv_1")], "next_cursor": None})],
            SOMEONE_ELSES: [response(200, {"data": [invoice("sin_other", "inv_2")], "next_cursor": None})],
            NOTHING: [response(200, {"data": [], "next_cursor": None})],
            BROKEN: [response(400, {"error": {"type": "validation_error", "message": "created_from"}})],
            UNAVAILABLE: [response(503, {"error": {"message": "unavailable"}}) for _ in range(3)],
        }[holding]
        session = FakeSession(answers)
        client = TuimprentaClient(
            "https://api.tuimprenta.test/v1", SecretStr("k"), session=session, sleep=lambda _s: None
        )
        verdicts = find_ours(client, {"sin_1": "TD-2025"}, date(2026, 11, 6), DEADLINE).verdicts()
        return verdicts["sin_1"]

    return Adapter("tuimprenta", look_up, someone_elses_blocks=False)


# -- FacturaDirecta ----------------------------------------------------------------------------------------------


def facturadirecta_adapter() -> Adapter:
    order = PurchaseOrder.model_validate(load_event("buildnexion/08_purchase_order_created.json")["data"]["object"])

    def record(order_id: str, *tags: str) -> PurchaseOrderRecord:
        return PurchaseOrderRecord(
            order_id, "52", None, "PO-2026-", "7", None, "EUR", None, None, (), None, (), tags=tags
        )

    def look_up(holding: str) -> Lookup[Any]:
        class Api:
            def find_purchase_order_by_tag(self, tag: str, deadline: Deadline) -> PurchaseOrderRecord | None:
                if holding == BROKEN:
                    raise refused(400)
                if holding == UNAVAILABLE:
                    raise refused(503)
                return record("5", tag) if holding == OURS else None

            def find_purchase_orders_by_number(
                self, serial: str | None, number: int, provider_id: str, deadline: Deadline
            ) -> list[PurchaseOrderRecord]:
                return [record("6", "bn:po_other")] if holding == SOMEONE_ELSES else []

        return facturadirecta.look_up(cast(PurchaseOrderApi, Api()), order, "52", DEADLINE)

    return Adapter("facturadirecta", look_up, someone_elses_blocks=False)


ADAPTERS = {"quipu": quipu_adapter, "tuimprenta": tuimprenta_adapter, "facturadirecta": facturadirecta_adapter}


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return ADAPTERS[request.param]()


# -- the rules ---------------------------------------------------------------------------------------------------


def test_our_document_found_by_its_marker_is_adopted_not_created_again(adapter: Adapter) -> None:
    lookup = adapter.look_up(OURS)
    found = resolve(lookup)
    assert isinstance(found, Found)
    assert found.remote_id in {"q9", "inv_1", "5"}
    assert "bn:" in found.proof or "buildnexion_id" in found.proof


def test_someone_elses_document_is_never_adopted(adapter: Adapter) -> None:
    lookup = adapter.look_up(SOMEONE_ELSES)
    assert not isinstance(lookup, Found)
    if adapter.someone_elses_blocks:
        # it holds our number: ours can neither be adopted nor created; it fails for good, saying why
        with pytest.raises(NotOurs) as caught:
            resolve(lookup)
        assert "not adopted" in caught.value.message
    else:
        # it stands beside where ours would be: ours is shown absent, so it may be created
        assert resolve(lookup) is None


def test_a_document_shown_absent_may_be_created(adapter: Adapter) -> None:
    lookup = adapter.look_up(NOTHING)
    assert isinstance(lookup, Absent)
    assert resolve(lookup) is None


def test_a_lookup_refused_for_good_is_an_outcome_unknown_never_a_create(adapter: Adapter) -> None:
    lookup = adapter.look_up(BROKEN)
    assert isinstance(lookup, Undecided)
    assert not lookup.retryable
    with pytest.raises(OutcomeUnknown) as caught:
        resolve(lookup)
    assert caught.value.code == "outcome_unknown"
    assert not caught.value.retryable
    assert caught.value.message.startswith("outcome unknown: ")


def test_a_lookup_failing_for_now_is_tried_again_later_never_a_create(adapter: Adapter) -> None:
    lookup = adapter.look_up(UNAVAILABLE)
    assert isinstance(lookup, Undecided)
    assert lookup.retryable
    with pytest.raises(RetryLater):
        resolve(lookup)


def test_the_engine_records_why_a_document_was_not_created_in_its_ledger_entry(adapter: Adapter) -> None:
    # Given an entry with an unfinished intent, and a lookup that cannot decide
    table = MemoryTable()
    ledger = Ledger(cast(StateTable, table))
    engine = SyncEngine(ledger, adapter.name)
    entry = engine.begin(
        LedgerEntry(destination=adapter.name, object_id="obj_1"),
        datetime(2026, 11, 7, tzinfo=UTC),
        "evt_1",
        "x.created",
    )
    assert entry.intent_id is not None
    # When the engine recovers through the adapter's lookup, Then nothing is created and the entry says why
    with pytest.raises(OutcomeUnknown):
        engine.recover(entry, lambda: adapter.look_up(BROKEN))
    failed = ledger.get(adapter.name, "obj_1")
    assert failed is not None
    # and the intent stays: the platform may hold the document, so whatever comes next looks it up again first
    assert (failed.status, failed.error_code, failed.intent_id) == (
        SyncStatus.FAILED,
        "outcome_unknown",
        entry.intent_id,
    )
    # with its time: the lookup that comes next lists from when the effect may have happened
    assert failed.intent_at == entry.intent_at is not None


def test_a_refusal_for_good_clears_the_intent_so_the_next_version_is_not_looked_up_for_nothing() -> None:
    # Given an entry whose create the platform refused for good (a 422: nothing was made)
    table = MemoryTable()
    ledger = Ledger(cast(StateTable, table))
    engine = SyncEngine(ledger, "quipu")
    entry = engine.begin(
        LedgerEntry(destination="quipu", object_id="obj_1"), datetime(2026, 11, 7, tzinfo=UTC), "evt_1", "x.created"
    )
    assert entry.intent_id is not None
    engine.fail(entry, "invalid", "Quipu answered 422")
    failed = ledger.get("quipu", "obj_1")
    assert failed is not None
    # Then the entry is failed with no intent: the platform holds nothing, and the fixed document is created at once
    assert (failed.status, failed.error_code, failed.intent_id, failed.intent_at) == (
        SyncStatus.FAILED,
        "invalid",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        (datetime(2026, 11, 6, tzinfo=UTC), "stale"),
        (datetime(2026, 11, 7, tzinfo=UTC), "current"),
        (datetime(2026, 11, 8, tzinfo=UTC), None),
    ],
)
def test_the_stale_and_current_check_is_the_engines(
    adapter: Adapter, updated_at: datetime, expected: str | None
) -> None:
    synced = LedgerEntry(destination=adapter.name, object_id="obj_1").synced("r1", datetime(2026, 11, 7, tzinfo=UTC))
    assert SyncEngine.skip_reason(synced, updated_at) == expected
    assert SyncEngine.skip_reason(synced.model_copy(update={"closed": True}), updated_at) == "closed"
    # something still to do on the current version (a void, a PDF) keeps it going
    if expected == "current":
        assert SyncEngine.skip_reason(synced, updated_at, unfinished=True) is None
