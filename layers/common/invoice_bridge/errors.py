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
