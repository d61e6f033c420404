"""The registry of destinations: each invoicing platform declared once, for config, ops and the local stack.

A platform's names (its environment variables, the template's logical ids and outputs, the BuildNexion objects
and events it takes) are read from here instead of from a list per module, so a new platform is one entry.
The names are fixed contracts (DESIGN.md): the template, the local stack and the operator tools share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Destination(StrEnum):
    """The invoicing platforms an event can be routed to."""

    QUIPU = "quipu"
    TUIMPRENTA = "tuimprenta"
    FACTURADIRECTA = "facturadirecta"


@dataclass(frozen=True)
class Platform:
    """What the bundle knows about one destination, by name."""

    destination: Destination
    # The template's name stem: QuipuQueue, QuipuQueueUrl, QuipuDeadLetterQueueUrl, QuipuSecret, QuipuApiUrl.
    stem: str
    # The one BuildNexion object kind its worker turns into a document, its list endpoint and its id prefix.
    object_kind: str
    collection: str
    id_prefix: str
    # The BuildNexion events routed to it by default (the template's RoutingTable default).
    events: tuple[str, ...]

    @property
    def env_prefix(self) -> str:
        """The stem of its environment variables (QUIPU_API_URL, QUIPU_SECRET_ARN, QUIPU_QUEUE_URL)."""
        return self.destination.value.upper()

    @property
    def api_url_env(self) -> str:
        """The variable that points the bundle at the platform's API."""
        return f"{self.env_prefix}_API_URL"

    @property
    def secret_env(self) -> str:
        """The variable naming its credentials' secret."""
        return f"{self.env_prefix}_SECRET_ARN"

    @property
    def queue_env(self) -> str:
        """The receiver's variable naming its queue (empty when the platform is not deployed)."""
        return f"{self.env_prefix}_QUEUE_URL"

    @property
    def queue_logical_id(self) -> str:
        """The template's logical id of its queue."""
        return f"{self.stem}Queue"

    @property
    def queue_outputs(self) -> tuple[str, str]:
        """The stack outputs of its queue and dead-letter queue URLs."""
        return f"{self.stem}QueueUrl", f"{self.stem}DeadLetterQueueUrl"

    @property
    def secret_logical_id(self) -> str:
        """The template's logical id of its secret."""
        return f"{self.stem}Secret"

    @property
    def secret_output(self) -> str:
        """The stack output of its secret's ARN."""
        return f"{self.stem}SecretArn"

    @property
    def api_url_parameter(self) -> str:
        """The template parameter that sets its API URL."""
        return f"{self.stem}ApiUrl"


PLATFORMS: dict[Destination, Platform] = {
    p.destination: p
    for p in (
        Platform(
            Destination.QUIPU,
            stem="Quipu",
            object_kind="invoice",
            collection="invoices",
            id_prefix="inv_",
            events=("invoice.created", "invoice.updated", "invoice.voided"),
        ),
        Platform(
            Destination.TUIMPRENTA,
            stem="Tuimprenta",
            object_kind="sales_invoice",
            collection="sales_invoices",
            id_prefix="sin_",
            events=("sales_invoice.created", "sales_invoice.canceled"),
        ),
        Platform(
            Destination.FACTURADIRECTA,
            stem="FacturaDirecta",
            object_kind="purchase_order",
            collection="purchase_orders",
            id_prefix="po_",
            events=("purchase_order.created", "purchase_order.updated", "purchase_order.canceled"),
        ),
    )
}
