"""One fault plan for every sandbox peer: the faults real platforms have, seeded so a failing run repeats.

`LOCAL_FAULTS=error=0.1,hang=0.03,after_effect=0.5,seed=7` (or `invoice-bridge local serve --faults ...`):

- `error`: the share of requests answered 500, 502 or 503;
- `hang`: the share of requests that hang until the client gives up (its read timeout) and are then dropped
  without an answer; `hang_seconds` (default 35, past every client timeout the template sets) bounds the
  hang, so a shorter one plays a connection dropped after that long;
- `after_effect`: of the writes (POST, PUT, PATCH, DELETE) picked for an error or a hang, the share whose
  effect is made before the answer is lost: the write happens, the client gets a 5xx or nothing;
- `seed`: each peer draws from its own RNG, seeded from the seed and the peer's name, so the same seed gives
  each peer the same sequence of decisions.

Tests also script faults: `fail_next(status, count, method=..., route=...)` answers the next matching
requests with `status`, before any random decision.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.httpserver import Dispatcher, DropConnection, Reply, Request

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ERROR_STATUSES = (500, 502, 503)
DEFAULT_HANG_SECONDS = 35.0
_SHARES = ("error", "hang", "after_effect")


class FaultSpecError(ValueError):
    """A fault specification that cannot be read; the message names the part."""


@dataclass(frozen=True)
class FaultSettings:
    """What `LOCAL_FAULTS` (or `--faults`) says; every share 0 means no faults."""

    error: float = 0.0
    hang: float = 0.0
    after_effect: float = 0.0
    seed: int = 0
    hang_seconds: float = DEFAULT_HANG_SECONDS

    @classmethod
    def parse(cls, text: str | None) -> FaultSettings:
        """`error=0.1,hang=0.03,after_effect=0.5,seed=7[,hang_seconds=35]`; empty means none."""
        values: dict[str, float | int] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in (*_SHARES, "seed", "hang_seconds"):
                raise FaultSpecError(
                    f"{part.strip()!r}: expected error=, hang=, after_effect=, seed= or hang_seconds= (e.g. error=0.1)"
                )
            try:
                values[name] = int(raw) if name == "seed" else float(raw)
            except ValueError:
                raise FaultSpecError(f"{name}={raw.strip()!r} is not a number") from None
        for name in _SHARES:
            share = float(values.get(name, 0.0))
            if not 0.0 <= share <= 1.0:
                raise FaultSpecError(f"{name}={share} must be a share from 0 to 1")
        if float(values.get("error", 0.0)) + float(values.get("hang", 0.0)) > 1.0:
            raise FaultSpecError("error + hang must not exceed 1")
        if not 0 < float(values.get("hang_seconds", DEFAULT_HANG_SECONDS)) <= 600:
            raise FaultSpecError("hang_seconds must be above 0 and at most 600")
        return cls(**values)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        """Whether any fault is drawn at random."""
        return self.error > 0 or self.hang > 0

    def plan(self, peer: str) -> FaultPlan:
        """The plan of one peer (its own RNG)."""
        return FaultPlan(self, peer)

    def spec(self) -> str:
        """Back to the `LOCAL_FAULTS` form."""
        return (
            f"error={self.error},hang={self.hang},after_effect={self.after_effect},seed={self.seed},"
            f"hang_seconds={self.hang_seconds}"
        )


@dataclass(frozen=True)
class Decision:
    """What happens to one request: `kind` none, error or hang; `after_effect`: the effect is made first."""

    kind: str = "none"
    status: int = 0
    after_effect: bool = False
    code: str | None = None  # a scripted fault's error code, for the peer's error document


NO_FAULT = Decision()


@dataclass
class _Scripted:
    status: int
    method: str | None
    route: str | None
    code: str | None


ErrorReply = Callable[[int, str | None], Reply]


def json_error(status: int, _code: str | None = None) -> Reply:
    """The default body of an injected 5xx (what a load balancer in front of a platform might say)."""
    return Reply(status, json.dumps({"message": "injected fault"}).encode(), {"Content-Type": "application/json"})


class FaultPlan:
    """The decisions for one peer's requests, and the wrapper that plays them around its router."""

    def __init__(self, settings: FaultSettings | None = None, peer: str = "peer") -> None:
        self.settings = settings or FaultSettings()
        self.peer = peer
        # A str seed is hashed with SHA-512 by random: the same on every run and machine.
        self._rng = random.Random(f"{self.settings.seed}:{peer}")  # noqa: S311 - faults, not secrets
        self._lock = threading.Lock()
        self._scripted: deque[_Scripted] = deque()
        self.injected: Counter[str] = Counter()  # "error", "hang", "error after effect", "hang after effect"

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        method: str | None = None,
        route: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next `count` requests (of `method` and `route`, when given) with `status` (and `code`)."""
        with self._lock:
            self._scripted.extend(_Scripted(status, method, route, code) for _ in range(count))

    def decide(self, method: str, route: str | None = None) -> Decision:
        """The decision for the next request (scripted faults first, then the seeded draw)."""
        with self._lock:
            for scripted in self._scripted:
                if scripted.method in (None, method) and scripted.route in (None, route):
                    self._scripted.remove(scripted)
                    return Decision("error", scripted.status, code=scripted.code)
            if not self.settings.active:
                return NO_FAULT
            # Always three draws per request: the sequence of decisions depends on the seed and count only.
            pick, status_pick, effect_pick = self._rng.random(), self._rng.random(), self._rng.random()
        error, hang = self.settings.error, self.settings.hang
        if pick < error:
            kind = "error"
        elif pick < error + hang:
            kind = "hang"
        else:
            return NO_FAULT
        status = ERROR_STATUSES[min(int(status_pick * len(ERROR_STATUSES)), len(ERROR_STATUSES) - 1)]
        after = method.upper() in WRITE_METHODS and effect_pick < self.settings.after_effect
        return Decision(kind, status if kind == "error" else 0, after)

    def apply(
        self,
        request: Request,
        answer: Callable[[], Reply],
        *,
        route: str | None = None,
        error_reply: ErrorReply = json_error,
    ) -> Reply:
        """`answer()` played through the next decision: maybe not called, maybe its reply lost."""
        decision = self.decide(request.method, route)
        if decision.kind == "none":
            return answer()
        label = decision.kind + (" after effect" if decision.after_effect else "")
        with self._lock:
            self.injected[label] += 1
        if decision.after_effect:
            answer()  # the write takes effect; its answer never reaches the client
        if decision.kind == "hang":
            raise DropConnection(linger=self.settings.hang_seconds)
        return error_reply(decision.status, decision.code)

    def wrap(
        self,
        router: Dispatcher,
        *,
        exempt: Callable[[Request], bool] = lambda _request: False,
        error_reply: ErrorReply = json_error,
    ) -> FaultyRouter:
        """`router` with this plan in front of it (requests `exempt` says so pass untouched)."""
        return FaultyRouter(self, router, exempt, error_reply)


class FaultyRouter:
    """A router whose requests go through a fault plan first; what LocalHttpServer serves."""

    def __init__(self, plan: FaultPlan, inner: Dispatcher, exempt: Callable[[Request], bool], error: ErrorReply):
        self.plan = plan
        self._inner = inner
        self._exempt = exempt
        self._error = error

    def dispatch(self, request: Request) -> Reply:
        """The inner router's reply, or the fault the plan decides."""
        if self._exempt(request):
            return self._inner.dispatch(request)
        return self.plan.apply(request, lambda: self._inner.dispatch(request), error_reply=self._error)
