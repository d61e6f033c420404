"""The HTTP client base: typed errors, the one retry decision, rate-limit headers, deadlines, no secrets.

A scripted transport adapter stands in for the network (unit tests open no sockets); the session,
request building and error typing are the real ones.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter

from invoice_bridge import http as http_module
from invoice_bridge.errors import PlatformError, RetryLater
from invoice_bridge.http import (
    ApiClient,
    BearerKeyClient,
    Deadline,
    backoff,
    exhausted_until,
    jitter,
    retry_after_seconds,
)
from invoice_bridge.observability import logger
from sandbox.cfn import Template
from tests.conftest import ROOT, emitted_metrics

NOW = 1_800_000_000.0
Scripted = tuple[int, dict[str, str], bytes] | Exception


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted response (or raises the scripted exception)."""

    def __init__(self, script: list[Scripted]) -> None:
        super().__init__()
        self.script = list(script)
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        self.timeouts.append(kwargs.get("timeout"))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, headers, body = step
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.url = str(request.url)
        response.request = request
        response.reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "")
        return response

    def close(self) -> None:
        return None


@dataclass
class FakeLimiter:
    acquired: int = 0
    paused: list[float] = field(default_factory=list)

    def acquire(self, deadline: Deadline) -> None:
        self.acquired += 1

    def pause_until(self, epoch_seconds: float) -> None:
        self.paused.append(epoch_seconds)


class SampleClient(ApiClient):
    platform: ClassVar[str] = "sample"

    def __init__(self, *args: Any, unauthorized: Callable[[], bool] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unauthorized = unauthorized
        self.token = "tok-secret-1"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def default_headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.sample+json"}

    def on_unauthorized(self) -> bool:
        return self._unauthorized() if self._unauthorized else False


def make_client(
    script: list[Scripted], *, limiter: FakeLimiter | None = None, **kwargs: Any
) -> tuple[SampleClient, ScriptedAdapter, list[float]]:
    adapter = ScriptedAdapter(script)
    session = requests.Session()
    session.mount("https://", adapter)
    sleeps: list[float] = []
    client = SampleClient(
        "https://api.sample.test/v1/",
        session=session,
        limiter=limiter,
        clock=lambda: NOW,
        sleep=sleeps.append,
        **kwargs,
    )
    return client, adapter, sleeps


def ok(body: bytes = b"{}", headers: dict[str, str] | None = None) -> Scripted:
    return (200, headers or {"Content-Type": "application/json"}, body)


def test_a_request_carries_auth_media_type_and_explicit_timeouts() -> None:
    client, adapter, _ = make_client([ok(b'{"id": 1}')])
    response = client.request("GET", "/things/1", deadline=Deadline.unlimited(), params={"a": "b"})
    assert response.json() == {"id": 1}
    (sent,) = adapter.requests
    assert sent.url == "https://api.sample.test/v1/things/1?a=b"
    assert sent.headers["Authorization"] == "Bearer tok-secret-1"
    assert sent.headers["Accept"] == "application/vnd.sample+json"
    connect, read = adapter.timeouts[0]
    assert 0 < connect <= 5
    assert 0 < read <= 10


def test_json_text_is_sent_as_given_with_a_json_content_type() -> None:
    client, adapter, _ = make_client([ok()])
    client.request("POST", "/things", deadline=Deadline.unlimited(), json_text='{"price":19.99}')
    (sent,) = adapter.requests
    assert sent.body == b'{"price":19.99}'
    assert sent.headers["Content-Type"] == "application/json"


def test_the_read_timeout_never_outlasts_the_deadline() -> None:
    client, adapter, _ = make_client([ok()])
    client.request("GET", "/x", deadline=Deadline(2.5))
    assert adapter.timeouts[0][1] <= 2.5
    # but a request sent this close to the deadline still gets a second to be answered
    client, adapter, _ = make_client([ok()])
    client.request("GET", "/x", deadline=Deadline(0.2))
    assert adapter.timeouts[0][1] == 1.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (402, False),
        (404, False),
        (409, False),
        (422, False),
        (401, True),
        (423, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (599, True),
        (418, False),
    ],
)
def test_status_table_decides_retryable(status: int, retryable: bool) -> None:
    client, _, _ = make_client([(status, {}, b"")] * 3, max_attempts=1)
    with pytest.raises(PlatformError) as caught:
        client.request("POST", "/x", deadline=Deadline.unlimited())
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert caught.value.platform == "sample"


