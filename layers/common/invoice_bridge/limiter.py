"""A rate limiter shared by every concurrent Lambda of one credential, kept in the state table.

It keeps the send times of the last `limit` requests (a sliding log) and hands out slots in order: a
caller reserves the earliest time at which one more request keeps every `window`-second span at or under
`limit`, then sleeps until then. Reservations never go back in time, so the log stays sorted. A 429 or
an exhausted `RateLimit-Remaining` pauses every user of the credential until the platform's reset.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from invoice_bridge.errors import RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.keys import LIMITER_SK, limiter_pk
from invoice_bridge.ledger import StateTable
from invoice_bridge.observability import count, observe

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# Slots are spaced this much wider than the platform's window: the platform measures arrival, we measure
# departure, and the network between them is not perfectly steady.
DEFAULT_MARGIN_SECONDS = 0.15
MAX_CONTENTION_ATTEMPTS = 12


def limiter_key(platform: str, credential_id: str) -> str:
    """The item key of a credential's window; the credential id is hashed, never stored."""
    digest = hashlib.sha256(credential_id.encode("utf-8")).hexdigest()[:20]
    return limiter_pk(platform, digest)


class DynamoRateLimiter:
    """At most `limit` requests in any `window` seconds, across processes, through one DynamoDB item."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        key: str,
        *,
        limit: int,
        window_seconds: float,
        platform: str,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit and window must be positive")
        self._table = StateTable(client, table_name)
        self._key = key
        self.limit = limit
        self.window = window_seconds + margin_seconds
        self.platform = platform
        self._clock = clock
        self._sleep = sleep

    def _read(self) -> tuple[list[float], float, int]:
        item = self._table.get(self._key, LIMITER_SK)
        if not item:
            return [], 0.0, 0
        # `_write` is the only writer and always writes both.
        grants = sorted(float(v["N"]) for v in item["grants"]["L"])
        paused = float(item["paused_until"]["N"])
        return grants, paused, int(item["version"]["N"])

    def next_slot(self, grants: list[float], paused_until: float, now: float) -> float:
        """The earliest send time for one more request, given the log of reserved send times."""
        slot = max(now, paused_until)
        if grants:
            slot = max(slot, grants[-1])
        if len(grants) >= self.limit:
            slot = max(slot, grants[-self.limit] + self.window)
        return slot

    def acquire(self, deadline: Deadline) -> None:
        """Reserve the next slot and sleep until it; RetryLater when it falls past the deadline."""
        for _ in range(MAX_CONTENTION_ATTEMPTS):
            grants, paused, version = self._read()
            now = self._clock()
            slot = self.next_slot(grants, paused, now)
            wait = slot - now
            if not deadline.allows(wait):
                count("RateLimitDeferred", {"platform": self.platform})
                raise RetryLater(f"{self.platform} rate limit: no slot for {wait:.1f} s", retry_after=wait)
            kept = [g for g in grants if g > now - self.window]
            if self._write([*kept, slot][-self.limit :], paused, version):
                if wait > 0:
                    observe("RateLimitWaitMs", wait * 1000, {"platform": self.platform})
                    self._sleep(wait)
                return
            self._sleep(random.uniform(0.005, 0.03))  # noqa: S311 - contention backoff, not cryptographic
        raise RetryLater(f"{self.platform} rate limit: too much contention", retry_after=1.0)

    def pause_until(self, epoch_seconds: float) -> None:
        """Hold every user until `epoch_seconds` (never shortens a pause already set)."""
        for _ in range(MAX_CONTENTION_ATTEMPTS):
            grants, paused, version = self._read()
            if paused >= epoch_seconds:
                return
            if self._write(grants, epoch_seconds, version):
                return

    def _write(self, grants: list[float], paused_until: float, version: int) -> bool:
        condition = "attribute_not_exists(pk)" if version == 0 else "version = :v"
        values: dict[str, AttributeValueTypeDef] | None = {":v": {"N": str(version)}} if version else None
        item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": self._key},
            "sk": {"S": LIMITER_SK},
            "grants": {"L": [{"N": f"{g:.3f}"} for g in grants]},
            "paused_until": {"N": f"{paused_until:.3f}"},
            "version": {"N": str(version + 1)},
            # A window nobody uses for a day is forgotten.
            "ttl": {"N": str(int(self._clock()) + 86400)},
        }
        return self._table.put_if(item, condition, values)
