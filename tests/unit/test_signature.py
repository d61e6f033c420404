"""BuildNexion and tuimprenta signature checks against vectors computed independently (openssl)."""

from __future__ import annotations

import pytest

from invoice_bridge.buildnexion.signature import compute_signature, signature_header, verify_signature
from invoice_bridge.errors import SignatureError
from invoice_bridge.tuimprenta import webhook as tuimprenta

BODY = b'{"id":"evt_1","type":"invoice.created"}'
T = 1763719200
# printf '%s' '1763719200.{body}' | openssl dgst -sha256 -hmac 'whsec_test_1'
SIG_1 = "fb8b033db7ec59f91f2e612e1bce9d3fc461e6aa2b5286e6f56a46b977890040"
SIG_2 = "93d9fdec0f5a1f4753d7344a5baf89d0b71be4b64d336a6f82ad3fe367b74739"
SECRET_1 = "whsec_test_1"
SECRET_2 = "whsec_test_2"


DETAILS = {
    "signature_missing": {"no signature header"},
    "signature_stale": {"timestamp outside the tolerance"},
    "signature_mismatch": {"no signature matches any secret"},
    "signature_malformed": {
        "entry without '='",
        "timestamp missing, repeated or not a number",
        "no timestamp or no v1 signature",
        "v1 signature is not 64 hex digits",
        "header too long",
    },
}


def reason_of(header: str | None, body: bytes = BODY, secrets: list[str] | None = None, now: float = T) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_signature(header, body, secrets or [SECRET_1], now=now)
    assert str(caught.value) in DETAILS[caught.value.reason]  # a detail for logs, never a secret or signature
    return caught.value.reason


def test_computes_the_reference_vectors() -> None:
    assert compute_signature(SECRET_1, T, BODY) == SIG_1
    assert compute_signature(SECRET_2, T, BODY) == SIG_2


def test_header_carries_one_entry_per_secret() -> None:
    assert signature_header([SECRET_1, SECRET_2], T, BODY) == f"t={T},v1={SIG_1},v1={SIG_2}"


def test_valid_signature_passes_and_returns_its_timestamp() -> None:
    assert verify_signature(f"t={T},v1={SIG_1}", BODY, [SECRET_1], now=T) == T


@pytest.mark.parametrize(
    ("header", "secrets"),
    [
        (f"t={T},v1={SIG_1},v1={SIG_2}", [SECRET_2]),  # sender signs with old and new, we hold the new one
        (f"t={T},v1={SIG_2}", [SECRET_1, SECRET_2]),  # we hold both during rotation, sender moved on
        (f"t={T},v1={'0' * 64},v1={SIG_1}", [SECRET_1]),  # any entry may match
        (f"t={T},v1={SIG_1},v1={'0' * 64}", [SECRET_1]),  # a match is kept when later entries do not match
        (f"t={T},v1={SIG_1}", [SECRET_1, SECRET_2]),  # a match is kept when later secrets do not match
        (f"t={T},v0=ignored,v1={SIG_1}", [SECRET_1]),  # other schemes are skipped
        (f" t={T} , v1={SIG_1.upper()} ", [SECRET_1]),  # white space and hex case do not matter
    ],
)
def test_rotation_and_tolerated_variants_pass(header: str, secrets: list[str]) -> None:
    assert verify_signature(header, BODY, secrets, now=T) == T


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamps_at_the_tolerance_pass(offset: int) -> None:
    assert verify_signature(f"t={T},v1={SIG_1}", BODY, [SECRET_1], now=T + offset) == T


