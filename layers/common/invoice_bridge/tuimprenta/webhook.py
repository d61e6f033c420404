"""tuimprenta webhooks: `X-Tuimprenta-Signature: sha256=<hex HMAC-SHA256 of the raw body>` and the event."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from invoice_bridge.errors import SignatureError

SIGNATURE_HEADER = "X-Tuimprenta-Signature"
PREFIX = "sha256="


def compute_signature(secret: str, body: bytes) -> str:
    """The header value tuimprenta sends for `body`."""
    return PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(header: str | None, body: bytes, secret: str) -> None:
    """Raise SignatureError unless `header` is the signature of `body` under `secret`."""
    if not header:
        raise SignatureError("signature_missing", "no signature header")
    candidate = header.strip().lower()
    if not candidate.startswith(PREFIX):
        raise SignatureError("signature_malformed", "signature without the sha256= prefix")
    if not hmac.compare_digest(compute_signature(secret, body), candidate):
        raise SignatureError("signature_mismatch", "signature does not match")


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
