"""BuildNexion's contract as models: the webhook envelope and the objects GET returns.

Amounts are integer cents, quantities and percentages decimal strings: neither ever passes through float.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from invoice_bridge.config import EVENT_TYPE_PATTERN


def _decimal_string(value: Any) -> Any:
    # A JSON number here would already have been rounded by whoever produced it: refuse it.
    if not isinstance(value, str):
        raise ValueError('must be a decimal string, e.g. "12.5"')
    return value


# Bounds at the boundary, so nothing downstream meets a number it cannot hold: 20 significant digits and 8
# decimals cover any quantity, rate or sub-cent price (a "1e-9999" would become a 10,001-character number, a
# "1e30" overflow the 28-digit context of every quantize), and 10**13 cents (100 billion) any invoice amount.
MAX_DIGITS = 20
MAX_DECIMAL_PLACES = 8
MAX_CENTS = 10**13
MAX_QUANTITY = Decimal(10**9)
DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    Field(allow_inf_nan=False, max_digits=MAX_DIGITS, decimal_places=MAX_DECIMAL_PLACES),
]
# A quantity is never negative: a refund is a credit note, not a line taking goods back.
Quantity = Annotated[DecimalString, Field(ge=0, le=MAX_QUANTITY)]
Cents = Annotated[StrictInt, Field(ge=-MAX_CENTS, le=MAX_CENTS)]
# Object ids go into URL paths (`/invoices/{id}`): letters, digits and `_.:-`, starting with a letter or digit,
# so no id is ever `..`, a `/` or a query. (Every client also encodes the segment.)
ObjectId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
# SQS takes at most 128 characters for a group or deduplication id, from this alphabet.
SqsId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+$")
]


class Contract(BaseModel):
    """Base of the BuildNexion models: unknown fields are kept, so newer senders do not break us."""

    model_config = ConfigDict(frozen=True, extra="allow")


class EventObject(Contract):
    """What the receiver needs of any event's object: its kind, id and version."""

    object: str = Field(min_length=1)
    id: ObjectId
    updated_at: AwareDatetime


class EventData(Contract):
    """The envelope's `data`."""

    object: EventObject


class EventHead(Contract):
    """What every envelope must carry, routed or not: enough to dedupe and route it."""

    id: SqsId
    type: str = Field(pattern=EVENT_TYPE_PATTERN)
    created: StrictInt = Field(ge=0)


class WebhookEvent(EventHead):
    """A routed webhook envelope: `{"id", "type", "created", "data": {"object": {...}}}`."""

    data: EventData

    def object_kind(self) -> str:
        """The object kind the event type names: `invoice` for `invoice.created`."""
        return self.type.partition(".")[0]


class Provider(Contract):
    """A supplier (`GET /providers/{id}`)."""

    object: Literal["provider"]
    id: ObjectId
    name: str = Field(min_length=1)
    nif: str = Field(min_length=1)
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    town: str | None = None
    zip_code: str | None = None
    country_code: str = Field(default="ES", min_length=2, max_length=2)


class InvoiceLine(Contract):
    """A line of a supplier invoice."""

    description: str
    quantity: Quantity
    unit_amount: Cents
    unit_amount_decimal: DecimalString | None = None
    vat_percent: DecimalString
    retention_percent: DecimalString = Decimal("0")


class Invoice(Contract):
    """A supplier invoice received (`GET /invoices/{id}`)."""

    object: Literal["invoice"]
    id: ObjectId
    invoice_number: str = Field(min_length=1)
    issue_date: date
    due_date: date | None = None
    currency: str = Field(min_length=3, max_length=3)
    provider_id: ObjectId
    status: str
    paid_at: AwareDatetime | None = None
    lines: list[InvoiceLine]
    subtotal_amount: Cents
    vat_amount: Cents
    retention_amount: Cents
    total_amount: Cents
    updated_at: AwareDatetime


class PurchaseOrderLine(Contract):
    """A line of a purchase order."""

    product_code: str | None = None
    description: str
    quantity: Quantity
    unit_amount: Cents
    unit_amount_decimal: DecimalString | None = None
    vat_percent: DecimalString


class PurchaseOrder(Contract):
    """A purchase order (`GET /purchase_orders/{id}`)."""

    object: Literal["purchase_order"]
    id: ObjectId
    number: str = Field(min_length=1)
    date: date
    provider_id: ObjectId
    currency: str = Field(min_length=3, max_length=3)
    status: str
    notes: str | None = None
    lines: list[PurchaseOrderLine]
    updated_at: AwareDatetime


class Customer(Contract):
    """The customer of a sales invoice."""

    name: str = Field(min_length=1)
    tax_id: str = Field(min_length=1)
    email: str | None = None


class SalesInvoiceLine(Contract):
    """A line of a sales invoice; `tax_rate` is a fraction ("0.16")."""

    sku: str | None = None
    description: str
    quantity: Quantity
    unit_amount: Cents
    unit_amount_decimal: DecimalString | None = None
    tax_rate: DecimalString


class SalesInvoice(Contract):
    """An invoice the customer issues (`GET /sales_invoices/{id}`)."""

    object: Literal["sales_invoice"]
    id: ObjectId
    series: str = Field(min_length=1)
    issue_date: date
    currency: str = Field(min_length=3, max_length=3)
    send_email: bool = False
    status: str
    customer: Customer
    lines: list[SalesInvoiceLine]
    updated_at: AwareDatetime


BuildNexionObject = Provider | Invoice | PurchaseOrder | SalesInvoice
OBJECT_MODELS: dict[str, type[BuildNexionObject]] = {
    "provider": Provider,
    "invoice": Invoice,
    "purchase_order": PurchaseOrder,
    "sales_invoice": SalesInvoice,
}
