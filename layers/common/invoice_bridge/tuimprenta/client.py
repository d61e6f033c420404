"""tuimprenta.digital's API: `Authorization: Bearer <API_KEY>`, an Idempotency-Key on every write,
`X-RateLimit-*` honoured, errors `{"error": {type, message, field, code}}` mapped to typed errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import PlatformError
from invoice_bridge.http import DEFAULT_STATUS_RETRYABLE, BearerKeyClient, Deadline, segment
from invoice_bridge.money import dumps
from invoice_bridge.observability import logger

BatchStatus = Literal["queued", "processing", "completed", "failed", "partial"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "partial"})
RATE_LIMIT_PER_MINUTE = 60
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
# The reference shows `limit=50` in its listing example and documents no maximum: 50 is sure to be accepted.
LIST_PAGE_SIZE = 50


class TuimprentaError(PlatformError):
    """An error answer of tuimprenta (or no answer at all)."""


class Unauthorized(TuimprentaError):
    """401: the API key is wrong or revoked; retried, an operator fixes the secret."""


class FiscalRejection(TuimprentaError):
    """402: refused by fiscal validation; permanent."""


class NotFound(TuimprentaError):
    """404: no such batch or invoice; permanent."""


class IdempotencyConflict(TuimprentaError):
    """409: the Idempotency-Key was used with another body, or the resource is in another state; permanent."""


class ValidationFailed(TuimprentaError):
    """422: the request is invalid; permanent."""


class RateLimited(TuimprentaError):
    """429: over 60 requests a minute; retried after the platform's reset."""


class ResultUnreadable(TuimprentaError):
    """A result download that gives no CSV (a redirect loop, a redirect without a target, bytes not text)."""


class ServerError(TuimprentaError):
    """5xx, a timeout or no connection: retryable (writes only because they carry an Idempotency-Key)."""


ERROR_TYPES: Mapping[int, type[TuimprentaError]] = {
    401: Unauthorized,
    402: FiscalRejection,
    404: NotFound,
    409: IdempotencyConflict,
    422: ValidationFailed,
    429: RateLimited,
}


class BatchCounts(BaseModel):
    """`counts` of a batch."""

    model_config = ConfigDict(extra="ignore")

    queued: int = 0
    processed: int = 0
    failed: int = 0


class Batch(BaseModel):
    """`GET /batches/{id}` (reference: id, type, status, counts, created_at, result_url)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    status: BatchStatus
    counts: BatchCounts = Field(default_factory=BatchCounts)
    result_url: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the results can be read."""
        return self.status in TERMINAL_STATUSES


class Totals(BaseModel):
    """`totals` of an invoice (JSON numbers, read as Decimal)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    subtotal: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal | None = None


class Invoice(BaseModel):
    """`GET /invoices/{id}` (or one element of a listing): what the poller needs of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    status: str
    series: str | None = None
    number: int | None = None
    totals: Totals | None = None
    metadata: dict[str, Any] | None = None

    @property
    def buildnexion_id(self) -> str | None:
        """Our marker: the BuildNexion id the payload carried in `metadata.buildnexion_id`."""
        value = (self.metadata or {}).get("buildnexion_id")
        return value if isinstance(value, str) and value else None


