"""BuildNexion purchase order → FacturaDirecta purchase order, and the totals both sides should agree on.

Money goes from integer cents (or the sub-cent `unit_amount_decimal`) to `Decimal`, never through float.
Each distinct VAT rate of the lines takes a document tax slot in order of first appearance (`tax1` = the
first rate met, ...), and each line sets `applyTaxN` for its own rate's slot. Totals are computed as the
reference says FacturaDirecta computes them: line total = quantity * unit price at `lineTotalDecimals`
(2), net = sum of line totals, each slot's total = base * rate / 100, gross = net + taxes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from invoice_bridge import taxid
from invoice_bridge.buildnexion.models import Provider, PurchaseOrder
from invoice_bridge.errors import PermanentSyncError
from invoice_bridge.facturadirecta.models import (
    MAX_TAX_SLOTS,
    STATUS_CANCELED,
    STATUS_OPEN,
    Line,
    ProviderDocument,
    PurchaseOrderDocument,
    PurchaseOrderRecord,
    Tax,
)
from invoice_bridge.money import CENT, decimal_to_cents, normalize, unit_price

TAX_NAME = "IVA"
BUILDNEXION_CANCELED = "canceled"
_NUMBER = re.compile(r"^(?P<serial>.*?)(?P<number>\d+)$")


def order_tag(order_id: str) -> str:
    """The tag that finds the order again after a crash: `bn:<purchase order id>`."""
    return f"bn:{order_id}"


def split_number(number: str) -> tuple[str | None, int | None]:
    """BuildNexion's number as FacturaDirecta's series and number: 'PO-2026-0007' → ('PO-2026-', 7).

    FacturaDirecta's documentNumber is the number within a series; a number with no trailing digits goes
    as the series alone and FacturaDirecta numbers it.
    """
    match = _NUMBER.match(number.strip())
    if match is None:
        return number.strip() or None, None
    return match["serial"] or None, int(match["number"])


def tax_rates(order: PurchaseOrder) -> list[Decimal]:
    """The distinct VAT rates of the lines, in order of first appearance (21 and 21.00 are one rate)."""
    rates: list[Decimal] = []
    for line in order.lines:
        rate = normalize(line.vat_percent)
        if rate not in rates:
            rates.append(rate)
    return rates


def is_canceled(order: PurchaseOrder) -> bool:
    """Whether BuildNexion's latest state is canceled."""
    return order.status == BUILDNEXION_CANCELED


def to_document(order: PurchaseOrder, provider_id: str, *, document_status: str | None) -> PurchaseOrderDocument:
    """The purchase order document for FacturaDirecta (every line, the taxes, the tag)."""
    rates = tax_rates(order)
    if len(rates) > MAX_TAX_SLOTS:
        raise PermanentSyncError(
            f"purchase order {order.id} has {len(rates)} VAT rates; FacturaDirecta has {MAX_TAX_SLOTS} tax slots",
            code="too_many_tax_rates",
        )
    if not order.lines:
        raise PermanentSyncError(f"purchase order {order.id} has no lines", code="no_lines")
    serial, number = split_number(order.number)
    lines = tuple(
        Line(
            product_code=line.product_code,
            description=line.description,
            quantity=normalize(line.quantity),
            unit_price=unit_price(line.unit_amount, line.unit_amount_decimal),
            tax_slot=rates.index(normalize(line.vat_percent)) + 1,
        )
        for line in order.lines
    )
    return PurchaseOrderDocument(
        provider_id=provider_id,
        document_date=order.date,
        document_serial=serial,
        document_number=number,
        currency=order.currency,
        notes=order.notes,
        taxes=tuple(Tax(TAX_NAME, rate) for rate in rates),
        lines=lines,
        tags=(order_tag(order.id),),
        document_status=document_status,
    )


def document_status(order: PurchaseOrder, *, creating: bool, was_closed: bool) -> str | None:
    """`canceled` for a canceled order; the open status on a create or a reopen; else left as it is there."""
    if is_canceled(order):
        return STATUS_CANCELED
    if creating or was_closed:
        return STATUS_OPEN
    return None  # FacturaDirecta's own progress (delivered, ...) is the buyer's to keep


def to_provider(provider: Provider) -> ProviderDocument:
    """The provider to create, named exactly as in BuildNexion."""
    return ProviderDocument(
        name=provider.name,
        tax_code=taxid.folded(provider.nif),
        address1=provider.address,
        city=provider.town,
        zipcode=provider.zip_code,
        country=provider.country_code,
    )


@dataclass(frozen=True)
class Totals:
    """Net, tax and gross of a purchase order, in currency units."""

    net: Decimal
    tax: Decimal
    gross: Decimal

    def as_details(self, prefix: str) -> dict[str, str]:
        """For the ledger's details map."""
        return {
            f"{prefix}_net": f"{self.net:f}",
            f"{prefix}_tax": f"{self.tax:f}",
            f"{prefix}_gross": f"{self.gross:f}",
        }

    def figures(self) -> dict[str, Decimal]:
        """Net, tax and gross by name (compared and logged by the engine's totals check)."""
        return {"net": self.net, "tax": self.tax, "gross": self.gross}

    @property
    def gross_cents(self) -> int:
        """The gross total in cents."""
        return decimal_to_cents(self.gross)


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def expected_totals(order: PurchaseOrder) -> Totals:
    """BuildNexion's amounts, computed from its lines the way the reference says FacturaDirecta does."""
    net = Decimal(0)
    bases: dict[Decimal, Decimal] = {}
    for line in order.lines:
        total = _round(normalize(line.quantity) * unit_price(line.unit_amount, line.unit_amount_decimal))
        net += total
        rate = normalize(line.vat_percent)
        bases[rate] = bases.get(rate, Decimal(0)) + total
    tax = sum((_round(base * rate / 100) for rate, base in bases.items()), Decimal(0))
    return Totals(net=_round(net), tax=_round(tax), gross=_round(net + tax))


def remote_totals(record: PurchaseOrderRecord) -> Totals:
    """FacturaDirecta's computed totals."""
    return Totals(
        net=_round(record.net_total or Decimal(0)),
        tax=_round(record.tax_total),
        gross=_round(record.gross_total or Decimal(0)),
    )
