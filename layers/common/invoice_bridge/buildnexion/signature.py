"""BuildNexion webhook signatures: `t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of "{t}.{body}"."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from invoice_bridge.errors import SignatureError

SIGNATURE_HEADER = "BuildNexion-Signature"
TOLERANCE_SECONDS = 300
SCHEME = "v1"
# Strict forms, ASCII only: `str.isdigit` takes superscripts and Arabic-Indic digits, `int()` refuses over
# 4,300 digits, and `compare_digest` raises on non-ASCII text; each was a 500 for an unauthenticated request.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
# Far above one timestamp and a few rotated secrets' signatures; a longer header is not BuildNexion's.
MAX_HEADER_CHARS = 2048


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256, keyed with the whole secret string, of `{timestamp}.{body}`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header BuildNexion sends: one `v1=` entry per active secret."""
    entries = [f"t={timestamp}"] + [f"{SCHEME}={compute_signature(s, timestamp, body)}" for s in secrets]
    return ",".join(entries)


def parse_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; other schemes are ignored, as Stripe-style senders expect.

    `t` must be 1-12 ASCII digits and every `v1` exactly 64 hex digits; anything else is malformed.
    """
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureError("signature_malformed", "header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("signature_malformed", "entry without '='")
        if key == "t":
            if timestamp is not None or not TIMESTAMP.fullmatch(value):
                raise SignatureError("signature_malformed", "timestamp missing, repeated or not a number")
            timestamp = int(value)
        elif key == SCHEME:
            if not HEX_SIGNATURE.fullmatch(value):
                raise SignatureError("signature_malformed", "v1 signature is not 64 hex digits")
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError("signature_malformed", "no timestamp or no v1 signature")
    return timestamp, signatures


def verify_signature(header: str | None, body: bytes, secrets: Sequence[str], now: float) -> int:
    """Check the header against every secret; return its timestamp or raise SignatureError."""
    if not header:
        raise SignatureError("signature_missing", "no signature header")
    timestamp, signatures = parse_header(header)
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("signature_stale", "timestamp outside the tolerance")
    matched = False
    # Every pair is compared, so the time taken does not tell which entry or secret came close.
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body)
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature_mismatch", "no signature matches any secret")
    return timestamp
