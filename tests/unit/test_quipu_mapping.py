"""BuildNexion invoice → Quipu expense invoice: exact decimal strings, never float."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from invoice_bridge.buildnexion.models import Invoice, Provider
from invoice_bridge.money import dumps
from invoice_bridge.quipu import mapping
from invoice_bridge.quipu.mapping import (
    contact_attributes,
    create_request,
    credit_note_request,
    expense_invoice,
    fingerprint,
    percent_reproducing,
    to_cents,
    update_request,
)
from tests.conftest import load_event


def invoice(**changes: Any) -> Invoice:
    obj = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    return Invoice.model_validate({**obj, **changes})


def line(quantity: str, unit_amount: int, vat: str = "21", retention: str = "0", **extra: Any) -> dict[str, Any]:
    return {
        "description": "x",
        "quantity": quantity,
        "unit_amount": unit_amount,
        "vat_percent": vat,
        "retention_percent": retention,
        **extra,
    }


def items_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = document["data"]["relationships"]["items"]["data"]
    return [i["attributes"] for i in items]


def test_cents_become_exact_decimal_strings_with_no_float_anywhere() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004: here 10 + 20 cents stay exact.
    document = create_request(expense_invoice(invoice(lines=[line("1", 10), line("1", 20)])), "c1")
    assert [i["unitary_amount"] for i in items_of(document)] == ["0.10", "0.20"]
    text = dumps(document)
    parsed = json.loads(text, parse_float=lambda s: (_ for _ in ()).throw(AssertionError(f"float {s}")))
    assert parsed["data"]["attributes"] == {
        "kind": "expenses",
        "number": "F-2026-0042",
        "issue_date": "2026-11-03",
        "due_dates": ["2026-12-03"],
        "paid_at": None,
        "tags": "bn:inv_8f3k2",  # our marker (DESIGN.md): proof an invoice found by its number is ours
    }
    assert parsed["data"]["type"] == "invoices"
    assert parsed["data"]["relationships"]["contact"]["data"] == {"id": "c1", "type": "contacts"}
    assert [i["type"] for i in parsed["data"]["relationships"]["items"]["data"]] == ["book_entry_items"] * 2


def test_a_paid_invoice_carries_its_payment_date() -> None:
    document = create_request(expense_invoice(invoice(paid_at="2026-11-10T09:00:00Z")), "c1")
    assert document["data"]["attributes"]["paid_at"] == "2026-11-10"


def test_a_supplier_contact_has_its_name_tax_id_what_it_states_and_a_lower_case_country() -> None:
    provider = Provider.model_validate(
        {"object": "provider", "id": "prv_1", "name": "Áridos S.L.", "nif": "B1", "email": "a@b.es", "town": "Soria"}
    )
    assert contact_attributes(provider) == {
        "name": "Áridos S.L.",
        "tax_id": "B1",
        "email": "a@b.es",
        "town": "Soria",
        "country_code": "es",
    }


def test_sub_cent_unit_price_three_decimal_quantity_and_retention() -> None:
    lines = [line("1250.125", 90, unit_amount_decimal="90.38", retention="15")]
    (item,) = items_of(create_request(expense_invoice(invoice(lines=lines)), "c1"))
    assert item == {
        "concept": "x",
        "unitary_amount": "0.9038",
        "quantity": "1250.125",
        "vat_percent": "21",
        "retention_percent": "15",
    }


def test_an_invoice_without_lines_gets_one_item_from_subtotal_and_vat() -> None:
    bare = invoice(lines=[], subtotal_amount=105625, vat_amount=22181, retention_amount=15844, total_amount=111962)
    (item,) = items_of(create_request(expense_invoice(bare), "c1"))
    assert item["concept"] == "Factura F-2026-0042"
    assert item["unitary_amount"] == "1056.25"
    assert item["quantity"] == "1"
    assert item["vat_percent"] == "21"
    assert item["retention_percent"] == "15"


def test_percent_reproducing_prefers_the_simplest_rate_that_gives_the_amount() -> None:
    assert percent_reproducing(10000, 1000) == Decimal(10)
    assert percent_reproducing(333, 70) == Decimal(21)  # 69.93 → 70 cents at 21 %
    assert percent_reproducing(10000, 1234) == Decimal("12.34")
    assert percent_reproducing(0, 0) == Decimal(0)
    assert percent_reproducing(3, 1) == Decimal(33)  # 0.99 → 1 cent: whole percents before 33.3
    assert percent_reproducing(10000, 1) == Decimal("0.01")
    assert percent_reproducing(101, 50) == Decimal("49.5")  # 49.995 cents rounded half up


def test_quipu_totals_become_cents_half_up() -> None:
    assert to_cents(Decimal("1278.06")) == 127806
    assert to_cents(Decimal("0.125")) == 13
    assert to_cents(Decimal("-0.125")) == -13


def test_an_invoice_without_due_date_has_no_due_dates() -> None:
    document = create_request(expense_invoice(invoice(due_date=None)), "c1")
    assert document["data"]["attributes"]["due_dates"] == []


def test_percent_reproducing_of_nothing_is_zero_whatever_the_other_amount() -> None:
    assert percent_reproducing(10000, 0) == Decimal(0)
    assert percent_reproducing(0, 500) == Decimal(0)  # no base: no rate (and no division by zero)


def test_percent_reproducing_beyond_six_decimals_is_the_nearest_six_decimal_rate_half_up() -> None:
    # Subtotals of millions of euros: no rate with up to six decimals may give the exact cents.
    assert percent_reproducing(997_110_089, 209_393_115) == Decimal("21.000000")
    assert str(percent_reproducing(1_000_000_000, 210_000_005)) == "21.000001"  # 21.0000005 rounded half up


def test_paid_at_is_the_date_in_spain() -> None:
    paid = expense_invoice(invoice(paid_at="2026-11-03T23:30:00Z"))
    assert paid.paid_at is not None
    assert paid.paid_at.isoformat() == "2026-11-04"


def test_update_keeps_item_ids_in_order_adds_new_ones_and_omits_removed_ones() -> None:
    desired = expense_invoice(invoice(lines=[line("1", 100), line("2", 200), line("3", 300)]))
    document = update_request(desired, "inv1", "c1", ["i1", "i2"])
    assert (document["data"]["type"], document["data"]["id"]) == ("invoices", "inv1")
    created = create_request(desired, "c1")["data"]["attributes"]
    # Every attribute of the create but `tags`: a PATCH leaves what it does not send, so a user's tags stay
    assert document["data"]["attributes"] == {k: v for k, v in created.items() if k != "tags"}
    assert document["data"]["relationships"]["contact"] == {"data": {"id": "c1", "type": "contacts"}}
    items = document["data"]["relationships"]["items"]["data"]
    assert [i.get("id") for i in items] == ["i1", "i2", None]
    fewer = expense_invoice(invoice(lines=[line("1", 100)]))
    items = update_request(fewer, "inv1", "c1", ["i1", "i2"])["data"]["relationships"]["items"]["data"]
    assert [i.get("id") for i in items] == ["i1"]


def digest(source: Invoice, contact_id: str = "c1") -> str:
    return fingerprint(create_request(expense_invoice(source), contact_id))


def test_fingerprint_ignores_status_but_not_content() -> None:
    base = digest(invoice())
    assert digest(invoice(status="void")) == base
    assert digest(invoice(due_date="2026-12-18")) != base
    assert digest(invoice(paid_at="2026-11-10T09:00:00Z")) != base
    assert digest(invoice(), contact_id="c2") != base


def test_a_field_added_to_the_request_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fingerprint of today's request
    before = digest(invoice())
    # When the request gains a field (here `notes`, which Quipu's invoices take), and nothing else changes
    original = mapping._attributes

    def with_notes(desired: Any) -> dict[str, Any]:
        return {**original(desired), "notes": "Obra Torre Sur"}

    monkeypatch.setattr(mapping, "_attributes", with_notes)
    # Then the fingerprint changes, so an invoice synced before is sent again rather than called "unchanged"
    assert create_request(expense_invoice(invoice()), "c1")["data"]["attributes"]["notes"] == "Obra Torre Sur"
    assert digest(invoice()) != before


def test_the_request_carries_our_marker_tag() -> None:
    document = create_request(expense_invoice(invoice()), "c1")
    assert document["data"]["attributes"]["tags"] == "bn:inv_8f3k2"


def test_credit_note_is_the_amended_invoice_relationship_only() -> None:
    assert credit_note_request("77") == {
        "data": {"type": "invoices", "relationships": {"amended_invoice": {"data": {"id": "77", "type": "invoices"}}}}
    }
