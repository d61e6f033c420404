"""A sliding-window rate limit for the sandbox peers: at most `limit` requests in any `window` seconds."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable


class SlidingWindow:
    """Counts requests per key at arrival, as a platform does, and answers with its rate-limit headers."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        header_prefix: str = "RateLimit",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self._prefix = header_prefix
        self._clock = clock
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.rejected = 0

    def hit(self, key: str) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, headers). A refused request is not counted against the window."""
        with self._lock:
            now = self._clock()
            hits = self._hits[key]
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            else:
                self.rejected += 1
            reset = max(0.0, hits[0] + self.window - now) if hits else 0.0
            headers = {
                f"{self._prefix}-Limit": str(self.limit),
                f"{self._prefix}-Remaining": str(self.limit - len(hits)),
                f"{self._prefix}-Reset": str(math.ceil(reset)),
            }
            if not allowed:
                headers["Retry-After"] = str(math.ceil(reset))
            return allowed, headers
