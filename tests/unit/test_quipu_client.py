"""The Quipu client's pure parts: Basic credentials, both expires_in forms, error typing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.errors import PlatformError
from invoice_bridge.quipu.client import (
    DUPLICATE_NUMBER,
    AccessToken,
    QuipuClient,
    basic_credentials,
    normalize_tax_id,
    token_from_response,
)


def test_basic_credentials_are_url_safe_base64_as_the_reference_shows() -> None:
    app_id = "PtNxfCsGklimErQqVTeAFDUTUjdMVCrjNFIlrReIimSHKMoOaWxAxwHPNevbIwFV"
    app_secret = "HRcqlIcHjYUWunjgVmAQiWYjbYFAGSoLhpXkHoGPhjdwQmXmRIxDQOQJOANpfnbD"
    assert basic_credentials(app_id, app_secret) == (
        "Basic UHROeGZDc0drbGltRXJRcVZUZUFGRFVUVWpkTVZDcmpORklsclJlSWltU0hLTW9PYVd4QXh3SFBOZXZiSXdGVjpIUmNx"
        "bEljSGpZVVd1bmpnVm1BUWlXWWpiWUZBR1NvTGhwWGtIb0dQaGpkd1FtWG1SSXhEUU9RSk9BTnBmbmJE"
    )
    # URL-safe: '-' and '_' where standard base64 has '+' and '/'.
    assert basic_credentials("\xfb\xff", "?") == "Basic w7vDvzo_"


def test_expires_in_as_seconds() -> None:
    token = token_from_response({"access_token": "t", "expires_in": 7200}, requested_at=1_000.0)
    assert token.expires_at == 8_200.0


def test_expires_in_as_an_epoch_with_created_at_uses_the_lifetime_on_our_clock() -> None:
    # The reference's own example: created 1456339025, expires_in 1456346225 (two hours later).
    document = {"access_token": "t", "created_at": 1456339025, "expires_in": 1456346225}
    token = token_from_response(document, requested_at=1_800_000_000.0)
    assert token.expires_at == 1_800_000_000.0 + 7200


def test_expires_in_as_an_epoch_without_created_at() -> None:
    token = token_from_response({"access_token": "t", "expires_in": 1_800_003_600}, requested_at=1_800_000_000.0)
    assert token.expires_at == 1_800_003_600


def test_a_token_is_renewed_ahead_of_expiry_and_never_used_after_it() -> None:
    long = AccessToken(SecretStr("t"), 0.0, 7200.0)
    assert not long.due_for_renewal(6800.0)
    assert long.due_for_renewal(6900.0)
    assert long.usable(7180.0)
    assert not long.usable(7190.0)
    assert not long.usable(7300.0)
    short = AccessToken(long.value, 0.0, 10.0)  # whatever the lifetime: renewal comes before expiry
    assert short.due_for_renewal(8.0)
    assert short.usable(9.0)
    assert not short.usable(10.0)


def test_a_malformed_token_response_is_a_retryable_platform_error() -> None:
    with pytest.raises(PlatformError) as caught:
        token_from_response({"token_type": "bearer"}, requested_at=0.0)
    assert caught.value.retryable


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/vnd.quipu.v1+json"
    response.reason = "reason"
    return response


def _client() -> QuipuClient:
    return QuipuClient.__new__(QuipuClient)


def _error(status: int, body: Any) -> PlatformError:
    client = _client()
    client._clock = lambda: 0.0
    client.limiter = None
    return client.error_from(_response(status, body))


def test_a_duplicate_number_is_a_permanent_422_with_its_own_code() -> None:
    body = {"errors": [{"detail": "has already been taken", "source": {"pointer": "/data/attributes/number"}}]}
    error = _error(422, body)
    assert (error.status, error.code, error.field, error.retryable) == (422, DUPLICATE_NUMBER, "number", False)
    assert "/data/attributes/number: has already been taken" in error.message


def test_other_422s_are_permanent_validation_errors_with_every_detail() -> None:
    body = {
        "errors": [
            {"detail": "Can not be blank.", "source": {"pointer": "/data/attributes/name"}},
            {"detail": "This Iban is not valid", "source": {"pointer": "/data/attributes/bank_account_number"}},
        ]
    }
    error = _error(422, body)
    assert (error.code, error.field, error.retryable) == ("validation", "name", False)
    assert "bank_account_number: This Iban is not valid" in error.message


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(401, True), (404, False), (406, False), (415, False), (429, True), (500, True), (503, True)],
)
def test_statuses_are_typed_retryable_or_permanent(status: int, retryable: bool) -> None:
    assert _error(status, {"errors": [{"detail": "x"}]}).retryable is retryable


def test_tax_ids_compare_without_the_es_prefix_and_separators() -> None:
    assert normalize_tax_id("ESB85033470") == normalize_tax_id("b-85033470") == "B85033470"
    assert normalize_tax_id("43456628J") == "43456628J"
