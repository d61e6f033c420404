"""Typed errors of the bundle; each edge (HTTP resolver, batch processor) maps them to an answer once."""

from __future__ import annotations

from typing import Literal

RejectionReason = Literal[
    "signature_missing",
    "signature_malformed",
    "signature_stale",
    "signature_mismatch",
    "too_large",
    "malformed",
]


class InvoiceBridgeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(InvoiceBridgeError):
    """A setting or secret is missing or malformed: names it, never its value."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


class DependencyUnavailable(InvoiceBridgeError):
    """An AWS dependency did not answer as expected; the caller should retry later."""

    def __init__(self, dependency: str, problem: str) -> None:
        self.dependency = dependency
        super().__init__(f"{dependency}: {problem}")


class WebhookRejected(InvoiceBridgeError):
    """A webhook request that must not be processed; `reason` feeds metrics and logs."""

    reason: RejectionReason

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class SignatureError(WebhookRejected):
    """Missing, malformed, stale or wrong signature: answered 401 with no detail."""


class PayloadTooLarge(WebhookRejected):
    """A body over the limit, refused before any parsing."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("too_large", f"body of {size} bytes exceeds the limit of {limit} bytes")


class InvalidPayload(WebhookRejected):
    """Malformed JSON or an event that fails validation; names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__("malformed", f"{field}: {message}")


class SyncError(InvoiceBridgeError):
    """A document could not be synced now; `retryable` decides between the queue and the dead-letter queue.

    Every error a worker's record handler lets through is one of these (or a DependencyUnavailable, which
    is retryable); the batch edge (`invoice_bridge.worker`) is the one place that acts on the flag.
    """

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable
        super().__init__(message)


class PermanentSyncError(SyncError):
    """The document can never be synced as it is (bad data, a platform's validation): dead-lettered at once."""

    retryable = False


class RetryLater(SyncError):
    """Nothing is wrong, but the work must wait (a rate-limit slot, a lease held elsewhere, a batch still open)."""

    retryable = True


class PlatformError(SyncError):
    """An invoicing platform (or BuildNexion) answered with an error, or could not be reached.

    Carries what an operator needs (platform, HTTP status, request id, the platform's code and message, a
    bounded excerpt of the body) and never a credential: request headers are not kept.
    """

    def __init__(
        self,
        platform: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: str = "",
        retryable: bool,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        self.platform = platform
        self.status = status
        self.request_id = request_id
        self.body = body[:2000]
        self.field = field
        where = f"{platform} {status}" if status is not None else platform
        super().__init__(f"{where}: {message}", code=code, retryable=retryable, retry_after=retry_after)
        self.message = message
