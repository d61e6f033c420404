"""FacturaDirecta's API behind one interface, and its XML adapter (reference 004, DESIGN.md).

The exporter speaks to `PurchaseOrderApi` only; `FacturaDirectaXmlClient` is the XML adapter. A JSON
adapter for FacturaDirecta's newer API would implement the same protocol and leave the exporter alone.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

import requests
from pydantic import SecretStr

from invoice_bridge import taxid
from invoice_bridge.errors import PlatformError
from invoice_bridge.facturadirecta import xml
from invoice_bridge.facturadirecta.models import (
    ProviderDocument,
    ProviderRecord,
    PurchaseOrderDocument,
    PurchaseOrderRecord,
)
from invoice_bridge.http import ApiClient, Deadline, ErrorDetail, segment

PLATFORM = "facturadirecta"
INVALID_INPUT_DATA = "INVALID_INPUT_DATA"
MAX_LIST_LIMIT = 250
XML_MEDIA_TYPE = "application/xml"


def default_base_url(account: str) -> str:
    """`https://{account}.facturadirecta.com`."""
    return f"https://{account}.facturadirecta.com"


class PurchaseOrderApi(Protocol):
    """What the exporter needs of FacturaDirecta, whatever the wire format."""

    def find_provider(self, tax_code: str, deadline: Deadline) -> ProviderRecord | None:
        """The provider with exactly this tax code, or None."""

    def create_provider(self, provider: ProviderDocument, deadline: Deadline) -> ProviderRecord:
        """Create a provider (a write: not repeated after a timeout)."""

    def find_purchase_order_by_tag(self, tag: str, deadline: Deadline) -> PurchaseOrderRecord | None:
        """The purchase order carrying `tag`, or None."""

    def find_purchase_orders_by_number(
        self, serial: str | None, number: int, provider_id: str, deadline: Deadline
    ) -> list[PurchaseOrderRecord]:
        """The provider's purchase orders with this series and number (every page)."""

    def get_purchase_order(self, remote_id: str, deadline: Deadline) -> PurchaseOrderRecord:
        """One purchase order with its computed totals."""

    def create_purchase_order(self, document: PurchaseOrderDocument, deadline: Deadline) -> PurchaseOrderRecord:
        """Create a purchase order; the answer with its totals (a write: not repeated after a timeout)."""

    def update_purchase_order(
        self, remote_id: str, document: PurchaseOrderDocument, deadline: Deadline
    ) -> PurchaseOrderRecord:
        """Replace a purchase order's fields and lines; the answer with its totals."""


