"""tuimprenta's webhook signature: `X-Tuimprenta-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.

Apart from the event model (invoice_bridge.tuimprenta.webhook) so the receiver's import does not load pydantic
models for a route that serves one delivery per batch outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from invoice_bridge.errors import SignatureError

SIGNATURE_HEADER = "X-Tuimprenta-Signature"
PREFIX = "sha256="
# ASCII hex only: `compare_digest` raises TypeError on non-ASCII text (a 500 for an unauthenticated request).
HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")


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
    if not HEX_SIGNATURE.fullmatch(candidate.removeprefix(PREFIX)):
        raise SignatureError("signature_malformed", "signature is not 64 hex digits")
    if not hmac.compare_digest(compute_signature(secret, body), candidate):
        raise SignatureError("signature_mismatch", "signature does not match")
