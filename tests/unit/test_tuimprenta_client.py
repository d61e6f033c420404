"""The tuimprenta client without sockets: headers it sends, error typing, retries, rate-limit headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.errors import PlatformError
from invoice_bridge.http import Deadline
from invoice_bridge.tuimprenta.client import (
    Batch,
    FiscalRejection,
    IdempotencyConflict,
    NotFound,
    RateLimited,
    ResultUnreadable,
    ServerError,
    TuimprentaClient,
    TuimprentaError,
    Unauthorized,
    ValidationFailed,
)

API_KEY = "tui_unit_key_never_logged"


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    answer.headers.update(headers or {})
    answer.reason = "reason"
    return answer


class FakeSession(requests.Session):
    def __init__(self, answers: list[requests.Response]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


class Limiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.paused: list[float] = []

    def acquire(self, deadline: Deadline) -> None:
        self.acquired += 1

    def pause_until(self, epoch_seconds: float) -> None:
        self.paused.append(epoch_seconds)


def client(answers: list[requests.Response], limiter: Limiter | None = None) -> tuple[TuimprentaClient, FakeSession]:
    session = FakeSession(answers)
    return (
        TuimprentaClient(
            "https://api.tuimprenta.test/v1",
            SecretStr(API_KEY),
            session=session,
            limiter=limiter,
            clock=lambda: 1_800_000_000.0,
            sleep=lambda _s: None,
        ),
        session,
    )


BATCH = {"id": "batch_1", "type": "invoice.create", "status": "queued", "counts": {"queued": 2}}


def test_create_batch_sends_bearer_key_idempotency_key_and_the_exact_body() -> None:
    tui, session = client([response(201, BATCH)])
    body = '{"type":"invoice.create","payload":[{"unit_price":19.99}]}'
    batch = tui.create_batch(body, "ib-batch-abc", Deadline.unlimited())
    assert batch.id == "batch_1"
    (sent,) = session.sent
    assert (sent["method"], sent["url"]) == ("POST", "https://api.tuimprenta.test/v1/batches")
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["Idempotency-Key"] == "ib-batch-abc"
    assert sent["data"] == body.encode()
    assert sent["timeout"] == (3.05, 30.0)  # tuimprenta may take long to accept a large batch


def test_cancel_carries_an_idempotency_key_and_the_reason() -> None:
    tui, session = client([response(200, {"id": "inv_1", "status": "canceled"})])
    assert tui.cancel_invoice("inv_1", "mistake", "ib-cancel-inv_1", Deadline.unlimited()).status == "canceled"
    assert session.sent[0]["headers"]["Idempotency-Key"] == "ib-cancel-inv_1"
    assert json.loads(session.sent[0]["data"]) == {"reason": "mistake"}


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, Unauthorized, True),
        (402, FiscalRejection, False),
        (404, NotFound, False),
        (409, IdempotencyConflict, False),
        (422, ValidationFailed, False),
        (500, ServerError, True),
        (503, ServerError, True),
        (400, TuimprentaError, False),
        (403, TuimprentaError, False),
    ],
)
def test_error_statuses_become_typed_errors(status: int, kind: type[TuimprentaError], retryable: bool) -> None:
    error = {
        "error": {
            "type": "validation_error",
            "message": "El campo tax_id es requerido",
            "field": "customer.tax_id",
            "code": "E1001",
        }
    }
    headers = {"X-Request-Id": "req_tui_1", "Retry-After": "7"}
    tui, _ = client([response(status, error, headers)] * 3)
    with pytest.raises(kind) as caught:
        tui.batch("batch_1", Deadline.unlimited())
    exc = caught.value
    assert type(exc) is kind  # a 4xx the table does not name is no server error
    assert (exc.platform, exc.status, exc.message) == ("tuimprenta", status, "El campo tax_id es requerido")
    assert exc.retryable is retryable
    assert exc.code == "E1001"
    assert exc.field == "customer.tax_id"
    assert exc.request_id == "req_tui_1"
    assert json.loads(exc.body or "") == error
    # the wait the platform asked for is kept where a retry would honour it
    assert exc.retry_after == (7.0 if retryable else None)
    assert API_KEY not in str(exc)


def test_a_write_is_not_resent_blindly_but_a_keyed_batch_post_is() -> None:
    tui, session = client([response(503, {}), response(201, BATCH)])
    assert tui.create_batch("{}", "ib-batch-k", Deadline.unlimited()).id == "batch_1"
    assert [s["headers"]["Idempotency-Key"] for s in session.sent] == ["ib-batch-k", "ib-batch-k"]
    assert [s["data"] for s in session.sent] == [b"{}", b"{}"]


def test_a_keyed_cancel_is_sent_again_after_a_5xx_with_the_same_key() -> None:
    tui, session = client([response(503, {}), response(200, {"id": "inv_1", "status": "canceled"})])
    assert tui.cancel_invoice("inv_1", "mistake", "ib-cancel-inv_1", Deadline.unlimited()).status == "canceled"
    assert [s["headers"]["Idempotency-Key"] for s in session.sent] == ["ib-cancel-inv_1", "ib-cancel-inv_1"]


def test_429_pauses_the_shared_limiter_until_the_reset_and_retries() -> None:
    limiter = Limiter()
    limited = response(429, {"error": {"type": "rate_limit", "message": "slow down"}}, {"X-RateLimit-Reset": "12"})
    tui, _ = client([limited, response(200, BATCH)], limiter)
    assert tui.batch("batch_1", Deadline.unlimited()).status == "queued"
    assert limiter.paused == [1_800_000_012.0]
    assert limiter.acquired == 2


def test_429_after_the_last_attempt_is_a_retryable_rate_limited_error() -> None:
    limited = response(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"})
    tui, _ = client([limited] * 3)
    with pytest.raises(RateLimited) as caught:
        tui.batch("batch_1", Deadline.unlimited())
    assert caught.value.retryable is True
    assert caught.value.retry_after == 3.0


def test_an_exhausted_window_on_a_success_pauses_everyone_until_it_resets() -> None:
    limiter = Limiter()
    spent = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    tui, _ = client([response(200, BATCH, spent)], limiter)
    tui.batch("batch_1", Deadline.unlimited())
    assert limiter.paused == [1_800_000_029.0]


def test_a_timeout_is_a_retryable_server_error() -> None:
    class TimingOut(FakeSession):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            raise requests.Timeout("slow")

    tui = TuimprentaClient("https://x.test/v1", SecretStr(API_KEY), session=TimingOut([]), sleep=lambda _s: None)
    with pytest.raises(ServerError) as caught:
        tui.batch("b", Deadline.unlimited())
    assert caught.value.retryable is True
    assert caught.value.code == "timeout"


def test_a_connection_failure_is_a_retryable_server_error_coded_network() -> None:
    class Refusing(FakeSession):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            raise requests.ConnectionError("refused")

    tui = TuimprentaClient("https://x.test/v1", SecretStr(API_KEY), session=Refusing([]), sleep=lambda _s: None)
    with pytest.raises(ServerError) as caught:
        tui.batch("b", Deadline.unlimited())
    assert (caught.value.retryable, caught.value.code) == (True, "network")


def test_a_batch_result_is_asked_for_as_csv_with_a_longer_read_timeout_and_read_without_its_bom() -> None:
    tui, session = client([response(200, "\ufeffindex,status\r\n".encode())])
    batch = Batch.model_validate({**BATCH, "status": "completed", "result_url": None})
    assert tui.batch_result(batch, Deadline.unlimited()) == "index,status\r\n"
    (sent,) = session.sent
    assert sent["url"] == "https://api.tuimprenta.test/v1/batches/batch_1/result.csv"
    assert sent["headers"]["Accept"] == "text/csv"
    assert sent["timeout"] == (3.05, 30.0)  # a large batch's CSV takes longer than a JSON answer


def test_an_answer_of_another_shape_is_a_retryable_error_naming_the_field() -> None:
    tui, _ = client([response(200, {"id": "batch_1", "type": "invoice.create", "status": 7})])
    with pytest.raises(ServerError) as caught:
        tui.batch("batch_1", Deadline.unlimited())
    assert caught.value.message.startswith("unexpected answer: status: ")
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.tuimprenta.test/v1/batches/b/result.csv", True),
        ("https://API.tuimprenta.test:443/v1/files/x.csv", True),
        ("/v1/batches/b/result.csv", True),
        ("http://api.tuimprenta.test/v1/batches/b/result.csv", False),  # never the key over plain http
        ("https://api.tuimprenta.test:8443/v1/x", False),
        ("https://files.tuimprenta-cdn.test/x.csv?sig=1", False),
        ("https://api.tuimprenta.test.evil.test/v1/x", False),
    ],
)
def test_credentials_go_only_to_the_apis_own_origin(url: str, allowed: bool) -> None:
    from invoice_bridge.http import credentials_may_go_to

    assert credentials_may_go_to("https://api.tuimprenta.test/v1", url) is allowed


def csv_answer() -> requests.Response:
    return response(200, b"index,invoice_id,status,series,number,error_code,error_message\r\n")


def test_a_result_redirected_to_plain_http_is_never_fetched() -> None:
    # Issue 18: nothing goes over plain HTTP when the base is HTTPS; the refusal is permanent, so the poller
    # settles the batch by looking its invoices up (never by resubmitting them).
    down = "http://api.tuimprenta.test/v1/files/result.csv"
    tui, session = client([response(302, b"", {"Location": down}), csv_answer()])
    with pytest.raises(PlatformError) as caught:
        tui.batch_result(Batch(id="batch_1", status="completed"), Deadline(10))
    assert caught.value.code == "insecure_url"
    assert not caught.value.retryable
    (first,) = session.sent
    assert first["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_a_relative_redirect_stays_on_the_api_and_keeps_the_key() -> None:
    tui, session = client([response(301, b"", {"Location": "/v1/files/r.csv"}), csv_answer()])
    tui.batch_result(Batch(id="batch_1", status="completed"), Deadline(10))
    assert str(session.sent[1]["url"]) == "https://api.tuimprenta.test/v1/files/r.csv"
    assert session.sent[1]["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_a_result_url_on_another_host_is_fetched_without_the_key() -> None:
    tui, session = client([csv_answer()])
    tui.batch_result(Batch(id="b", status="completed", result_url="https://cdn.test/r.csv?sig=1"), Deadline(10))
    assert "Authorization" not in session.sent[0]["headers"]


def test_redirects_that_never_end_or_lead_nowhere_are_a_permanent_unreadable_result() -> None:
    loop = [response(302, b"", {"Location": "/v1/again"}) for _ in range(6)]
    tui, _ = client(loop)
    with pytest.raises(ResultUnreadable, match="more than 5 redirects") as caught:
        tui.batch_result(Batch(id="b", status="completed"), Deadline(10))
    assert caught.value.retryable is False
    tui, _ = client([response(303, b"")])
    with pytest.raises(ResultUnreadable, match="without Location"):
        tui.batch_result(Batch(id="b", status="completed"), Deadline(10))