@pytest.mark.parametrize("status", [423, 425])
def test_a_resource_locked_or_asked_too_early_is_read_again_after_a_wait(status: int) -> None:
    # 423 Locked (a document the platform is still writing) and 425 Too Early pass on their own: the read is
    # sent again after a backoff and its answer reaches the caller, not an error that would fail the document.
    client, adapter, sleeps = make_client([(status, {}, b""), ok(b'{"id": 7}')])
    response = client.request("GET", "/invoices/7", deadline=Deadline.unlimited())
    assert response.json() == {"id": 7}
    assert len(adapter.requests) == 2
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= 1.0


def test_errors_carry_the_platform_s_message_code_field_and_request_id_but_no_credentials() -> None:
    body = (
        b'{"error": {"type": "validation_error", "message": "El campo tax_id es requerido",'
        b' "field": "customer.tax_id"}}'
    )
    client, _, _ = make_client([(422, {"X-Request-Id": "req_42"}, body)])
    with pytest.raises(PlatformError) as caught:
        client.request("POST", "/invoices", deadline=Deadline.unlimited())
    error = caught.value
    assert (error.code, error.field, error.request_id) == ("validation_error", "customer.tax_id", "req_42")
    assert str(error) == "sample 422: El campo tax_id es requerido"
    assert "tok-secret-1" not in repr(error.__dict__)
    assert "tok-secret-1" not in str(error)


def test_an_error_body_that_is_not_json_uses_the_reason() -> None:
    client, _, _ = make_client([(404, {}, b"<html>nope</html>")])
    with pytest.raises(PlatformError, match="sample 404: Not Found") as caught:
        client.request("GET", "/missing", deadline=Deadline.unlimited(), retry_safe=False)
    assert caught.value.body == "<html>nope</html>"


def test_expected_statuses_are_returned_not_raised() -> None:
    client, _, _ = make_client([(404, {}, b"{}")])
    response = client.request("GET", "/maybe", deadline=Deadline.unlimited(), expected=(404,))
    assert response.status_code == 404


def test_a_read_is_retried_after_a_5xx_with_backoff() -> None:
    client, adapter, sleeps = make_client([(503, {}, b""), ok(b'{"ok": true}')])
    assert client.request("GET", "/x", deadline=Deadline.unlimited()).json() == {"ok": True}
    assert len(adapter.requests) == 2
    assert len(sleeps) == 1
    assert 0.3 <= sleeps[0] <= 0.7


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_write_is_not_retried_after_a_timeout_or_5xx_its_effect_is_unknown(method: str) -> None:
    # PATCH too: a JSON:API PATCH (Quipu's update) may add items or change totals; whether to send it again
    # after an unknown outcome is the sync's decision (its ledger), never the HTTP client's.
    client, adapter, _ = make_client([requests.ReadTimeout("slow"), ok()])
    with pytest.raises(PlatformError) as caught:
        client.request(method, "/invoices", deadline=Deadline.unlimited())
    assert (caught.value.code, caught.value.retryable, caught.value.status) == ("timeout", True, None)
    assert len(adapter.requests) == 1

    client, adapter, _ = make_client([(500, {}, b""), ok()])
    with pytest.raises(PlatformError):
        client.request(method, "/invoices", deadline=Deadline.unlimited())
    assert len(adapter.requests) == 1


def test_a_write_marked_retry_safe_is_retried() -> None:
    client, adapter, _ = make_client([requests.ConnectionError("reset"), ok()])
    client.request("POST", "/batches", deadline=Deadline.unlimited(), retry_safe=True)
    assert len(adapter.requests) == 2


def test_network_failures_are_typed_and_retryable() -> None:
    client, _, _ = make_client([requests.ConnectionError("refused")] * 3)
    with pytest.raises(PlatformError) as caught:
        client.request("GET", "/x", deadline=Deadline.unlimited())
    assert (caught.value.code, caught.value.retryable) == ("network", True)


def test_attempts_are_bounded() -> None:
    client, adapter, sleeps = make_client([(503, {}, b"")] * 5, max_attempts=3)
    with pytest.raises(PlatformError):
        client.request("GET", "/x", deadline=Deadline.unlimited())
    assert len(adapter.requests) == 3
    assert len(sleeps) == 2


