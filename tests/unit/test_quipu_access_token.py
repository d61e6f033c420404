"""Quipu's access token without sockets: when it is fetched, shared, kept or renewed, and how it is asked for."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.errors import PlatformError, RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, StateTable
from invoice_bridge.observability import metrics
from invoice_bridge.quipu.client import (
    AccessToken,
    Document,
    QuipuClient,
    TokenStore,
    normalize_tax_id,
    token_from_response,
)
from tests.unit.test_quipu_client import NOW, MemoryTable, Scripted, ScriptedQuipu, body, invoice_resource

APP_ID, APP_SECRET = "app-id", "app-secret"


def token_answer(value: str, expires_in: int = 7200) -> Scripted:
    return 200, json.dumps({"access_token": value, "token_type": "bearer", "expires_in": expires_in}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class SpyLeases:
    """Leases that are free (or held elsewhere), counting how often the renewal lease is asked for."""

    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.asked = 0

    def acquire(self, name: str, owner: str, seconds: float) -> bool:
        self.asked += 1
        return self.free

    def release(self, name: str, owner: str) -> None:
        return None


class Rig:
    def __init__(self, script: list[Scripted], *, free: bool = True) -> None:
        self.clock = Clock()
        self.quipu = ScriptedQuipu(script)
        session = requests.Session()
        session.mount("https://", self.quipu)
        self.table = MemoryTable()
        self.tokens = TokenStore(cast(StateTable, self.table), APP_ID)
        self.leases = SpyLeases(free)
        self.client = QuipuClient(
            "https://quipu.test",
            SecretStr(APP_ID),
            SecretStr(APP_SECRET),
            tokens=self.tokens,
            leases=cast(Leases, self.leases),
            session=session,
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def get_invoice(self) -> None:
        assert self.client.get_invoice("7", Deadline.unlimited()) is not None

    def bearers(self) -> list[str]:
        return [str(r.headers.get("Authorization")) for r in self.quipu.sent if "/oauth/token" not in str(r.url)]

    def token_posts(self) -> int:
        return sum(1 for r in self.quipu.sent if urlsplit(str(r.url)).path == "/oauth/token")


INVOICE = (200, body(invoice_resource("7", "F-1", "c1")))


def test_the_first_request_fetches_a_token_shares_it_and_counts_it(log_stream: io.StringIO) -> None:
    # Given no token anywhere
    rig = Rig([token_answer("tok-A"), INVOICE, INVOICE])
    metrics.clear_metrics()
    # When two requests are made
    rig.get_invoice()
    rig.get_invoice()
    # Then one token was asked for, as the reference shows: a form post with Basic credentials
    posted = rig.quipu.sent[0]
    assert (posted.method, str(posted.url)) == ("POST", "https://quipu.test/oauth/token")
    assert posted.headers["Authorization"] == "Basic " + base64.urlsafe_b64encode(b"app-id:app-secret").decode()
    assert posted.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=UTF-8"
    assert parse_qs(str(posted.body)) == {"grant_type": ["client_credentials"], "scope": ["ecommerce"]}
    # and it is used for both requests, kept in the client, shared in the table, and counted once
    assert rig.bearers() == ["Bearer tok-A", "Bearer tok-A"]
    assert (rig.client.token_requests, rig.token_posts()) == (1, 1)
    issued = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [(r["message"], r["expires_in_s"]) for r in issued if "token" in r["message"]] == [
        ("quipu access token issued", 7200)
    ]
    assert "QuipuTokenIssued" not in metrics.metric_set  # a log line, not a metric series of its own
    digest = hashlib.sha256(APP_ID.encode()).hexdigest()[:20]
    item = rig.table.items[(f"token#quipu#{digest}", "token")]
    assert item["access_token"] == {"S": "tok-A"}
    assert (item["issued_at"], item["expires_at"]) == ({"N": f"{NOW:.3f}"}, {"N": f"{NOW + 7200:.3f}"})
    assert item["ttl"] == {"N": str(int(NOW + 7200) + 3600)}  # the table forgets it an hour after it lapses


def test_a_token_due_for_renewal_is_renewed_and_each_renewal_is_counted() -> None:
    rig = Rig([token_answer("tok-A"), INVOICE, token_answer("tok-B"), INVOICE, token_answer("tok-C"), INVOICE])
    rig.get_invoice()
    rig.clock.now = NOW + 7200 - 300  # five minutes before expiry: due
    rig.get_invoice()
    rig.clock.now = NOW + 2 * 7200
    rig.get_invoice()
    assert rig.bearers() == ["Bearer tok-A", "Bearer tok-B", "Bearer tok-C"]
    assert rig.client.token_requests == 3


def test_a_token_request_that_meets_a_5xx_is_sent_again() -> None:
    rig = Rig([(503, b"{}"), token_answer("tok-A"), INVOICE])
    rig.get_invoice()
    assert rig.token_posts() == 2
    assert rig.bearers() == ["Bearer tok-A"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"<html>oops</html>", "token response is not JSON"),
        (b'["not", "an", "object"]', "token response without access_token/expires_in"),
        (b'{"token_type": "bearer"}', "token response without access_token/expires_in"),
    ],
)
def test_a_token_answer_quipu_cannot_have_meant_is_a_retryable_quipu_error(answer: bytes, message: str) -> None:
    rig = Rig([(200, answer)])
    with pytest.raises(PlatformError) as caught:
        rig.get_invoice()
    error = caught.value
    assert (error.platform, error.message, error.retryable) == ("quipu", message, True)
    if message == "token response is not JSON":
        assert error.status == 200


def test_a_valid_shared_token_is_used_without_taking_the_renewal_lease() -> None:
    rig = Rig([INVOICE, INVOICE])
    rig.tokens.put(AccessToken(SecretStr("shared"), NOW, NOW + 3600))
    rig.get_invoice()
    rig.get_invoice()
    assert rig.bearers() == ["Bearer shared", "Bearer shared"]
    assert (rig.leases.asked, rig.token_posts(), rig.clock.slept) == (0, 0, [])


def test_the_token_a_client_holds_is_kept_when_the_shared_one_changes() -> None:
    # Given a client holding a valid token
    rig = Rig([INVOICE, INVOICE])
    rig.tokens.put(AccessToken(SecretStr("mine"), NOW, NOW + 3600))
    rig.get_invoice()
    # When another worker shares another one
    rig.tokens.put(AccessToken(SecretStr("theirs"), NOW, NOW + 3600))
    rig.get_invoice()
    # Then it keeps its own until it is due (no read of the table per request)
    assert rig.bearers() == ["Bearer mine", "Bearer mine"]


def test_a_token_shared_by_a_renewer_that_finished_just_before_the_lease_is_taken_not_fetched_again() -> None:
    # Given a shared token due for renewal, replaced by a fresh one while this worker takes the lease
    rig = Rig([INVOICE, INVOICE])
    rig.tokens.put(AccessToken(SecretStr("old"), NOW - 7000, NOW + 200))
    reads = 0
    original_get = rig.tokens.get

    def get() -> AccessToken | None:
        nonlocal reads
        reads += 1
        if reads == 2:
            rig.tokens.put(AccessToken(SecretStr("fresh"), NOW, NOW + 7200))
        return original_get()

    rig.tokens.get = get  # type: ignore[method-assign]
    rig.get_invoice()
    # Then the fresh one is used and kept: the next request reads nothing more, even with the item gone
    rig.table.items.clear()
    rig.get_invoice()
    assert rig.bearers() == ["Bearer fresh", "Bearer fresh"]
    assert rig.token_posts() == 0


def test_a_fetched_token_is_kept_by_the_client() -> None:
    rig = Rig([token_answer("tok-A"), INVOICE, INVOICE])
    rig.get_invoice()
    rig.table.items.clear()  # another worker dropped the shared item
    rig.get_invoice()
    assert rig.bearers() == ["Bearer tok-A", "Bearer tok-A"]
    assert rig.token_posts() == 1


def test_while_another_worker_renews_a_still_usable_token_is_used_without_waiting() -> None:
    # Given a shared token due for renewal (but still usable) and the renewal lease held elsewhere
    rig = Rig([INVOICE, INVOICE], free=False)
    rig.tokens.put(AccessToken(SecretStr("old"), NOW - 7000, NOW + 200))
    rig.get_invoice()
    rig.get_invoice()
    # Then it is used at once, each time, with no wait and no token request
    assert rig.bearers() == ["Bearer old", "Bearer old"]
    assert (rig.clock.slept, rig.token_posts()) == ([], 0)


def test_the_token_request_takes_its_rate_limit_slot_before_the_request_that_needs_it() -> None:
    events: list[str] = []

    class Limiter:
        def acquire(self, deadline: Deadline) -> None:
            events.append("slot")

        def pause_until(self, epoch_seconds: float) -> None:
            return None

    rig = Rig([token_answer("tok-A"), INVOICE])
    rig.client.limiter = Limiter()
    original_send = rig.quipu.send

    def send(request: Any, **kwargs: Any) -> Any:
        events.append(urlsplit(str(request.url)).path)
        return original_send(request, **kwargs)

    rig.quipu.send = send  # type: ignore[method-assign]
    rig.get_invoice()
    # each request leaves at the slot it reserved: the token's first, then the invoice's
    assert events == ["slot", "/oauth/token", "slot", "/invoices/7"]


def test_a_get_carries_no_body_and_no_content_type() -> None:
    rig = Rig([INVOICE])
    rig.tokens.put(AccessToken(SecretStr("shared"), NOW, NOW + 3600))
    rig.get_invoice()
    (sent,) = rig.quipu.sent
    assert sent.body is None
    assert "Content-Type" not in sent.headers


def page(number_of_pages: int, *resources: dict[str, Any]) -> Scripted:
    return 200, body(list(resources), meta={"pagination_info": {"total_pages": number_of_pages}})


def test_a_listing_reads_every_page_quipu_announces_and_no_more() -> None:
    rig = Rig(
        [
            page(3, invoice_resource("1", "F-9", "c9")),
            page(3, invoice_resource("2", "F-8", "c9")),
            page(3, invoice_resource("3", "F-7", "c9")),
        ]
    )
    rig.tokens.put(AccessToken(SecretStr("shared"), NOW, NOW + 3600))
    assert rig.client.find_expense_invoice("c1", "F-1", 2026, Deadline.unlimited()) is None
    assert [rig.quipu.query(i)["page[number]"] for i in range(3)] == [["1"], ["2"], ["3"]]


def test_a_listing_stops_at_an_empty_page_whatever_the_announced_count() -> None:
    rig = Rig([page(5, invoice_resource("1", "F-9", "c9")), page(5)])
    rig.tokens.put(AccessToken(SecretStr("shared"), NOW, NOW + 3600))
    assert rig.client.find_expense_invoice("c1", "F-1", 2026, Deadline.unlimited()) is None
    assert len(rig.quipu.sent) == 2


@pytest.mark.parametrize(
    ("meta", "pages"),
    [
        ({"pagination_info": {"total_pages": 3}}, 3),
        ({"pagination_info": {"total_pages": 0}}, 1),
        ({"pagination_info": {"total_pages": "x"}}, 1),
        ({"pagination_info": {}}, 1),
        ({}, 1),
    ],
)
def test_the_announced_page_count_is_read_defensively(meta: dict[str, Any], pages: int) -> None:
    assert Document.model_validate({"data": [], "meta": meta}).total_pages() == pages


def test_a_token_is_usable_until_its_safety_margin_and_due_at_its_renewal_margin() -> None:
    # a 100 s token: 5 s of safety (5 %), renewed in its last 20 s (20 %)
    short = AccessToken(SecretStr("t"), 0.0, 100.0)
    assert short.usable(94.9)
    assert not short.usable(95.0)
    assert not short.due_for_renewal(79.9)
    assert short.due_for_renewal(80.0)


def test_a_token_that_expires_as_it_is_issued_is_refused() -> None:
    with pytest.raises(PlatformError) as caught:
        token_from_response({"access_token": "t", "expires_in": 1_800_000_000}, requested_at=1_800_000_000.0)
    error = caught.value
    assert (error.platform, error.message, error.code, error.retryable) == (
        "quipu",
        "token response with an expiry in the past",
        "token_expired",
        True,
    )


def test_expires_in_is_an_epoch_from_exactly_the_threshold() -> None:
    # 1_000_000_000 is read as an epoch (2001), so long past: refused, not taken as 31 years of lifetime
    with pytest.raises(PlatformError):
        token_from_response({"access_token": "t", "expires_in": 1_000_000_000}, requested_at=NOW)


def test_an_epoch_expiry_equal_to_created_at_is_taken_as_it_is() -> None:
    # created_at is not before the expiry: no lifetime can be derived, so the epoch itself is the expiry
    document = {"access_token": "t", "created_at": 1_800_003_600, "expires_in": 1_800_003_600}
    assert token_from_response(document, requested_at=NOW).expires_at == 1_800_003_600


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ESB85033470", "B85033470"),  # the ES prefix on a NIF is dropped
        ("ESB8503347", "B8503347"),  # ten characters: still a prefix
        ("ES1234567", "ES1234567"),  # nine: a whole identifier that starts with ES
        ("FR12345678901", "FR12345678901"),  # another country's prefix is kept
    ],
)
def test_the_es_prefix_is_dropped_only_in_front_of_a_whole_identifier(raw: str, normalized: str) -> None:
    assert normalize_tax_id(raw) == normalized


def counting_reads(rig: Rig) -> list[int]:
    """How often the shared token item is read (a DynamoDB read per call in AWS)."""
    reads = [0]
    original_get = rig.tokens.get

    def get() -> AccessToken | None:
        reads[0] += 1
        return original_get()

    rig.tokens.get = get  # type: ignore[method-assign]
    return reads


def test_a_worker_that_fetched_a_token_sends_its_request_without_reading_the_shared_item_again() -> None:
    # Given no token anywhere
    rig = Rig([token_answer("tok-A"), INVOICE, INVOICE])
    reads = counting_reads(rig)
    # When it makes two requests
    rig.get_invoice()
    rig.get_invoice()
    # Then the shared item was read twice, both before the fetch (before and under the lease), never after
    assert reads == [2]
    assert rig.bearers() == ["Bearer tok-A", "Bearer tok-A"]


def test_a_token_shared_just_before_the_lease_is_kept_without_reading_the_item_again() -> None:
    # Given no token, then a renewer that shares one just before this worker reads under the lease
    rig = Rig([INVOICE, INVOICE])
    reads = counting_reads(rig)
    original_acquire = rig.leases.acquire

    def acquire(name: str, owner: str, seconds: float) -> bool:
        rig.tokens.put(AccessToken(SecretStr("theirs"), NOW, NOW + 7200))
        return original_acquire(name, owner, seconds)

    rig.leases.acquire = acquire  # type: ignore[method-assign]
    rig.get_invoice()
    rig.get_invoice()
    assert rig.bearers() == ["Bearer theirs", "Bearer theirs"]
    assert (reads, rig.token_posts()) == ([2], 0)


def test_a_due_token_is_replaced_by_a_fresh_shared_one_without_taking_the_renewal_lease() -> None:
    # Given a worker holding a token due for renewal (it used it while another worker held the lease)
    rig = Rig([INVOICE, INVOICE], free=False)
    rig.tokens.put(AccessToken(SecretStr("old"), NOW - 7000, NOW + 200))
    rig.get_invoice()
    asked = rig.leases.asked
    # When the renewer has shared a fresh one
    rig.tokens.put(AccessToken(SecretStr("fresh"), NOW, NOW + 7200))
    rig.get_invoice()
    # Then the worker takes it from the shared item, and asks for no lease
    assert rig.bearers() == ["Bearer old", "Bearer fresh"]
    assert rig.leases.asked == asked


def test_a_due_token_quipu_refuses_while_another_worker_renews_is_never_sent_again() -> None:
    # Given a shared token due for renewal, the renewal lease held elsewhere, and Quipu refusing that token
    rig = Rig([(401, body(None, errors=[{"detail": "expired"}])), INVOICE], free=False)
    rig.tokens.put(AccessToken(SecretStr("old"), NOW - 7000, NOW + 200))
    # When a request meets the 401, Then the worker waits for the renewer and hands the work back,
    # having dropped the refused token from the shared item
    with pytest.raises(RetryLater):
        rig.get_invoice()
    assert rig.bearers() == ["Bearer old"]
    assert rig.tokens.get() is None


def test_a_renewal_after_a_401_waits_for_another_renewer_no_longer_than_the_callers_deadline() -> None:
    # Given a worker that fetches a token for a request, then sees another worker take the renewal lease
    rig = Rig([token_answer("tok-A"), (401, body(None, errors=[{"detail": "revoked"}]))])
    original_acquire = rig.leases.acquire

    def acquire(name: str, owner: str, seconds: float) -> bool:
        granted = original_acquire(name, owner, seconds)
        rig.leases.free = False
        return granted

    rig.leases.acquire = acquire  # type: ignore[method-assign]
    # When Quipu refuses the new token and the request has 0.4 s left
    with pytest.raises(RetryLater):
        rig.client.get_invoice("7", Deadline(0.4, clock=lambda: 0.0))
    # Then it polled for the renewer's token only while the request's own deadline allowed (two polls)
    assert rig.clock.slept == [0.2, 0.2]
