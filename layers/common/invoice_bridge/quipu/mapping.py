"""BuildNexion invoice → Quipu expense invoice request (JSON-API), exactly: cents become decimal strings, never float.

Separate models per boundary: the BuildNexion `Invoice`/`Provider` in, a domain `ExpenseInvoice` with its
`ExpenseItem`s, then the JSON-API request document Quipu takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from invoice_bridge.buildnexion.models import Invoice, InvoiceLine, Provider
from invoice_bridge.money import CENT, HUNDRED, cents_to_decimal, decimal_string, dumps, unit_price

# Quipu keeps Spanish books: a payment moment becomes the date it was in Spain.
BOOKS_TIME_ZONE = ZoneInfo("Europe/Madrid")
ITEM_TYPE = "book_entry_items"


@dataclass(frozen=True)
class ExpenseItem:
    """One item of an expense invoice, in currency units and percents."""

    concept: str
    unitary_amount: Decimal
    quantity: Decimal
    vat_percent: Decimal
    retention_percent: Decimal

    def attributes(self) -> dict[str, str]:
        """The item's attributes as Quipu takes them: decimal strings with their exact digits."""
        return {
            "concept": self.concept,
            "unitary_amount": decimal_string(self.unitary_amount, min_places=2),
            "quantity": decimal_string(self.quantity),
            "vat_percent": decimal_string(self.vat_percent),
            "retention_percent": decimal_string(self.retention_percent),
        }


@dataclass(frozen=True)
class ExpenseInvoice:
    """What Quipu should hold for one BuildNexion supplier invoice."""

    number: str
    issue_date: date
    due_dates: tuple[date, ...]
    paid_at: date | None
    items: tuple[ExpenseItem, ...]
    source_id: str = ""  # the BuildNexion invoice id, written into Quipu as our marker tag

    @property
    def fiscal_year(self) -> int:
        """The year whose numbering the invoice number is unique in."""
        return self.issue_date.year

    @property
    def marker(self) -> str:
        """Our tag on the Quipu invoice (DESIGN.md): the proof that an invoice found by its number is ours."""
        return marker(self.source_id)


def marker(invoice_id: str) -> str:
    """`bn:<invoice id>`: the tag that says a Quipu invoice was written for this BuildNexion invoice."""
    return f"bn:{invoice_id}"


def fingerprint(request: Mapping[str, Any]) -> str:
    """A digest of a request body exactly as Quipu receives it, to tell a content change from a status change.

    Taken from the body itself (the create request, which has no item ids), never from a second list of
    fields: whatever is added to the request changes the digest.
    """
    return hashlib.sha256(dumps(request).encode("utf-8")).hexdigest()[:32]


def item_from_line(line: InvoiceLine) -> ExpenseItem:
    """A BuildNexion line: cents (or sub-cent `unit_amount_decimal`) → currency units, percents as they are."""
    return ExpenseItem(
        concept=line.description,
        unitary_amount=unit_price(line.unit_amount, line.unit_amount_decimal),
        quantity=line.quantity,
        vat_percent=line.vat_percent,
        retention_percent=line.retention_percent,
    )


def percent_reproducing(base_cents: int, amount_cents: int) -> Decimal:
    """The simplest percent that turns `base_cents` into exactly `amount_cents` (half up), e.g. 21 for 21%.

    Tries whole percents first, then one, two, ... decimals, so a standard rate is found when it fits.
    """
    if base_cents == 0 or amount_cents == 0:
        return Decimal(0)
    exact = Decimal(amount_cents) * HUNDRED / Decimal(base_cents)
    for places in range(0, 7):
        candidate = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if (Decimal(base_cents) * candidate / HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP) == amount_cents:
            return candidate
    return exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def item_from_totals(invoice: Invoice) -> ExpenseItem:
    """An invoice without lines: one item from its subtotal, with the VAT and retention it states."""
    return ExpenseItem(
        concept=f"Factura {invoice.invoice_number}",
        unitary_amount=cents_to_decimal(invoice.subtotal_amount),
        quantity=Decimal(1),
        vat_percent=percent_reproducing(invoice.subtotal_amount, invoice.vat_amount),
        retention_percent=percent_reproducing(invoice.subtotal_amount, invoice.retention_amount),
    )


