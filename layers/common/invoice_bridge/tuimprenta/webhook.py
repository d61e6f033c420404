"""tuimprenta webhooks: `X-Tuimprenta-Signature: sha256=<hex HMAC-SHA256 of the raw body>` and the event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from invoice_bridge.errors import SignatureError
from invoice_bridge.tuimprenta.signature import PREFIX, SIGNATURE_HEADER, compute_signature, verify_signature

__all__ = [
    "MAX_AGE_SECONDS",
    "MAX_AHEAD_SECONDS",
    "PREFIX",
    "SIGNATURE_HEADER",
    "TuimprentaEvent",
    "check_age",
    "compute_signature",
    "verify_signature",
]

# tuimprenta's signature covers the body only, so a captured delivery could be replayed forever; its
# `created_at` (inside the signed body) bounds that. The reference retries a delivery for up to 24 h, so
# a genuine retry may be that old: the tolerance is 24 h and an hour's margin, and 5 min of clock skew ahead.
MAX_AGE_SECONDS = 25 * 3600
MAX_AHEAD_SECONDS = 300


class TuimprentaEvent(BaseModel):
    """A tuimprenta webhook event (reference: id, type, data, created_at)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    data: dict[str, Any]
    created_at: AwareDatetime

    def invoice_id(self) -> str | None:
        """The invoice the event speaks of, where it names one."""
        value = self.data.get("invoice_id")
        return value if isinstance(value, str) else None

    def batch_id(self) -> str | None:
        """The batch the event speaks of, where it names one."""
        value = self.data.get("batch_id")
        return value if isinstance(value, str) else None


def check_age(event: TuimprentaEvent, now: datetime) -> None:
    """Raise SignatureError (401) for an event created before the tolerance or too far in the future."""
    age = (now - event.created_at).total_seconds()
    if age > MAX_AGE_SECONDS or age < -MAX_AHEAD_SECONDS:
        raise SignatureError("signature_stale", "event created_at outside the tolerance")