def test_a_429_is_retried_even_for_a_write_after_retry_after() -> None:
    client, adapter, sleeps = make_client([(429, {"Retry-After": "2"}, b""), ok()])
    client.request("POST", "/invoices", deadline=Deadline.unlimited())
    assert len(adapter.requests) == 2
    assert 1.8 <= sleeps[0] <= 2.2


def test_a_429_pauses_the_shared_limiter_which_does_the_waiting() -> None:
    limiter = FakeLimiter()
    client, _adapter, sleeps = make_client([(429, {"RateLimit-Reset": "3"}, b""), ok()], limiter=limiter)
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert limiter.paused == [NOW + 3]
    assert limiter.acquired == 2  # once per request sent
    assert sleeps == [0.0]


def test_a_wait_past_the_deadline_hands_the_work_back() -> None:
    client, adapter, _ = make_client([(429, {"Retry-After": "30"}, b"")])
    with pytest.raises(PlatformError) as caught:
        client.request("GET", "/x", deadline=Deadline(5))
    assert caught.value.retry_after == 30
    assert len(adapter.requests) == 1


def test_an_exhausted_window_on_success_pauses_the_limiter() -> None:
    limiter = FakeLimiter()
    client, _, _ = make_client([ok(headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "4"})], limiter=limiter)
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert limiter.paused == [NOW + 3]  # the reset is rounded up: 3 s is the earliest it can be


def test_a_401_renews_credentials_once() -> None:
    renewals: list[int] = []

    def renew() -> bool:
        renewals.append(1)
        client.token = "tok-secret-2"
        return True

    client, adapter, _ = make_client([(401, {}, b""), ok()], unauthorized=renew)
    client.request("POST", "/invoices", deadline=Deadline.unlimited())
    assert renewals == [1]
    assert adapter.requests[1].headers["Authorization"] == "Bearer tok-secret-2"

    client, adapter, _ = make_client([(401, {}, b""), (401, {}, b"")], unauthorized=renew)
    with pytest.raises(PlatformError) as caught:
        client.request("POST", "/invoices", deadline=Deadline.unlimited())
    assert caught.value.status == 401
    assert len(adapter.requests) == 2


def test_a_renewed_credential_does_not_use_up_an_attempt() -> None:
    def renew() -> bool:
        client.token = "tok-secret-2"
        return True

    # Given two attempts: a 401 (renewed), then a 503 still gets its retry
    client, adapter, _ = make_client([(401, {}, b""), (503, {}, b""), ok()], unauthorized=renew, max_attempts=2)
    assert client.request("GET", "/invoices/1", deadline=Deadline.unlimited()).status_code == 200
    assert len(adapter.requests) == 3
    # nor does it give one back: after the renewal, two 503s use up both attempts
    client, adapter, _ = make_client(
        [(401, {}, b""), (503, {}, b""), (503, {}, b""), ok()], unauthorized=renew, max_attempts=2
    )
    with pytest.raises(PlatformError) as raised:
        client.request("GET", "/invoices/1", deadline=Deadline.unlimited())
    assert (raised.value.status, len(adapter.requests)) == (503, 3)


@pytest.mark.parametrize("status", [300, 302])
def test_a_redirect_is_not_followed_with_the_credentials_and_is_a_permanent_error(status: int) -> None:
    client, adapter, sleeps = make_client([(status, {"Location": "https://elsewhere.test/steal"}, b""), ok()])
    with pytest.raises(PlatformError) as raised:
        client.request("GET", "/invoices/1", deadline=Deadline.unlimited())
    assert (raised.value.status, raised.value.retryable) == (status, False)
    assert [r.url for r in adapter.requests] == ["https://api.sample.test/v1/invoices/1"]
    assert sleeps == []


def test_a_redirect_the_caller_expects_is_its_answer() -> None:
    client, _, _ = make_client([(303, {"Location": "/next"}, b"")])
    response = client.request("GET", "/invoices/1", deadline=Deadline.unlimited(), expected=(303,))
    assert response.headers["Location"] == "/next"


def test_no_authentication_when_asked() -> None:
    client, adapter, _ = make_client([ok()])
    client.request("POST", "/oauth/token", deadline=Deadline.unlimited(), authenticate=False)
    assert "Authorization" not in adapter.requests[0].headers


