"""What the chaos checker expects, computed on its own from BuildNexion's objects and the platforms' references,
and how it reads a dead letter and the faults a run drew."""

from __future__ import annotations

import json
import threading
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from sandbox.chaos import (
    DEFAULT_FAULTS,
    expectations,
    line_price,
    order_totals,
    plain,
    tag,
    tax_key,
    tuimprenta_held,
    undrawn_kinds,
)
from sandbox.chaos_check import OPTIONAL, REQUIRED, Expected, Letter, Snapshot, check
from sandbox.dead_letters import letter_of
from sandbox.faults import KINDS, FaultSettings
from sandbox.tuimprenta import IssuedInvoice, TuimprentaPeer

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def test_order_totals_follow_the_facturadirecta_reference_example() -> None:
    # The reference's purchase order: 1 x 450.00 and 1 x 95.00 under IVA 21 -> 545.00, 114.45, 659.45.
    lines = [
        {"quantity": "1", "unit_amount": 45000, "vat_percent": "21"},
        {"quantity": "1", "unit_amount": 9500, "vat_percent": "21"},
    ]
    assert order_totals(lines) == (Decimal("545"), Decimal("114.45"), Decimal("659.45"))


def test_each_line_total_is_rounded_to_cents_before_the_sums_and_each_rate_is_taxed_once() -> None:
    lines = [
        # 3 x 0.335 = 1.005 -> totalPrice 1.01 (half up), not 1.005 summed later
        {"quantity": "3", "unit_amount": 34, "unit_amount_decimal": "33.5", "vat_percent": "21"},
        {"quantity": "3", "unit_amount": 34, "unit_amount_decimal": "33.5", "vat_percent": "21"},
        {"quantity": "2.5", "unit_amount": 999, "vat_percent": "10"},  # 24.975 -> 24.98
    ]
    net, tax, gross = order_totals(lines)
    assert net == Decimal("27.00")  # 1.01 + 1.01 + 24.98
    # IVA 21 on 2.02 = 0.4242 -> 0.42; IVA 10 on 24.98 = 2.498 -> 2.50
    assert tax == Decimal("2.92")
    assert gross == Decimal("29.92")


def test_a_sub_cent_unit_amount_decimal_wins_over_the_rounded_cents() -> None:
    assert line_price({"unit_amount": 904, "unit_amount_decimal": "903.8"}) == Decimal("9.038")
    assert line_price({"unit_amount": 8450}) == Decimal("84.5")
    assert line_price({"unit_amount": 8450, "unit_amount_decimal": None}) == Decimal("84.5")


def test_plain_numbers_compare_and_print_without_trailing_zeros_or_exponents() -> None:
    assert str(plain("12.50")) == "12.5"
    assert str(plain(Decimal("1E+2"))) == "100"
    assert str(plain("0.00")) == "0"
    assert str(plain(12100)) == "12100"


def test_tax_ids_are_one_key_however_a_platform_stores_them() -> None:
    assert tax_key("ESB12345678") == tax_key("b-12345678") == "B12345678"
    assert tax_key("J-12345678-9") == "J123456789"
    assert tax_key("ES") == "ES"


def test_the_tag_is_designs_bn_prefix() -> None:
    assert tag("po_55") == "bn:po_55"


def _order(**changes: Any) -> dict[str, Any]:
    order = {
        "object": "purchase_order",
        "id": "po_55",
        "number": "PO-2026-0007",
        "date": "2026-11-02",
        "provider_id": "prv_123",
        "currency": "EUR",
        "status": "sent",
        "notes": "Entregar en obra",
        "lines": [
            {
                "product_code": "HA25",
                "description": "Hormigón",
                "quantity": "3",
                "unit_amount": 8450,
                "vat_percent": "21",
            }
        ],
        "updated_at": "2026-11-02T08:00:00Z",
    }
    return {**order, **changes}


