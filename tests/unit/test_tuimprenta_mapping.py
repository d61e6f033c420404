"""Sales invoice → tuimprenta payload: money as JSON numbers with their own decimals, keys derived from the set."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from invoice_bridge.buildnexion.models import SalesInvoice
from invoice_bridge.tuimprenta.mapping import batch_body, cancel_key, payload_invoice, payload_text, submission_key
from tests.conftest import load_event


def sales_invoice(**changes: Any) -> SalesInvoice:
    obj = load_event("buildnexion/05_sales_invoice_created.json")["data"]["object"]
    obj.update(changes)
    return SalesInvoice.model_validate(obj)


def unit_price_text(payload: str) -> list[str]:
    return re.findall(r'"unit_price":([^,}]+)', payload)


@pytest.mark.parametrize(
    ("cents", "text"),
    [(1999, "19.99"), (10, "0.10"), (3, "0.03"), (1000001, "10000.01"), (1200000, "12000.00"), (0, "0.00")],
)
def test_unit_price_is_a_json_number_with_the_amounts_own_decimals(cents: int, text: str) -> None:
    line = {"description": "x", "quantity": "1", "unit_amount": cents, "tax_rate": "0.16"}
    payload = payload_text(sales_invoice(lines=[line]))
    assert unit_price_text(payload) == [text]
    assert json.loads(payload, parse_float=Decimal)["items"][0]["unit_price"] == Decimal(cents) / 100


def test_sub_cent_unit_price_keeps_its_digits() -> None:
    line = {
        "description": "x",
        "quantity": "3",
        "unit_amount": 12550,
        "unit_amount_decimal": "12549.5",
        "tax_rate": "0.16",
    }
    assert unit_price_text(payload_text(sales_invoice(lines=[line]))) == ["125.495"]


def test_payload_carries_the_customer_items_and_buildnexion_id() -> None:
    invoice = sales_invoice()
    payload = json.loads(payload_text(invoice), parse_float=Decimal)
    assert payload == {
        "series": "TD-2025",
        "issue_date": "2026-11-07",
        "customer": {"name": "Inversiones ABC, C.A.", "tax_id": "J-12345678-9", "email": "admin@abc.com"},
        "items": [
            {
                "sku": "CERT-04",
                "description": "Certificación obra 4",
                "qty": 1,
                "unit_price": Decimal("12000.00"),
                "tax_rate": Decimal("0.16"),
            }
        ],
        "currency": "USD",
        "send_email": True,
        "metadata": {"buildnexion_id": "sin_9"},
    }
    assert '"qty":1,' in payload_text(invoice)
    assert '"tax_rate":0.16' in payload_text(invoice)


def test_a_tax_id_typed_in_fullwidth_goes_out_in_ascii_with_its_dashes() -> None:
    # Given a customer RIF typed on a phone keyboard in fullwidth characters, with a trailing space
    base = sales_invoice()
    typed = "\uff2a\uff0d\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff0d\uff19 "
    invoice = sales_invoice(customer={**base.customer.model_dump(mode="json"), "tax_id": typed})
    # Then tuimprenta receives the id as written in ASCII, its dashes kept (RIFs carry them)
    assert payload_invoice(invoice)["customer"]["tax_id"] == "J-12345678-9"


def test_quantity_and_tax_rate_keep_their_decimals() -> None:
    line = {"description": "x", "quantity": "2.50", "unit_amount": 100, "tax_rate": "0.080"}
    text = payload_text(sales_invoice(lines=[line]))
    assert '"qty":2.5,' in text
    assert '"tax_rate":0.08}' in text


def test_no_float_reaches_the_payload() -> None:
    document = payload_invoice(sales_invoice())
    assert not any(isinstance(v, float) for v in _leaves(document))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_batch_body_is_the_same_text_for_the_same_payloads() -> None:
    payloads = [payload_text(sales_invoice(id=f"sin_{n}")) for n in range(3)]
    body = batch_body(payloads, "https://example.test/webhooks/tuimprenta")
    assert body == batch_body(list(payloads), "https://example.test/webhooks/tuimprenta")
    document = json.loads(body)
    assert document["type"] == "invoice.create"
    assert [p["metadata"]["buildnexion_id"] for p in document["payload"]] == ["sin_0", "sin_1", "sin_2"]
    assert document["callback_url"] == "https://example.test/webhooks/tuimprenta"


def test_submission_key_is_derived_from_the_claimed_set_and_attempt() -> None:
    members = [(f"sin_{n}", payload_text(sales_invoice(id=f"sin_{n}"))) for n in range(3)]
    key = submission_key(members, 1)
    assert key == submission_key(list(members), 1)  # a re-send after a crash: the same key
    assert key != submission_key(members, 2)  # a new attempt of a failed batch: a new key
    assert key != submission_key(members[:2], 1)  # another set
    changed = [(members[0][0], payload_text(sales_invoice(id="sin_0", currency="EUR"))), *members[1:]]
    assert key != submission_key(changed, 1)  # another body
    assert len(key) <= 64
    assert re.fullmatch(r"[a-z0-9-]+", key)


def test_submission_key_is_the_same_in_every_release() -> None:
    # A claim written by one release may be re-sent by the next after a crash: the key must not move, or
    # tuimprenta would take the re-send as a new batch and issue its invoices twice.
    key = submission_key([("sin_1", '{"a":1}'), ("sin_2", "{}")], 1)
    assert key == "ib-batch-13dc187e9507da5f15da6fc81b65127abba1514bd8a0f829"


def test_cancel_key_is_stable_per_invoice() -> None:
    assert cancel_key("inv_1") == cancel_key("inv_1") != cancel_key("inv_2")
