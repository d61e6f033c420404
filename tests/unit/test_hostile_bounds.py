"""Bounds on what platforms and events may ask of us (issue 18): waits, amounts, quantities, ids, URLs."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
import requests
from pydantic import SecretStr, ValidationError

from invoice_bridge.buildnexion.models import SalesInvoice
from invoice_bridge.errors import PermanentSyncError
from invoice_bridge.http import (
    MAX_WAIT_SECONDS,
    ApiClient,
    Deadline,
    exhausted_until,
    origin,
    retry_after_seconds,
    segment,
)
from invoice_bridge.money import (
    AmountError,
    cents_to_decimal,
    decimal_string,
    dumps,
    json_number,
    normalize,
    unit_price,
)
from invoice_bridge.tuimprenta.client import Batch, TuimprentaClient
from invoice_bridge.tuimprenta.mapping import payload_text
from tests.conftest import load_event
from tests.unit.test_http_client import NOW, FakeLimiter, make_client

# -- (4) every wait a platform asks for is capped; nonsense is no wait at all ---------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "99999999"}, None),  # 1,157 days: not a wait, a broken header
        ({"Retry-After": "86401"}, None),  # over a day
        ({"Retry-After": "86400"}, MAX_WAIT_SECONDS),  # a day at most is capped to the cap
        ({"Retry-After": "301"}, MAX_WAIT_SECONDS),
        ({"Retry-After": "300"}, 300.0),
        ({"Retry-After": "60"}, 60.0),
        ({"Retry-After": "Fri, 15 Jan 2100 08:00:10 GMT"}, None),  # a far-future date
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "1e9"}, None),
        ({"Retry-After": "²"}, None),  # str.isdigit says yes, float() raises
        ({"Retry-After": "\u0661\u0662"}, None),  # Arabic-Indic digits: float() reads them, no platform sends them
        ({"Retry-After": "-5"}, None),
        # X-RateLimit-Reset in epoch milliseconds (20.7 million days as a delta, 57,000 years as an epoch)
        ({"X-RateLimit-Reset": str(int(NOW * 1000) + 30_000)}, None),
        ({"X-RateLimit-Reset": str(int(NOW) + 30)}, 30.0),
        ({"X-RateLimit-Reset": str(int(NOW) + 3600)}, MAX_WAIT_SECONDS),
        ({"X-RateLimit-Reset": str(int(NOW) + 10 * 86400)}, None),
        ({"RateLimit-Reset": "99999999"}, None),
        ({"RateLimit-Reset": "nan"}, None),
        ({"RateLimit-Reset": "900"}, MAX_WAIT_SECONDS),
    ],
)
def test_a_wait_is_capped_and_an_implausible_one_ignored(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers, NOW) == seconds


@pytest.mark.parametrize(
    ("reset", "until"),
    [
        (str(int(NOW * 1000) + 30_000), None),  # epoch milliseconds
        (str(int(NOW) + 10 * 86400), None),  # far future
        (str(int(NOW) + 3600), NOW + MAX_WAIT_SECONDS),
        ("3600", NOW + MAX_WAIT_SECONDS),
        ("inf", None),
    ],
)
def test_an_exhausted_window_pauses_at_most_the_cap(reset: str, until: float | None) -> None:
    assert exhausted_until({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, NOW) == until


def test_a_429_asking_for_years_does_not_pause_the_credential_for_years() -> None:
    limiter = FakeLimiter()
    client, _, sleeps = make_client([(429, {"Retry-After": "99999999"}, b""), (200, {}, b"{}")], limiter=limiter)
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert limiter.paused == []  # no pause at all: the header is not believed
    assert sleeps[0] < 10  # the ordinary backoff


def test_a_429_asking_for_an_hour_pauses_the_credential_for_the_cap() -> None:
    limiter = FakeLimiter()
    client, _, _ = make_client([(429, {"Retry-After": "3600"}, b""), (200, {}, b"{}")], limiter=limiter)
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert limiter.paused == [NOW + MAX_WAIT_SECONDS]


# -- (1) origins: what must match for credentials to go along ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://api.tuimprenta.digital/v1/batches/b/result.csv", True),
        ("https://API.tuimprenta.digital:443/elsewhere", True),  # default port and host case
        ("http://api.tuimprenta.digital/v1/x", False),  # another scheme
        ("https://api.tuimprenta.digital:8443/v1/x", False),  # another port
        ("https://files.tuimprenta.digital/v1/x", False),  # another host, even a sibling
        ("https://api.tuimprenta.digital.evil.test/v1/x", False),
        ("https://api.tuimprenta.digital@evil.test/v1/x", False),  # user info, not the host
        ("https://evil.test/api.tuimprenta.digital/v1", False),
        ("https://api.tuimprenta.digital:notaport/x", False),
    ],
)
def test_only_the_base_url_s_origin_gets_the_credentials(url: str, same: bool) -> None:
    client = ApiClient("https://api.tuimprenta.digital/v1")
    assert client.same_origin(url) is same


def test_origin_makes_the_default_port_explicit() -> None:
    assert origin("https://a.test/x") == origin("https://A.test:443/y") == ("https", "a.test", 443)
    assert origin("http://a.test/x") == ("http", "a.test", 80)


def test_a_downgrade_is_only_http_under_https() -> None:
    secure = ApiClient("https://api.test/v1")
    assert secure.downgrades("http://api.test/v1/x")
    assert not secure.downgrades("https://other.test/x")
    assert not ApiClient("http://127.0.0.1:8000/v1").downgrades("http://127.0.0.1:9000/x")


def test_the_key_is_sent_to_the_same_origin_and_not_to_another(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TuimprentaClient("https://api.tuimprenta.digital/v1", SecretStr("tui-key"), max_attempts=1)
    seen: list[dict[str, str]] = []

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        seen.append(dict(kwargs["headers"]))
        response = requests.Response()
        response.status_code = 200
        response._content = b"index\r\n"
        return response

    monkeypatch.setattr(client.session, "request", request)
    client.request("GET", "https://api.tuimprenta.digital/v1/batches/b/result.csv", deadline=Deadline(5))
    client.request("GET", "https://files.tuimprenta.digital/b.csv", deadline=Deadline(5))
    assert seen[0]["Authorization"] == "Bearer tui-key"
    assert "Authorization" not in seen[1]


def test_a_plain_http_result_url_under_an_https_base_is_read_from_the_documented_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TuimprentaClient("https://api.tuimprenta.digital/v1", SecretStr("tui-key"), max_attempts=1)
    called: list[tuple[str, dict[str, str]]] = []

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        called.append((url, dict(kwargs["headers"])))
        response = requests.Response()
        response.status_code = 200
        response._content = b"index,invoice_id,status,series,number,error_code,error_message\r\n"
        return response

    monkeypatch.setattr(client.session, "request", request)
    batch = Batch(id="batch_1", status="completed", result_url="http://api.tuimprenta.digital/v1/batches/batch_1/x.csv")
    assert client.batch_result(batch, Deadline(5)).startswith("index,")
    assert [url for url, _ in called] == ["https://api.tuimprenta.digital/v1/batches/batch_1/result.csv"]
    assert called[0][1]["Authorization"] == "Bearer tui-key"


# -- (7) path segments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("inv_8f3k2", "inv_8f3k2"),
        ("../webhooks", "..%2Fwebhooks"),
        ("...x", "...x"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
        ("factura 1", "factura%201"),
        ("ñ", "%C3%B1"),
    ],
)
def test_a_segment_stays_one_segment(value: str, encoded: str) -> None:
    assert segment(value) == encoded


@pytest.mark.parametrize("value", ["", ".", "..", "..."])
def test_a_dot_segment_is_refused_not_encoded(value: str) -> None:
    # requests decodes %2E back to "." before sending, so no encoding keeps `..` from climbing a level.
    with pytest.raises(PermanentSyncError) as caught:
        segment(value)
    assert (caught.value.code, caught.value.retryable) == ("unsafe_id", False)


SALES_INVOICE = load_event("buildnexion/05_sales_invoice_created.json")["data"]["object"]


def sales_invoice(**line: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(SALES_INVOICE)
    document["lines"][0].update(line)
    return document


@pytest.mark.parametrize("object_id", ["../webhooks", "..", "inv/1", "inv?1", "inv#1", "", ".hidden", "inv 1", "ñ"])
def test_ids_outside_the_safe_alphabet_are_refused_at_the_model(object_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SalesInvoice.model_validate({**SALES_INVOICE, "id": object_id})
    assert caught.value.errors()[0]["loc"] == ("id",)


@pytest.mark.parametrize("object_id", ["sin_9", "inv_8f3k2", "po-55", "evt:1.2"])
def test_ids_in_the_safe_alphabet_pass(object_id: str) -> None:
    assert SalesInvoice.model_validate({**SALES_INVOICE, "id": object_id}).id == object_id


# -- (3), (8) amounts, quantities and exponents bounded at the model; money never writes -0 or 10,001 digits --


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"unit_amount": 10**30}, "unit_amount"),  # quantize raised InvalidOperation outside the message's try
        ({"unit_amount": -(10**14)}, "unit_amount"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "1e-9999"}, "quantity"),  # a 10,001-character number
        ({"quantity": "1e30"}, "quantity"),
        ({"quantity": "0.000000001"}, "quantity"),  # nine decimals
        ({"quantity": "1000000001"}, "quantity"),
        ({"tax_rate": "1e-9999"}, "tax_rate"),
        ({"unit_amount_decimal": "1e+9999"}, "unit_amount_decimal"),
        ({"unit_amount_decimal": "Infinity"}, "unit_amount_decimal"),
    ],
)
def test_amounts_and_quantities_out_of_bounds_are_refused_at_the_model(line: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SalesInvoice.model_validate(sales_invoice(**line))
    assert caught.value.errors()[0]["loc"] == ("lines", 0, field)


@pytest.mark.parametrize(
    "line",
    [
        {"unit_amount": 10**13, "quantity": "1000000000"},
        {"unit_amount": 0, "quantity": "0"},
        {"unit_amount": 1, "quantity": "0.00000001", "unit_amount_decimal": "0.00000001"},
        {"unit_amount": -(10**13)},  # a discount line
    ],
)
def test_every_invoice_within_the_bounds_becomes_a_payload(line: dict[str, Any]) -> None:
    text = payload_text(SalesInvoice.model_validate(sales_invoice(**line)))
    assert len(text) < 1000


@pytest.mark.parametrize(("value", "text"), [("-0", "0"), ("-0.00", "0.00"), ("0E-5", "0.00000"), ("-0E+3", "0")])
def test_a_negative_zero_never_goes_out_as_minus_zero(value: str, text: str) -> None:
    assert json_number(Decimal(value)) == text
    assert not decimal_string(Decimal(value)).startswith("-")
    assert not str(normalize(Decimal(value), 2)).startswith("-")
    assert dumps({"qty": Decimal(value)}) == '{"qty":' + text + "}"


@pytest.mark.parametrize("value", ["1e-9999", "1e9999", "1e-13", "1e18", "-1e18"])
def test_money_refuses_numbers_beyond_its_digits_instead_of_writing_them(value: str) -> None:
    with pytest.raises(AmountError):
        json_number(Decimal(value))
    with pytest.raises(AmountError):
        normalize(Decimal(value))


def test_money_keeps_amounts_within_its_digits_exact() -> None:
    assert json_number(Decimal("999999999999999999")) == "999999999999999999"
    assert json_number(Decimal("0.000000000001")) == "0.000000000001"
    assert json_number(Decimal("1." + "0" * 40), min_places=2) == "1.00"  # trailing zeros past the bound dropped
    assert cents_to_decimal(10**13) == Decimal("100000000000.00")
    with pytest.raises(AmountError):
        cents_to_decimal(10**30)
    assert unit_price(100, Decimal("903.8")) == Decimal("9.038")