def test_expectations_per_platform_come_from_buildnexions_objects() -> None:
    invoice = {
        "object": "invoice",
        "id": "inv_1",
        "status": "void",
        "total_amount": 12100,
        "lines": [{"description": "Obra", "quantity": "2.50", "unit_amount": 4000, "vat_percent": "21.0"}],
    }
    sale = {
        "object": "sales_invoice",
        "id": "sin_1",
        "status": "open",
        "lines": [{"description": "Cert", "quantity": "1", "unit_amount": 1200000, "tax_rate": "0.16"}],
    }
    canceled = {**sale, "id": "sin_2", "status": "canceled"}
    by_id = {e.source_id: e for e in expectations([invoice, sale, canceled, _order(status="canceled")], "credit_note")}
    assert by_id["inv_1"].destination == "quipu"
    assert by_id["inv_1"].status == "credited"
    # A missing retention_percent is the contract's default "0"; quantities and rates compare as numbers.
    assert by_id["inv_1"].content == (12100, (("Obra", Decimal("2.5"), Decimal("40"), Decimal("21"), Decimal("0")),))
    assert (by_id["sin_1"].status, by_id["sin_1"].presence) == ("issued", REQUIRED)
    assert by_id["sin_1"].content == ((Decimal("1"), Decimal("12000")),)
    assert (by_id["sin_2"].status, by_id["sin_2"].presence) == ("canceled", OPTIONAL)
    order = by_id["po_55"]
    assert order.destination == "facturadirecta"
    assert order.status == "canceled"
    lines, totals, notes, day = cast(tuple[Any, ...], order.content)
    assert lines == (("HA25", "Hormigón", Decimal("3"), Decimal("84.5"), (Decimal("21"),)),)
    assert totals == (Decimal("253.5"), Decimal("53.24"), Decimal("306.74"))  # 253.50 x 21 % = 53.235 -> 53.24
    assert (notes, day) == ("Entregar en obra", "2026-11-02")
    assert cast(tuple[Any, ...], expectations([_order(notes=None)], "credit_note")[0].content)[2] == ""


def _message(body: Any, **attributes: str) -> MessageTypeDef:
    return {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": body if isinstance(body, str) else json.dumps(body),
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    }


def test_a_dead_letter_names_its_object_and_the_reason_the_worker_gave() -> None:
    event = {"id": "evt_1", "type": "invoice.created", "data": {"object": {"id": "inv_9"}}}
    letter = letter_of("quipu", _message(event, error_code="http_422", error_message="Invalid number"))
    assert letter == Letter("quipu", "inv_9", "http_422: Invalid number")
    report = {"destination": "tuimprenta", "object_id": "sin_4", "error_code": "E4020"}
    assert letter_of("tuimprenta", _message(report, error_code="E4020")) == Letter("tuimprenta", "sin_4", "E4020")
    # Moved by the redrive policy after maxReceiveCount: no reason at all.
    assert letter_of("quipu", _message(event)) == Letter("quipu", "inv_9", "")
    assert letter_of("quipu", _message("not json")).source_id == "?"


def test_the_default_faults_turn_every_named_kind_on() -> None:
    settings = FaultSettings.parse(DEFAULT_FAULTS)
    assert {kind for kind, share in settings.kinds if share > 0} == set(KINDS)
    assert settings.error > 0
    assert settings.hang > 0
    assert settings.after_effect > 0


def test_kinds_turned_on_but_never_drawn_are_named() -> None:
    settings = FaultSettings.parse("status_402=0.1,row_missing=0.2,error=0.1")
    injected = {"tuimprenta": Counter({"status_402": 2, "error": 4}), "quipu": Counter({"row_missing": 0})}
    assert undrawn_kinds(settings, injected) == ["row_missing"]


def test_two_fiscal_invoices_tuimprenta_issued_for_one_sales_invoice_count_as_a_duplicate() -> None:
    def issued(number: int, status: str = "issued") -> IssuedInvoice:
        document = {"metadata": {"buildnexion_id": "sin_1"}, "items": [{"qty": Decimal("1"), "unit_price": "120.00"}]}
        return IssuedInvoice(f"inv_{number}", "CH", number, document, status=status)

    peer = SimpleNamespace(_lock=threading.Lock(), invoices={})
    peer.invoices = {"inv_1": issued(1), "inv_2": issued(2, "canceled"), "inv_3": issued(3, "draft")}
    held = tuimprenta_held(cast(TuimprentaPeer, peer))
    assert [(h.source_id, h.status) for h in held] == [("sin_1", "issued"), ("sin_1", "canceled")]  # no draft
    assert held[0].content == ((Decimal("1"), Decimal("120")),)
    expected = [Expected("tuimprenta", "sin_1", ((Decimal("1"), Decimal("120")),), "issued")]
    findings = check(expected, Snapshot(held=held))
    assert findings.duplicated == ["tuimprenta sin_1: held 2 times"]
    assert check(expected, Snapshot(held=held[:1])).ok
