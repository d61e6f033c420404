"""The shared rate limiter's item, metrics and contention handling on moto's DynamoDB."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from invoice_bridge.errors import RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import StateTable
from invoice_bridge.limiter import MAX_CONTENTION_ATTEMPTS, DynamoRateLimiter, limiter_key
from tests.conftest import FakeClock, emitted_metrics
from tests.integration.conftest import Aws
from tests.integration.test_core_state import limiter as state_limiter

START = 1_800_000_000.0
KEY = limiter_key("quipu", "app-1")


class Contended:
    """The DynamoDB client, with each put_item refused as if another worker wrote first (up to `times`)."""

    def __init__(self, client: Any, times: int, code: str = "ConditionalCheckFailedException") -> None:
        self._client = client
        self.refusals = times
        self._code = code
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **request: Any) -> Any:
        self.puts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise ClientError({"Error": {"Code": self._code, "Message": "refused"}}, "PutItem")
        return self._client.put_item(**request)


@pytest.fixture
def dynamodb(aws: Aws) -> Any:
    return aws.session.client("dynamodb")


@pytest.fixture
def table_name(aws: Aws) -> str:
    return aws.provisioned.tables["StateTable"]


def limiter(client: Any, table_name: str, clock: FakeClock, limit: int, window: float) -> DynamoRateLimiter:
    """The state tests' limiter (credential "app-1", no margin), on `client`, which may refuse writes."""
    return state_limiter(StateTable(client, table_name), clock, limit, window)


def window_item(client: Any, table_name: str) -> dict[str, Any]:
    item = client.get_item(TableName=table_name, Key={"pk": {"S": KEY}, "sk": {"S": "window"}}, ConsistentRead=True)
    return dict(item["Item"])


def metric_values(stdout: str, name: str) -> list[float]:
    return [
        value
        for line in stdout.splitlines()
        if line.startswith('{"_aws"') and name in json.loads(line)
        for value in json.loads(line)[name]
    ]


def test_the_window_keeps_only_recent_sends_and_is_forgotten_a_day_after_its_last_use(
    dynamodb: Any, table_name: str
) -> None:
    # Given a 3-per-5-s limiter used once
    clock = FakeClock()
    limit = limiter(dynamodb, table_name, clock, limit=3, window=5)
    limit.acquire(Deadline.unlimited())
    item = window_item(dynamodb, table_name)
    assert item["grants"]["L"] == [{"N": f"{START:.3f}"}]
    assert item["version"]["N"] == "1"
    assert item["ttl"]["N"] == str(int(START) + 86400)
    # When it is used again after the window passed
    clock.now += 20
    limit.acquire(Deadline.unlimited())
    # Then the old send is dropped, and the expiry moves on
    item = window_item(dynamodb, table_name)
    assert item["grants"]["L"] == [{"N": f"{START + 20:.3f}"}]
    assert item["version"]["N"] == "2"
    assert item["ttl"]["N"] == str(int(START + 20) + 86400)
    assert clock.slept == []


def test_the_window_holds_at_most_limit_sends(dynamodb: Any, table_name: str) -> None:
    clock = FakeClock()
    limit = limiter(dynamodb, table_name, clock, limit=2, window=100)
    for _ in range(4):
        limit.acquire(Deadline.unlimited())
    # the four sends went at 0, 0, 100, 100: only the last two matter for the next one
    assert [float(g["N"]) - START for g in window_item(dynamodb, table_name)["grants"]["L"]] == [100, 100]
    # and slots reserved ahead by workers still waiting for them are bounded the same way
    waiting = DynamoRateLimiter(
        dynamodb,
        table_name,
        KEY,
        limit=2,
        window_seconds=100,
        platform="quipu",
        margin_seconds=0.0,
        clock=clock,
        sleep=lambda _seconds: None,
    )
    for _ in range(3):
        waiting.acquire(Deadline.unlimited())
    assert [float(g["N"]) - START for g in window_item(dynamodb, table_name)["grants"]["L"]] == [200, 300]


def test_waiting_and_deferring_are_measured_per_platform(
    dynamodb: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    limit = limiter(dynamodb, table_name, clock, limit=1, window=10)
    limit.acquire(Deadline.unlimited())
    assert emitted_metrics(capsys.readouterr().out) == []  # the first send did not wait
    limit.acquire(Deadline.unlimited())
    out = capsys.readouterr().out
    assert [(name, dims["platform"]) for name, dims in emitted_metrics(out)] == [("RateLimitWaitMs", "quipu")]
    assert metric_values(out, "RateLimitWaitMs") == [10_000.0]
    with pytest.raises(RetryLater):
        limit.acquire(Deadline(3, clock=clock))
    assert [(name, dims["platform"]) for name, dims in emitted_metrics(capsys.readouterr().out)] == [
        ("RateLimitDeferred", "quipu")
    ]


def test_a_write_lost_to_another_worker_is_retried_from_a_fresh_read(dynamodb: Any, table_name: str) -> None:
    clock = FakeClock()
    contended = Contended(dynamodb, times=2)
    limit = limiter(contended, table_name, clock, limit=5, window=5)
    limit.acquire(Deadline.unlimited())
    assert contended.puts == 3
    assert len(clock.slept) == 2
    assert all(0.005 <= pause <= 0.03 for pause in clock.slept)  # a short random pause between attempts
    assert window_item(dynamodb, table_name)["version"]["N"] == "1"


def test_endless_contention_hands_the_work_back(dynamodb: Any, table_name: str) -> None:
    clock = FakeClock()
    contended = Contended(dynamodb, times=10_000)
    limit = limiter(contended, table_name, clock, limit=5, window=5)
    with pytest.raises(RetryLater, match="too much contention") as caught:
        limit.acquire(Deadline.unlimited())
    assert caught.value.retry_after == 1.0
    assert contended.puts == MAX_CONTENTION_ATTEMPTS


def test_a_pause_lost_to_another_worker_is_retried(dynamodb: Any, table_name: str) -> None:
    clock = FakeClock()
    contended = Contended(dynamodb, times=1)
    limiter(contended, table_name, clock, limit=5, window=5).pause_until(START + 30)
    assert contended.puts == 2
    assert window_item(dynamodb, table_name)["paused_until"]["N"] == f"{START + 30:.3f}"


def test_other_dynamodb_errors_are_raised(dynamodb: Any, table_name: str) -> None:
    clock = FakeClock()
    contended = Contended(dynamodb, times=1, code="ProvisionedThroughputExceededException")
    with pytest.raises(ClientError, match="ProvisionedThroughputExceededException"):
        limiter(contended, table_name, clock, limit=5, window=5).acquire(Deadline.unlimited())
    assert contended.puts == 1


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (5, 0.0), (0, 0.0), (5, -1.0)])
def test_a_limiter_needs_a_positive_limit_and_window(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match=r"^limit and window must be positive$"):
        DynamoRateLimiter(cast(Any, None), "table", "key", limit=limit, window_seconds=window, platform="quipu")


def test_the_smallest_limiter_is_accepted() -> None:
    limiter = DynamoRateLimiter(
        cast(Any, None), "table", "key", limit=1, window_seconds=0.001, platform="quipu", margin_seconds=0.0
    )
    assert (limiter.limit, limiter.window) == (1, 0.001)
