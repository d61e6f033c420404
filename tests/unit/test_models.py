"""The BuildNexion contract models: sample events validate, floats never pass for decimals or cents."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from invoice_bridge.buildnexion.models import OBJECT_MODELS, Invoice, SalesInvoice
from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import InvalidPayload
from invoice_bridge.receiver import parse_buildnexion_event, parse_buildnexion_head
from invoice_bridge.tuimprenta.webhook import TuimprentaEvent
from tests.conftest import BUILDNEXION_EVENTS, load_event


@pytest.mark.parametrize("path", BUILDNEXION_EVENTS, ids=lambda p: Path(p).stem)
def test_every_sample_object_validates_against_the_contract(path: Path) -> None:
    envelope = load_event(f"buildnexion/{path.name}")
    obj = envelope["data"]["object"]
    OBJECT_MODELS[obj["object"]].model_validate(obj)


def test_decimal_strings_stay_exact_and_totals_are_cents() -> None:
    invoice = Invoice.model_validate(load_event("buildnexion/01_invoice_created.json")["data"]["object"])
    assert invoice.lines[0].quantity == Decimal("12.5")
    assert invoice.total_amount == 127806
    line_total = invoice.lines[0].quantity * invoice.lines[0].unit_amount
    assert line_total == invoice.subtotal_amount


def test_a_float_quantity_is_refused() -> None:
    obj = load_event("buildnexion/05_sales_invoice_created.json")["data"]["object"]
    obj["lines"][0]["quantity"] = 1.0
    with pytest.raises(ValueError, match="decimal string"):
        SalesInvoice.model_validate(obj)


def test_a_float_amount_is_refused() -> None:
    obj = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    obj["total_amount"] = 1278.06
    with pytest.raises(ValueError, match="total_amount"):
        Invoice.model_validate(obj)


def invalid_field(document: dict[str, Any]) -> str:
    with pytest.raises(InvalidPayload) as caught:
        parse_buildnexion_event(document)
    return caught.value.field


def test_envelope_errors_name_the_field() -> None:
    event = load_event("buildnexion/01_invoice_created.json")
    del event["data"]["object"]["id"]
    assert invalid_field(event) == "data.object.id"

    event = load_event("buildnexion/01_invoice_created.json")
    event["data"]["object"]["updated_at"] = "2026-11-03T10:15:00"  # no time zone
    assert invalid_field(event) == "data.object.updated_at"

    event = load_event("buildnexion/01_invoice_created.json")
    event["data"]["object"]["object"] = "purchase_order"
    assert invalid_field(event) == "data.object.object"

    event = load_event("buildnexion/01_invoice_created.json")
    event["id"] = "evt with spaces"
    assert invalid_field(event) == "id"


def test_head_needs_only_id_type_and_created() -> None:
    head = parse_buildnexion_head({"id": "evt_1", "type": "provider.updated", "created": 1, "data": {}})
    assert head.type == "provider.updated"
    with pytest.raises(InvalidPayload) as caught:
        parse_buildnexion_head({"id": "evt_1", "type": "provider.updated", "created": "yesterday"})
    assert caught.value.field == "created"


def test_tuimprenta_ids_are_read_only_when_they_are_strings() -> None:
    event = TuimprentaEvent.model_validate(
        {"id": "evt_1", "type": "invoice.issued", "created_at": "2026-11-21T12:00:00Z", "data": {"invoice_id": 7}}
    )
    assert (event.invoice_id(), event.batch_id()) == (None, None)
    event = TuimprentaEvent.model_validate(
        {"id": "evt_2", "type": "batch.completed", "created_at": "2026-11-21T12:00:00Z", "data": {"batch_id": ["b"]}}
    )
    assert event.batch_id() is None


def test_problems_are_worded_for_the_sender() -> None:
    event = load_event("buildnexion/01_invoice_created.json")
    event["data"]["object"]["object"] = "purchase_order"
    with pytest.raises(InvalidPayload) as caught:
        parse_buildnexion_event(event)
    assert caught.value.message == "must be 'invoice' for a invoice.created event"
    obj = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    obj["lines"][0]["quantity"] = 12.5
    with pytest.raises(ValidationError) as refused:
        Invoice.model_validate(obj)
    assert describe_validation_error(refused.value) == ("lines[0].quantity", 'must be a decimal string, e.g. "12.5"')
