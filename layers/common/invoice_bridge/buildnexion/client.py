"""BuildNexion's API: the latest state of an object, its provider and its PDF (DESIGN.md, "BuildNexion contract")."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import ValidationError

from invoice_bridge.buildnexion.models import Invoice, Provider, PurchaseOrder, SalesInvoice, WebhookEvent
from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.http import BearerKeyClient, Deadline, segment
from invoice_bridge.observability import count, logger


class BuildNexionClient(BearerKeyClient):
    """`Authorization: Bearer <api key>` on `BUILDNEXION_API_URL`."""

    platform: ClassVar[str] = "buildnexion"

    def _get[T: (Provider, Invoice, PurchaseOrder, SalesInvoice)](
        self, model: type[T], path: str, deadline: Deadline
    ) -> T:
        response = self.request("GET", path, deadline=deadline)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise PermanentSyncError(f"BuildNexion {path}: {field}: {message}", code="invalid_source") from None

    def provider(self, provider_id: str, deadline: Deadline) -> Provider:
        """`GET /providers/{id}`."""
        return self._get(Provider, f"/providers/{segment(provider_id)}", deadline)

    def invoice(self, invoice_id: str, deadline: Deadline) -> Invoice:
        """`GET /invoices/{id}`."""
        return self._get(Invoice, f"/invoices/{segment(invoice_id)}", deadline)

    def purchase_order(self, order_id: str, deadline: Deadline) -> PurchaseOrder:
        """`GET /purchase_orders/{id}`."""
        return self._get(PurchaseOrder, f"/purchase_orders/{segment(order_id)}", deadline)

    def sales_invoice(self, invoice_id: str, deadline: Deadline) -> SalesInvoice:
        """`GET /sales_invoices/{id}`."""
        return self._get(SalesInvoice, f"/sales_invoices/{segment(invoice_id)}", deadline)

    def latest[T: (Invoice, PurchaseOrder, SalesInvoice)](
        self, model: type[T], event: WebhookEvent, deadline: Deadline
    ) -> T:
        """The event's object as BuildNexion serves it now; the event's own (signed) copy when it answers 404.

        Workers converge on the latest state, so they read it; an object BuildNexion no longer serves
        (deleted since, or a sandbox that never held it) is still described by the event that named it.
        """
        collection = {Invoice: "invoices", PurchaseOrder: "purchase_orders", SalesInvoice: "sales_invoices"}[model]
        try:
            return self._get(model, f"/{collection}/{segment(event.data.object.id)}", deadline)
        except PlatformError as exc:
            if exc.status != 404:
                raise
        try:
            copy = model.model_validate(event.data.object.model_dump())
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise PermanentSyncError(
                f"{event.data.object.object} {event.data.object.id}: not found in BuildNexion and the event's "
                f"copy is incomplete ({field}: {message})",
                code="invalid_source",
            ) from None
        logger.warning("object not found in BuildNexion; using the event's copy", extra={"object_id": copy.id})
        count("SourceFromEvent", {"object": event.data.object.object})
        return copy

    def list_page(
        self,
        collection: str,
        deadline: Deadline,
        *,
        updated_since: int | None = None,
        starting_after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of `GET /{collection}` (invoices, sales_invoices, purchase_orders): (objects, has_more)."""
        params: dict[str, Any] = {"limit": limit}
        if updated_since is not None:
            params["updated_since"] = updated_since
        if starting_after is not None:
            params["starting_after"] = starting_after
        document = self.request("GET", f"/{collection}", deadline=deadline, params=params).json()
        return list(document["data"]), bool(document["has_more"])

    def register_webhook(self, url: str, events: list[str], deadline: Deadline) -> dict[str, Any]:
        """`POST /webhooks {"url", "events"}` → `{"id", "url", "events", "secret"}` (the secret is never logged)."""
        body = json.dumps({"url": url, "events": events})
        return dict(self.request("POST", "/webhooks", deadline=deadline, json_text=body).json())

    def invoice_pdf(self, invoice_id: str, deadline: Deadline) -> bytes:
        """`GET /invoices/{id}/pdf`, the bytes of the PDF."""
        response = self.request(
            "GET",
            f"/invoices/{segment(invoice_id)}/pdf",
            deadline=deadline,
            headers={"Accept": "application/pdf"},
            timeout=(3.05, 20.0),
        )
        return response.content