def test_raise_error_types_an_unexpected_response() -> None:
    client, _, _ = make_client([(409, {}, b'{"error": {"code": "E409", "message": "conflict"}}')])
    response = client.request("POST", "/x", deadline=Deadline.unlimited(), expected=(409,))
    with pytest.raises(PlatformError, match="conflict") as caught:
        client.raise_error(response)
    assert caught.value.code == "E409"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "Fri, 15 Jan 2027 08:00:10 GMT"}, 10.0),  # NOW is 08:00:00 that day
        ({"RateLimit-Reset": "4"}, 4.0),
        ({"X-RateLimit-Reset": str(int(NOW) + 12)}, 12.0),
        ({"X-RateLimit-Reset": "9"}, 9.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        # a zero wait stays zero, whatever form it takes
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"X-RateLimit-Reset": str(int(NOW))}, 0.0),
        # an HTTP date is a wait from now
        ({"Retry-After": formatdate(NOW + 30, usegmt=True)}, 30.0),
        # not a number, not a date: the reset decides
        ({"Retry-After": "1.2.3", "RateLimit-Reset": "5"}, 5.0),
        # where a reset stops being a delta and becomes an epoch (a delta that large is no wait at all)
        ({"X-RateLimit-Reset": "1000000000"}, None),
        ({"X-RateLimit-Reset": "1000000001"}, 0.0),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers, NOW) == seconds


def test_exhausted_until_reads_either_header_family() -> None:
    assert exhausted_until({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)}, NOW) == NOW + 30
    assert exhausted_until({"RateLimit-Remaining": "2", "RateLimit-Reset": "4"}, NOW) is None
    assert exhausted_until({"RateLimit-Remaining": "0"}, NOW) is None
    assert exhausted_until({"RateLimit-Remaining": "0", "RateLimit-Reset": "1"}, NOW) == NOW


@pytest.mark.parametrize(
    ("headers", "until"),
    [
        # one request left is not an exhausted window
        ({"RateLimit-Remaining": "1", "RateLimit-Reset": "30"}, None),
        # a reset of exactly 1_000_000_000 is still a number of seconds, not an epoch: 31 years is no pause
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "1000000000"}, None),
        # an epoch in the past: the window has reset already
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "1000000001"}, NOW),
        # a list-valued header (draft RateLimit fields) is read by its first value
        ({"RateLimit-Remaining": "0, 0", "RateLimit-Reset": "10, 60"}, NOW + 9),
    ],
)
def test_exhausted_until_at_its_boundaries(headers: dict[str, str], until: float | None) -> None:
    assert exhausted_until(headers, NOW) == until


def test_jitter_and_backoff_stay_in_their_bounds() -> None:
    for _ in range(200):
        assert 8.0 <= jitter(10.0) <= 12.0
        assert 0.4 <= backoff(1) <= 0.6
        assert 1.6 <= backoff(3) <= 2.4
        assert backoff(30) <= 8.0 * 1.2


@pytest.mark.parametrize(("draw", "expected"), [("low", 9.0), ("high", 11.0)])
def test_jitter_reaches_both_ends_of_its_spread(monkeypatch: pytest.MonkeyPatch, draw: str, expected: float) -> None:
    # Given the random draw at one end of the range it is offered
    monkeypatch.setattr(random, "uniform", lambda low, high: low if draw == "low" else high)
    # Then the delay moves that way: a worker may retry earlier as well as later
    assert jitter(10.0, 0.1) == pytest.approx(expected)


def test_deadline_from_a_lambda_context_keeps_a_reserve() -> None:
    class Context:
        def __init__(self, millis: int) -> None:
            self.millis = millis

        def get_remaining_time_in_millis(self) -> int:
            return self.millis

    deadline = Deadline.from_context(Context(10_000), reserve_seconds=3)
    assert 6.5 < deadline.remaining() <= 7.0
    assert deadline.allows(6)
    assert not deadline.allows(8)
    assert Deadline(-5).remaining() == 0
    # Exactly the time left less the reserve, and nothing at all when less than the reserve is left
    assert 996.9 < Deadline.from_context(Context(1_000_000), reserve_seconds=3).remaining() <= 997.0
    assert Deadline.from_context(Context(2_000), reserve_seconds=3).remaining() == 0


def test_retry_later_carries_its_wait() -> None:
    error = RetryLater("slot", retry_after=3.5)
    assert (error.retryable, error.retry_after) == (True, 3.5)