def expense_invoice(invoice: Invoice) -> ExpenseInvoice:
    """The domain expense invoice for a BuildNexion supplier invoice."""
    items = tuple(item_from_line(line) for line in invoice.lines) or (item_from_totals(invoice),)
    return ExpenseInvoice(
        number=invoice.invoice_number,
        issue_date=invoice.issue_date,
        due_dates=(invoice.due_date,) if invoice.due_date else (),
        paid_at=invoice.paid_at.astimezone(BOOKS_TIME_ZONE).date() if invoice.paid_at else None,
        items=items,
        source_id=invoice.id,
    )


def contact_attributes(provider: Provider) -> dict[str, Any]:
    """A supplier contact: the provider's name exactly as BuildNexion holds it, and its tax id."""
    attributes: dict[str, Any] = {"name": provider.name, "tax_id": provider.nif}
    for name in ("email", "phone", "address", "town", "zip_code"):
        value = getattr(provider, name)
        if value:
            attributes[name] = value
    attributes["country_code"] = provider.country_code.lower()
    return attributes


def _items(invoice: ExpenseInvoice, item_ids: list[str]) -> list[dict[str, Any]]:
    """Items as Quipu's PATCH semantics take them: with an id → changed, without → added, unlisted → removed."""
    items: list[dict[str, Any]] = []
    for index, item in enumerate(invoice.items):
        entry: dict[str, Any] = {"type": ITEM_TYPE, "attributes": item.attributes()}
        if index < len(item_ids):
            entry = {"id": item_ids[index], **entry}
        items.append(entry)
    return items


def _attributes(invoice: ExpenseInvoice) -> dict[str, Any]:
    return {
        "kind": "expenses",
        "number": invoice.number,
        "issue_date": invoice.issue_date.isoformat(),
        "due_dates": [d.isoformat() for d in invoice.due_dates],
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None,
        "tags": invoice.marker,
    }


def create_request(invoice: ExpenseInvoice, contact_id: str) -> dict[str, Any]:
    """`POST /invoices` body: an expense invoice of the contact with every item."""
    return {
        "data": {
            "type": "invoices",
            "attributes": _attributes(invoice),
            "relationships": {
                "contact": {"data": {"id": contact_id, "type": "contacts"}},
                "items": {"data": _items(invoice, [])},
            },
        }
    }


def update_request(invoice: ExpenseInvoice, remote_id: str, contact_id: str, item_ids: list[str]) -> dict[str, Any]:
    """`PATCH /invoices/{id}` body: every attribute but `tags`, and the full item list (existing items by id).

    A PATCH changes only the attributes it sends (the reference's example sends `issue_date` alone). The
    invoice carries our marker since its create (an invoice without it is never adopted), so `tags` is left
    out: the tags a user added in Quipu stay.
    """
    attributes = {k: v for k, v in _attributes(invoice).items() if k != "tags"}
    return {
        "data": {
            "type": "invoices",
            "id": remote_id,
            "attributes": attributes,
            "relationships": {
                "contact": {"data": {"id": contact_id, "type": "contacts"}},
                "items": {"data": _items(invoice, item_ids)},
            },
        }
    }


def credit_note_request(remote_id: str) -> dict[str, Any]:
    """A full credit note of an invoice: the `amended_invoice` relationship only (the reference's minimum)."""
    return {
        "data": {
            "type": "invoices",
            "relationships": {"amended_invoice": {"data": {"id": remote_id, "type": "invoices"}}},
        }
    }


def to_cents(amount: Decimal) -> int:
    """Quipu's decimal total in cents (half up)."""
    return int((amount / CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP))
