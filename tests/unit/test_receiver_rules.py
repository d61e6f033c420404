"""The receiver's body rules: size first (even before base64 decoding), then encoding, then JSON."""

from __future__ import annotations

import base64

import pytest

from invoice_bridge.errors import InvalidPayload, PayloadTooLarge
from invoice_bridge.receiver import MAX_BODY_BYTES, Receipt, base64_decoded_size, check_size, raw_body


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 255, 256, 257, MAX_BODY_BYTES, MAX_BODY_BYTES + 1])
def test_decoded_size_is_exact_without_decoding(size: int) -> None:
    assert base64_decoded_size(base64.b64encode(b"\xff" * size).decode()) == size


def test_decoded_size_of_a_truncated_text_is_a_whole_number() -> None:
    size = base64_decoded_size("abcde")
    assert (size, type(size)) == (3, int)


def test_plain_and_base64_bodies_come_back_as_the_bytes_sent() -> None:
    assert raw_body('{"a": "ñ"}', False) == '{"a": "ñ"}'.encode()
    assert raw_body(base64.b64encode(b"\xff\x00").decode(), True) == b"\xff\x00"
    assert raw_body(None, True) == b""


def test_a_base64_body_of_exactly_the_limit_is_decoded() -> None:
    body = b"x" * MAX_BODY_BYTES
    assert raw_body(base64.b64encode(body).decode(), True) == body


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_an_oversized_base64_body_is_too_large_before_it_is_decoded(valid: bool) -> None:
    text = base64.b64encode(b"x" * (MAX_BODY_BYTES + 1)).decode()
    with pytest.raises(PayloadTooLarge) as caught:
        raw_body(text if valid else "!" + text[1:], True)
    assert caught.value.reason == "too_large"


# "e3!0=" would decode to b"{}" if characters outside the alphabet were skipped: a strict decoder refuses it
@pytest.mark.parametrize("text", ["not base64!", "e3!0="])
def test_invalid_base64_within_the_limit_is_invalid_payload(text: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        raw_body(text, True)
    assert (caught.value.field, caught.value.message) == ("body", "is not valid base64")


def test_size_limit_is_inclusive() -> None:
    check_size(b"x" * MAX_BODY_BYTES)
    with pytest.raises(PayloadTooLarge):
        check_size(b"x" * (MAX_BODY_BYTES + 1))


def test_receipt_body_names_the_destination_only_when_there_is_one() -> None:
    assert Receipt("accepted", "evt_1", "quipu").as_body() == {
        "status": "accepted",
        "event_id": "evt_1",
        "destination": "quipu",
    }
    assert Receipt("ignored", "evt_2").as_body() == {"status": "ignored", "event_id": "evt_2"}