def test_a_retry_is_sent_only_if_the_wait_and_a_connect_still_fit_the_deadline() -> None:
    # Retry-After 2 s and a 3.05 s connect timeout: 6 s left is enough for one more try, 4 s is not.
    client, adapter, _ = make_client([(503, {"Retry-After": "2"}, b""), ok()])
    client.request("GET", "/x", deadline=Deadline(6))
    assert len(adapter.requests) == 2
    client, adapter, _ = make_client([(503, {"Retry-After": "2"}, b""), ok()])
    with pytest.raises(PlatformError):
        client.request("GET", "/x", deadline=Deadline(4))
    assert len(adapter.requests) == 1


def test_a_permanent_error_carries_no_wait_even_with_retry_after() -> None:
    client, _, _ = make_client([(422, {"Retry-After": "5"}, b"")])
    with pytest.raises(PlatformError) as caught:
        client.request("POST", "/x", deadline=Deadline.unlimited())
    assert caught.value.retry_after is None


def test_a_5xx_waits_its_backoff_not_the_rate_limit_window_it_mentions() -> None:
    client, _, sleeps = make_client([(503, {"X-RateLimit-Reset": "60"}, b""), ok()])
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert sleeps[0] < 1.0  # the window's reset is a wait only on a 429


def test_a_429_with_an_epoch_reset_waits_until_then() -> None:
    client, _, _ = make_client([(429, {"X-RateLimit-Reset": str(int(NOW) + 12)}, b"")], max_attempts=1)
    with pytest.raises(PlatformError) as caught:
        client.request("GET", "/x", deadline=Deadline.unlimited())
    assert caught.value.retry_after == 12


def test_without_a_limiter_an_exhausted_window_is_just_an_answer() -> None:
    client, _, _ = make_client([ok(headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "4"})])
    assert client.request("GET", "/x", deadline=Deadline.unlimited()).status_code == 200


def test_a_429_pauses_the_limiter_once_from_its_own_wait() -> None:
    limiter = FakeLimiter()
    headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": "4"}
    client, _, _ = make_client([(429, headers, b""), ok()], limiter=limiter)
    client.request("GET", "/x", deadline=Deadline.unlimited())
    assert limiter.paused == [NOW + 4]  # not also the success path's rounded-down pause


