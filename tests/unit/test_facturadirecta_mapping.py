"""BuildNexion purchase order → FacturaDirecta document: numbers, tax slots, statuses, expected totals."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from invoice_bridge.buildnexion.models import PurchaseOrder
from invoice_bridge.errors import PermanentSyncError
from invoice_bridge.facturadirecta.mapping import (
    document_status,
    expected_totals,
    remote_totals,
    split_number,
    tax_rates,
    to_document,
)
from invoice_bridge.facturadirecta.models import PurchaseOrderRecord
from tests.conftest import load_event


def order(name: str, **changes: object) -> PurchaseOrder:
    document = load_event(f"buildnexion/{name}")["data"]["object"]
    return PurchaseOrder.model_validate({**document, **changes})


@pytest.mark.parametrize(
    ("number", "expected"),
    [("PO-2026-0007", ("PO-2026-", 7)), ("123", (None, 123)), ("OC/A", ("OC/A", None)), ("A-1", ("A-", 1))],
)
def test_number_becomes_series_and_number(number: str, expected: tuple[str | None, int | None]) -> None:
    assert split_number(number) == expected


def test_rates_in_order_of_first_appearance_and_equal_rates_share_a_slot() -> None:
    po = order(
        "09_purchase_order_updated.json",
        lines=[
            {"description": "a", "quantity": "1", "unit_amount": 1, "vat_percent": "10"},
            {"description": "b", "quantity": "1", "unit_amount": 1, "vat_percent": "21.0"},
            {"description": "c", "quantity": "1", "unit_amount": 1, "vat_percent": "10.00"},
        ],
    )
    assert tax_rates(po) == [Decimal("10"), Decimal("21")]
    assert [line.tax_slot for line in to_document(po, "1", document_status=None).lines] == [1, 2, 1]


def test_more_rates_than_slots_is_permanent() -> None:
    lines = [
        {"description": str(r), "quantity": "1", "unit_amount": 1, "vat_percent": r}
        for r in ["0", "4", "10", "21", "7"]
    ]
    with pytest.raises(PermanentSyncError, match="tax slots") as caught:
        to_document(order("08_purchase_order_created.json", lines=lines), "1", document_status=None)
    assert (caught.value.code, caught.value.retryable) == ("too_many_tax_rates", False)
    # As many rates as slots fit
    document = to_document(order("08_purchase_order_created.json", lines=lines[:4]), "1", document_status=None)
    assert [line.tax_slot for line in document.lines] == [1, 2, 3, 4]


def test_remote_totals_missing_from_the_answer_count_as_zero() -> None:
    record = PurchaseOrderRecord(
        id="5",
        provider_id=None,
        document_date=None,
        document_serial=None,
        document_number=None,
        document_status=None,
        currency=None,
        notes=None,
        net_total=None,
        taxes=(),
        gross_total=None,
        lines=(),
    )
    totals = remote_totals(record)
    assert (totals.net, totals.tax, totals.gross) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    # Half a cent rounds up, as FacturaDirecta rounds (not to the even cent)
    halves = remote_totals(dataclasses.replace(record, net_total=Decimal("1.005"), gross_total=Decimal("2.125")))
    assert (halves.net, halves.gross) == (Decimal("1.01"), Decimal("2.13"))


def test_an_order_without_lines_is_permanent() -> None:
    with pytest.raises(PermanentSyncError) as caught:
        to_document(order("08_purchase_order_created.json", lines=[]), "1", document_status=None)
    assert (caught.value.code, caught.value.retryable) == ("no_lines", False)


def test_expected_totals_as_the_reference_computes_them() -> None:
    # 3 x 84.50 = 253.50 at 21 % (53.235 → 53.24) and 1 x 250.00 at 10 % (25.00).
    totals = expected_totals(order("09_purchase_order_updated.json"))
    assert (totals.net, totals.tax, totals.gross) == (Decimal("503.50"), Decimal("78.24"), Decimal("581.74"))
    # 800 x 0.9038 = 723.04; 21 % = 151.8384 → 151.84.
    totals = expected_totals(order("10_purchase_order_created.json"))
    assert (totals.net, totals.tax, totals.gross) == (Decimal("723.04"), Decimal("151.84"), Decimal("874.88"))
    assert totals.gross_cents == 87488


def test_unit_prices_are_decimals_with_exact_digits() -> None:
    (line,) = to_document(order("10_purchase_order_created.json"), "1", document_status=None).lines
    assert line.unit_price == Decimal("0.9038")
    assert isinstance(line.unit_price, Decimal)


def test_status_canceled_open_on_create_or_reopen_else_left_alone() -> None:
    canceled = order("11_purchase_order_canceled.json")
    sent = order("10_purchase_order_created.json")
    assert document_status(canceled, creating=False, was_closed=False) == "canceled"
    assert document_status(canceled, creating=True, was_closed=False) == "canceled"
    assert document_status(sent, creating=True, was_closed=False) == "pendingToReceive"
    assert document_status(sent, creating=False, was_closed=True) == "pendingToReceive"
    assert document_status(sent, creating=False, was_closed=False) is None


def test_tag_carries_the_buildnexion_id() -> None:
    assert to_document(order("08_purchase_order_created.json"), "1", document_status=None).tags == ("bn:po_55",)