class InvoicePage(BaseModel):
    """`GET /invoices`: `data` and the cursors `next_cursor` / `prev_cursor`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data: list[Invoice]
    next_cursor: str | None = None


class TuimprentaClient(BearerKeyClient):
    """The one client of tuimprenta.digital."""

    platform: ClassVar[str] = "tuimprenta"
    status_retryable: ClassVar[Mapping[int, bool]] = {**DEFAULT_STATUS_RETRYABLE, 401: True, 409: False}

    def error_from(self, response: requests.Response) -> PlatformError:
        """The base's typed error, as the class of its status."""
        error = super().error_from(response)
        kind = ERROR_TYPES.get(response.status_code, ServerError if response.status_code >= 500 else TuimprentaError)
        return kind(
            self.platform,
            error.message,
            status=error.status,
            code=error.code,
            request_id=error.request_id,
            body=error.body,
            retryable=error.retryable,
            retry_after=error.retry_after,
            field=error.field,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The base's request; a failure without an answer (timeout, network) becomes a ServerError."""
        try:
            return super().request(method, path, **kwargs)
        except TuimprentaError:
            raise
        except PlatformError as exc:
            raise ServerError(self.platform, exc.message, code=exc.code, retryable=exc.retryable) from None

    def create_batch(self, body: str, idempotency_key: str, deadline: Deadline) -> Batch:
        """`POST /batches` with the JSON text `body`; the same key and body give the same batch back."""
        response = self.request(
            "POST",
            "/batches",
            deadline=deadline,
            json_text=body,
            headers={"Idempotency-Key": idempotency_key},
            retry_safe=True,  # the key makes a re-send return the first batch
            timeout=(3.05, 30.0),
        )
        return self._parse(Batch, response)

    def batch(self, batch_id: str, deadline: Deadline) -> Batch:
        """`GET /batches/{id}`."""
        return self._parse(Batch, self.request("GET", f"/batches/{segment(batch_id)}", deadline=deadline))

    def invoice(self, invoice_id: str, deadline: Deadline) -> Invoice:
        """`GET /invoices/{id}`."""
        return self._parse(Invoice, self.request("GET", f"/invoices/{segment(invoice_id)}", deadline=deadline))

    def batch_result(self, batch: Batch, deadline: Deadline) -> str:
        """The result CSV of a finished batch (`result_url`, else `/batches/{id}/result.csv`).

        Redirects are followed as the reference's `curl -L` does; the API key goes only to the API's own
        origin (`ApiClient.request` decides, with `credentials_may_go_to`), so a presigned URL on another host
        is fetched without it. A `result_url` over plain HTTP under an HTTPS base is not fetched at all: the
        documented path on the API's own origin is read instead (a redirect there is refused, permanently).
        """
        url = batch.result_url or f"/batches/{segment(batch.id)}/result.csv"
        if batch.result_url and self.downgrades(batch.result_url):
            logger.warning("result_url is plain HTTP; the documented result path is read instead")
            url = f"/batches/{segment(batch.id)}/result.csv"
        if not url.startswith(("http://", "https://")):
            url = f"{self.base_url}{url}"
        for _hop in range(MAX_REDIRECTS + 1):
            response = self.request(
                "GET",
                url,
                deadline=deadline,
                headers={"Accept": "text/csv"},
                timeout=(3.05, 30.0),
                expected=REDIRECT_STATUSES,
            )
            if response.status_code not in REDIRECT_STATUSES:
                try:
                    return response.content.decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise ResultUnreadable(self.platform, "the result is not UTF-8 text", retryable=False) from None
            location = response.headers.get("Location")
            if not location:
                raise ResultUnreadable(self.platform, f"HTTP {response.status_code} without Location", retryable=False)
            url = urljoin(url, location)
        raise ResultUnreadable(self.platform, f"more than {MAX_REDIRECTS} redirects", retryable=False)

    def invoices(
        self, *, series: str, created_from: date, starting_after: str | None, deadline: Deadline
    ) -> InvoicePage:
        """One page of `GET /invoices?series=&created_from=&limit=&starting_after=` (the reference's cursors)."""
        params: dict[str, str | int] = {"created_from": created_from.isoformat(), "limit": LIST_PAGE_SIZE}
        if series:
            params["series"] = series
        if starting_after:
            params["starting_after"] = starting_after
        return self._parse(InvoicePage, self.request("GET", "/invoices", deadline=deadline, params=params))

    def cancel_invoice(self, invoice_id: str, reason: str, idempotency_key: str, deadline: Deadline) -> Invoice:
        """`POST /invoices/{id}/cancel {"reason"}`."""
        response = self.request(
            "POST",
            f"/invoices/{segment(invoice_id)}/cancel",
            deadline=deadline,
            json_text=dumps({"reason": reason}),
            headers={"Idempotency-Key": idempotency_key},
            retry_safe=True,
        )
        return self._parse(Invoice, response)

    def _parse[T: (Batch, Invoice, InvoicePage)](self, model: type[T], response: requests.Response) -> T:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise ServerError(self.platform, f"unexpected answer: {field}: {message}", retryable=True) from None