@pytest.mark.parametrize("offset", [-301, 301, 86400])
def test_timestamps_beyond_300_seconds_either_way_are_stale(offset: int) -> None:
    assert reason_of(f"t={T},v1={SIG_1}", now=T + offset) == "signature_stale"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header(header: str | None) -> None:
    assert reason_of(header) == "signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        f"v1={SIG_1}",  # no timestamp
        f"t={T}",  # no signature
        f"t=abc,v1={SIG_1}",  # timestamp not a number
        f"t={T},t={T},v1={SIG_1}",  # repeated timestamp
        f"t={T},{SIG_1}",  # entry without '='
        "garbage",
        # Strict forms (issue 18): each of these was a 500, or reached compare_digest with text it refuses.
        f"t={'9' * 4301},v1={SIG_1}",  # int() refuses over 4,300 digits
        f"t={'9' * 13},v1={SIG_1}",  # more than 12 digits
        # Arabic-Indic digits pass str.isdigit and int()
        f"t=\u0661\u0667\u0666\u0663\u0667\u0661\u0669\u0662\u0660\u0660,v1={SIG_1}",
        f"t=²,v1={SIG_1}",  # a superscript passes str.isdigit, not int()
        f"t=+{T},v1={SIG_1}",
        f"t=-{T},v1={SIG_1}",
        f"t={T},v1={'é' * 64}",  # compare_digest raises TypeError on non-ASCII text
        f"t={T},v1={SIG_1[:-1]}",  # 63 hex digits
        f"t={T},v1={SIG_1}0",  # 65
        f"t={T},v1={SIG_1}=",  # the value runs to the end of the entry, '=' included
        f"t={T},v1={'g' * 64}",
        f"t={T},v1=deadbeef,v1={SIG_1}",  # one malformed entry spoils the header
        f"t={T},v1={SIG_1}," + ",".join(f"v0={'0' * 64}" for _ in range(40)),  # over 2,048 characters
    ],
)
def test_malformed_headers(header: str) -> None:
    assert reason_of(header) == "signature_malformed"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (f"t={T},{SIG_1}", "entry without '='"),
        (f"t=abc,v1={SIG_1}", "timestamp missing, repeated or not a number"),
        (f"t={T}", "no timestamp or no v1 signature"),
    ],
)
def test_malformed_headers_say_what_is_wrong(header: str, detail: str) -> None:
    with pytest.raises(SignatureError, match=f"^{detail}$"):
        verify_signature(header, BODY, [SECRET_1], now=T)


@pytest.mark.parametrize(
    ("header", "body", "secrets"),
    [
        (f"t={T},v1={SIG_1}", BODY + b" ", [SECRET_1]),  # body changed by one byte
        (f"t={T + 1},v1={SIG_1}", BODY, [SECRET_1]),  # timestamp changed
        (f"t={T},v1={SIG_1}", BODY, [SECRET_2]),  # wrong secret
        (f"t={T},v1={SIG_1[:-1]}1", BODY, [SECRET_1]),  # one hex digit changed
    ],
)
def test_mismatches(header: str, body: bytes, secrets: list[str]) -> None:
    assert reason_of(header, body, secrets, now=T) == "signature_mismatch"


def test_error_text_reveals_neither_secret_nor_expected_signature() -> None:
    with pytest.raises(SignatureError) as caught:
        verify_signature(f"t={T},v1={'0' * 64}", BODY, [SECRET_1], now=T)
    assert SECRET_1 not in str(caught.value)
    assert SIG_1 not in str(caught.value)


# printf '%s' '{"id":"evt_123","type":"invoice.issued"}' | openssl dgst -sha256 -hmac 'tui_secret'
TUI_BODY = b'{"id":"evt_123","type":"invoice.issued"}'
TUI_SIG = "sha256=e1634198ca0fe35041a2fc7664729ea2102ea3d7be67c62c62ed5f4bb442d2a2"


def test_tuimprenta_reference_vector() -> None:
    assert tuimprenta.compute_signature("tui_secret", TUI_BODY) == TUI_SIG
    tuimprenta.verify_signature(TUI_SIG, TUI_BODY, "tui_secret")


@pytest.mark.parametrize(
    ("header", "reason", "detail"),
    [
        (None, "signature_missing", "no signature header"),
        (TUI_SIG.removeprefix("sha256="), "signature_malformed", "signature without the sha256= prefix"),
        (TUI_SIG[:-2] + "00", "signature_mismatch", "signature does not match"),
        ("sha256=" + "é" * 64, "signature_malformed", "signature is not 64 hex digits"),
        ("sha256=" + "\u0660" * 64, "signature_malformed", "signature is not 64 hex digits"),
        (TUI_SIG[:-1], "signature_malformed", "signature is not 64 hex digits"),
        (TUI_SIG + "0", "signature_malformed", "signature is not 64 hex digits"),
        ("sha256=", "signature_malformed", "signature is not 64 hex digits"),
    ],
)
def test_tuimprenta_rejections(header: str | None, reason: str, detail: str) -> None:
    with pytest.raises(SignatureError) as caught:
        tuimprenta.verify_signature(header, TUI_BODY, "tui_secret")
    assert (caught.value.reason, str(caught.value)) == (reason, detail)


def test_tuimprenta_prefix_and_hex_case_do_not_matter() -> None:
    tuimprenta.verify_signature(TUI_SIG.upper(), TUI_BODY, "tui_secret")


def test_tuimprenta_wrong_secret() -> None:
    with pytest.raises(SignatureError):
        tuimprenta.verify_signature(TUI_SIG, TUI_BODY, "another")