@pytest.mark.parametrize(("level", "logged"), [("DEBUG", [429, 200]), ("INFO", [429])])
def test_each_answer_is_logged_by_path_and_status_and_counted_without_query_or_credentials(
    log_stream: io.StringIO, capsys: pytest.CaptureFixture[str], level: str, logged: list[int]
) -> None:
    # Given a read that meets a 429 and then succeeds, at a log level
    client, _, _ = make_client([(429, {"Retry-After": "1"}, b'{"error": {"message": "slow down"}}'), ok()])
    previous = logger.log_level
    logger.setLevel(level)

    # When it is sent with a query string
    try:
        client.request("get", "/things/7?email=ana@example.com", deadline=Deadline.unlimited())
    finally:
        logger.setLevel(previous)

    # Then each answer is one log line naming the platform, method, path without its query, status and time;
    # a success only at DEBUG (every byte at INFO is billed), a refusal also at INFO
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    calls = [line for line in lines if line["message"] == "platform call"]
    assert [(c["platform"], c["method"], c["path"], c["status"]) for c in calls] == [
        ("sample", "GET", "/things/7", status) for status in logged
    ]
    assert all(isinstance(c["ms"], int) and c["ms"] >= 0 for c in calls)
    assert "tok-secret-1" not in log_stream.getvalue()
    assert "ana@example.com" not in log_stream.getvalue()
    # And the 429 counted as rate limited: the only metric (each request is counted by its log line)
    assert [(name, dims["platform"]) for name, dims in emitted_metrics(capsys.readouterr().out)] == [
        ("PlatformRateLimited", "sample"),
    ]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_is_counted_per_platform_for_its_alarm(
    status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    client, adapter, _ = make_client([(status, {}, b'{"error": {"message": "invalid api key"}}')] * 5)
    with pytest.raises(PlatformError):
        client.request("GET", "/things/1", deadline=Deadline.unlimited())
    counted = [(name, dims["platform"]) for name, dims in emitted_metrics(capsys.readouterr().out)]
    # each refused answer (the client may try again, e.g. with a fresh token) is counted once, and nothing else
    answers = len(adapter.requests)
    assert answers >= 1
    assert counted == [("PlatformAuthRefused", "sample")] * answers


def _credential_alarms() -> dict[str, dict[str, str]]:
    """The template's alarms on refused credentials: name -> the dimensions they watch."""
    alarms = Template.load(ROOT / "template.yaml").resources_of_type("AWS::CloudWatch::Alarm")
    return {
        name: {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        for name, alarm in alarms.items()
        if alarm["Properties"].get("MetricName") == "PlatformAuthRefused"
    }


@pytest.mark.parametrize(
    ("service", "own_platform"),
    [("quipu-sync", "quipu"), ("tuimprenta-poller", "tuimprenta"), ("facturadirecta-exporter", "facturadirecta")],
)
def test_a_refused_credential_reaches_its_one_alarm_whichever_worker_it_refused(
    service: str, own_platform: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One alarm per credential (each secret), not per worker: a revoked BuildNexion key is one page.
    alarms = _credential_alarms()
    assert sorted(d["platform"] for d in alarms.values()) == ["buildnexion", "facturadirecta", "quipu", "tuimprenta"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", service)
    for platform in ("buildnexion", own_platform):
        named = type("NamedClient", (SampleClient,), {"platform": platform})
        session = requests.Session()
        session.mount("https://", ScriptedAdapter([(401, {}, b'{"error": "invalid api key"}')] * 5))
        client = named("https://api.sample.test/v1/", session=session, clock=lambda: NOW, sleep=lambda _: None)
        with pytest.raises(PlatformError):
            client.request("GET", "/things/1", deadline=Deadline.unlimited())
        emitted = [dims for name, dims in emitted_metrics(capsys.readouterr().out) if name == "PlatformAuthRefused"]
        assert emitted
        # every refusal is in the one series the credential's alarm watches
        watching = [name for name, dims in alarms.items() if all(e == dims for e in emitted)]
        assert len(watching) == 1, (platform, emitted)
        assert alarms[watching[0]]["platform"] == platform


def test_the_logged_time_is_the_answer_s_wait_in_milliseconds(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a platform that answers 1.5 s after the request leaves (on the code's own stopwatch)
    readings = iter([100.0, 101.5])
    monkeypatch.setattr(http_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    client, _, _ = make_client([ok()])
    previous = logger.log_level
    logger.setLevel("DEBUG")
    # When the request is sent, Then its log line (DEBUG, as every success) says 1500 ms
    try:
        client.request("GET", "/things/8", deadline=Deadline.unlimited())
    finally:
        logger.setLevel(previous)
    (call,) = [json.loads(line) for line in log_stream.getvalue().splitlines() if "platform call" in line]
    assert call["ms"] == 1500


def test_bearer_key_platforms_ask_for_json_and_carry_the_key() -> None:
    adapter = ScriptedAdapter([ok()])
    session = requests.Session()
    session.mount("https://", adapter)
    client = BearerKeyClient("https://api.bearer.test/v1", SecretStr("key-1"), session=session)
    client.request("GET", "/things/9", deadline=Deadline.unlimited())
    (sent,) = adapter.requests
    assert (sent.headers["Accept"], sent.headers["Authorization"]) == ("application/json", "Bearer key-1")


def test_only_the_trailing_slash_of_the_base_url_is_dropped() -> None:
    adapter = ScriptedAdapter([ok()])
    session = requests.Session()
    session.mount("https://", adapter)
    client = BearerKeyClient("https://api.bearer.test/TAX/", SecretStr("key-1"), session=session)
    client.request("GET", "/things/9", deadline=Deadline.unlimited())
    assert [r.url for r in adapter.requests] == ["https://api.bearer.test/TAX/things/9"]


@pytest.mark.parametrize(("status", "refused"), [(401, True), (403, True), (404, False), (422, False), (503, False)])
def test_a_401_or_403_has_the_container_read_its_secrets_again(
    monkeypatch: pytest.MonkeyPatch, status: int, refused: bool
) -> None:
    from invoice_bridge import secrets

    calls: list[int] = []
    monkeypatch.setattr(secrets, "credentials_refused", lambda: calls.append(1))
    client, _, _ = make_client([(status, {}, b"")], max_attempts=1)
    with pytest.raises(PlatformError):
        client.request("POST", "/invoices", deadline=Deadline.unlimited())
    assert calls == ([1] if refused else [])
