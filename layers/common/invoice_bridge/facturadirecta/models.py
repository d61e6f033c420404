"""FacturaDirecta's side of the boundary: the purchase order and provider documents we send and read back.

Plain frozen dataclasses, independent of the wire format: the XML adapter (`xml.py`) turns them into
documents and back, and a JSON adapter could do the same without the exporter noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

# The reference: "En los atributos tax1, tax2, tax3 y tax4 ...": four document tax slots.
MAX_TAX_SLOTS = 4
# Lines carry applyTax1..applyTax6 in the reference's documents.
LINE_TAX_FLAGS = 6
STATUS_CANCELED = "canceled"
STATUS_OPEN = "pendingToReceive"


@dataclass(frozen=True)
class Tax:
    """A document tax slot as sent: `<taxN><name/><rate/></taxN>`."""

    name: str
    rate: Decimal


@dataclass(frozen=True)
class Line:
    """A document line as sent; `tax_slot` is the 1-based slot its `applyTaxN` sets (None: no tax)."""

    product_code: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_slot: int | None


@dataclass(frozen=True)
class PurchaseOrderDocument:
    """A purchase order to create or update (the reference's request elements only)."""

    provider_id: str
    document_date: date
    document_serial: str | None
    document_number: int | None
    currency: str
    notes: str | None
    taxes: tuple[Tax, ...]
    lines: tuple[Line, ...]
    tags: tuple[str, ...]
    document_status: str | None


@dataclass(frozen=True)
class TaxTotal:
    """A document tax slot as FacturaDirecta computed it."""

    slot: int
    name: str
    rate: Decimal
    base: Decimal
    total: Decimal


@dataclass(frozen=True)
class LineRecord:
    """A document line as read back."""

    id: str | None
    product_code: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    total_price: Decimal | None
    tax_slots: tuple[int, ...]


@dataclass(frozen=True)
class PurchaseOrderRecord:
    """A purchase order as FacturaDirecta answers it."""

    id: str
    provider_id: str | None
    document_date: date | None
    document_serial: str | None
    document_number: str | None
    document_status: str | None
    currency: str | None
    notes: str | None
    net_total: Decimal | None
    taxes: tuple[TaxTotal, ...]
    gross_total: Decimal | None
    lines: tuple[LineRecord, ...]
    tags: tuple[str, ...] = ()
    custom_attributes: dict[str, str | None] = field(default_factory=dict)

    @property
    def has_totals(self) -> bool:
        """Whether the answer carried the computed totals."""
        return self.net_total is not None and self.gross_total is not None

    @property
    def tax_total(self) -> Decimal:
        """The sum of the tax slots' totals."""
        return sum((t.total for t in self.taxes), Decimal(0))


@dataclass(frozen=True)
class ProviderDocument:
    """A provider to create: `<provider><name/><taxCode/>...</provider>`."""

    name: str
    tax_code: str
    address1: str | None = None
    city: str | None = None
    zipcode: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class ProviderRecord:
    """A provider as FacturaDirecta answers it."""

    id: str
    name: str | None
    tax_code: str | None


@dataclass(frozen=True)
class ErrorDocument:
    """`<xml><httpStatus/><errorCode/><errorMessage/></xml>`."""

    http_status: int | None
    error_code: str | None
    error_message: str | None