class FacturaDirectaXmlClient(ApiClient):
    """The XML API: Basic `{token}:x`, `application/xml` in and out, the XML error document typed."""

    platform: ClassVar[str] = PLATFORM

    def __init__(self, base_url: str, token: Callable[[], SecretStr], **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._token = token

    def auth_headers(self) -> dict[str, str]:
        """Basic auth with the API token as user and `x` as password (read fresh: rotations apply)."""
        pair = f"{self._token().get_secret_value()}:x".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}

    def default_headers(self) -> dict[str, str]:
        """XML both ways."""
        return {"Accept": XML_MEDIA_TYPE}

    def parse_error(self, response: requests.Response) -> ErrorDetail:
        """`<xml><httpStatus/><errorCode/><errorMessage/></xml>`; the status text when the body is not one."""
        document = xml.parse_error(response.content)
        if document is None:
            return ErrorDetail(message=response.reason or f"HTTP {response.status_code}")
        return ErrorDetail(
            message=(document.error_message or response.reason or f"HTTP {response.status_code}").strip(),
            code=document.error_code,
        )

    def error_from(self, response: requests.Response) -> PlatformError:
        """As the base, but `INVALID_INPUT_DATA` is permanent whatever the status says."""
        error = super().error_from(response)
        if error.code == INVALID_INPUT_DATA and error.retryable:
            error.retryable = False
            error.retry_after = None
        return error

    # -- calls ---------------------------------------------------------------------------------------

    def _send_xml(self, method: str, path: str, body: bytes, deadline: Deadline) -> requests.Response:
        return self.request(
            method, path, deadline=deadline, data=body, headers={"Content-Type": f"{XML_MEDIA_TYPE}; charset=utf-8"}
        )

    def _read[T](self, parser: Callable[[bytes], T], response: requests.Response, what: str) -> T:
        try:
            return parser(response.content)
        except xml.XmlDocumentError as exc:
            # An answer we cannot read: retry (the ledger's intent makes a repeated create safe).
            raise PlatformError(
                PLATFORM,
                f"{what}: unreadable answer: {exc}",
                status=response.status_code,
                retryable=True,
                code="bad_response",
            ) from None

    def _pages[T: (ProviderRecord, PurchaseOrderRecord)](
        self,
        path: str,
        params: Mapping[str, str | int],
        parser: Callable[[bytes], list[T]],
        what: str,
        deadline: Deadline,
    ) -> Iterator[list[T]]:
        """Each page of a list, asked with `start` (the reference: at most 250 a page), until an empty page.

        A page may hold fewer items than asked (the platform decides its page size), so only an empty page ends
        the listing; one that brings nothing new means `start` is ignored, which is an error, never "not found".
        """
        seen: set[str] = set()
        start = 0
        while True:
            response = self.request(
                "GET", path, deadline=deadline, params={**params, "limit": MAX_LIST_LIMIT, "start": start}
            )
            page = self._read(parser, response, what)
            if not page:
                return
            fresh = {item.id for item in page} - seen
            if not fresh:
                raise PlatformError(
                    PLATFORM,
                    f"{what}: the page at start={start} repeats {what} already listed",
                    status=response.status_code,
                    retryable=False,
                    code="bad_response",
                )
            seen |= fresh
            yield page
            start += len(page)

    def find_provider(self, tax_code: str, deadline: Deadline) -> ProviderRecord | None:
        """`GET /api/providers.xml?taxCode=` paged with `start` to an exact (normalized) match; else None.

        The search asks for the bare form (`B12345678`): the platform's search finds every code containing it, so
        one stored `ESB12345678` is listed too and compares equal once normalised.
        """
        wanted = taxid.normalise(tax_code)
        for page in self._pages("/api/providers.xml", {"taxCode": wanted}, xml.parse_providers, "providers", deadline):
            found = [p for p in page if p.tax_code is not None and taxid.normalise(p.tax_code) == wanted]
            if found:
                return min(found, key=_id_order)
        return None

    def create_provider(self, provider: ProviderDocument, deadline: Deadline) -> ProviderRecord:
        """`POST /api/providers.xml`."""
        response = self._send_xml("POST", "/api/providers.xml", xml.build_provider(provider), deadline)
        return self._read(xml.parse_provider, response, "provider")

    def find_purchase_order_by_tag(self, tag: str, deadline: Deadline) -> PurchaseOrderRecord | None:
        """`GET /api/purchaseOrders.xml?tag=...`; only an order that really carries the tag."""
        response = self.request(
            "GET", "/api/purchaseOrders.xml", deadline=deadline, params={"tag": tag, "limit": MAX_LIST_LIMIT}
        )
        found = [o for o in self._read(xml.parse_purchase_orders, response, "purchase orders") if tag in o.tags]
        return min(found, key=_id_order) if found else None

    def find_purchase_orders_by_number(
        self, serial: str | None, number: int, provider_id: str, deadline: Deadline
    ) -> list[PurchaseOrderRecord]:
        """`GET /api/purchaseOrders.xml?provider=&documentSerial=&documentNumber=`, every page; exact matches only."""
        params: dict[str, str | int] = {"provider": provider_id, "documentNumber": number}
        if serial:
            params["documentSerial"] = serial
        pages = self._pages("/api/purchaseOrders.xml", params, xml.parse_purchase_orders, "purchase orders", deadline)
        return [
            o
            for page in pages
            for o in page
            if (o.document_serial or None) == (serial or None)
            and (o.document_number or "").lstrip("0") == str(number).lstrip("0")
            and o.provider_id in (None, provider_id)
        ]

    def get_purchase_order(self, remote_id: str, deadline: Deadline) -> PurchaseOrderRecord:
        """`GET /api/purchaseOrders/{id}.xml`."""
        response = self.request("GET", f"/api/purchaseOrders/{segment(remote_id)}.xml", deadline=deadline)
        return self._read(xml.parse_purchase_order, response, "purchase order")

    def create_purchase_order(self, document: PurchaseOrderDocument, deadline: Deadline) -> PurchaseOrderRecord:
        """`POST /api/purchaseOrders.xml`; the created order (read again only if the answer lacks totals)."""
        response = self._send_xml("POST", "/api/purchaseOrders.xml", xml.build_purchase_order(document), deadline)
        return self._complete(self._read(xml.parse_purchase_order, response, "purchase order"), deadline)

    def update_purchase_order(
        self, remote_id: str, document: PurchaseOrderDocument, deadline: Deadline
    ) -> PurchaseOrderRecord:
        """`PUT /api/purchaseOrders/{id}.xml` with every line (the reference regenerates lines whole)."""
        body = xml.build_purchase_order(document, remote_id=remote_id)
        response = self._send_xml("PUT", f"/api/purchaseOrders/{segment(remote_id)}.xml", body, deadline)
        return self._complete(self._read(xml.parse_purchase_order, response, "purchase order"), deadline)

    def _complete(self, record: PurchaseOrderRecord, deadline: Deadline) -> PurchaseOrderRecord:
        return record if record.has_totals else self.get_purchase_order(record.id, deadline)


def _id_order(record: ProviderRecord | PurchaseOrderRecord) -> tuple[bool, int, str]:
    """Oldest first: numeric ids as numbers ("9" before "10"), then any non-numeric id, as text."""
    numeric = record.id.isdigit()
    return (not numeric, int(record.id) if numeric else 0, record.id)
