"""tuimprenta webhooks: `X-Tuimprenta-Signature: sha256=<hex HMAC-SHA256 of the raw body>` and the event."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from invoice_bridge.tuimprenta.signature import PREFIX, SIGNATURE_HEADER, compute_signature, verify_signature

__all__ = ["PREFIX", "SIGNATURE_HEADER", "TuimprentaEvent", "compute_signature", "verify_signature"]


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
