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

Named kinds (`KINDS`): behaviours a platform's reference documents, each played by the peer that owns it at
its own decision point (`plan.draw(kind)`), e.g. `LOCAL_FAULTS=result_redirect=0.5,batch_404_once=0.2,seed=3`;
`all=0.1` sets every named kind at once. Each kind draws from its own RNG (seeded from the seed, the peer
and the kind), so turning one on never changes the decisions of another. Tests force a kind with
`plan.force(kind, count)`. `invoice-bridge local serve --faults list` prints the table.
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

# Named fault kinds: name -> (the peers that play it, what happens). Written from the platforms' references
# (../shared/seeds/); a peer ignores a kind it does not own.
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "status_401": (("quipu", "tuimprenta", "facturadirecta"), "a request refused 401 (credentials not accepted)"),
    "status_402": (("tuimprenta",), "an invoice rejected by the fiscal validation (402, or a failed row)"),
    "status_404": (("quipu", "tuimprenta", "facturadirecta"), "a read of an existing resource answered 404"),
    "status_409": (("tuimprenta",), "a write answered 409 (idempotency conflict)"),
    "status_422": (("quipu", "tuimprenta", "facturadirecta"), "a write refused 422 / INVALID_INPUT_DATA"),
    "status_429": (("quipu", "tuimprenta"), "a request refused 429 with the reference's rate-limit headers"),
    "token_revoked": (("quipu",), "the access token in use is revoked mid-run (401 until a new one is taken)"),
    "contact_204": (("quipu",), "a contact create answered 204 No Content (the contact is made)"),
    "contact_pages": (
        ("quipu",),
        "contact lists answered one contact a page (meta.pagination_info counts the pages)",
    ),
    "es_prefix": (("quipu",), "a contact's tax id stored with the ES prefix (ESB12345678)"),
    "provider_pages": (("facturadirecta",), "provider lists answered a page at a time (start/limit)"),
    "result_redirect": (("tuimprenta",), "the result download answered 302 to the API's own origin"),
    "result_elsewhere": (("tuimprenta",), "result_url names a presigned URL on another host"),
    "batch_404_once": (("tuimprenta",), "a batch read answered 404 once"),
    "row_missing": (("tuimprenta",), "a result CSV that leaves one member's row out"),
    "result_malformed": (("tuimprenta",), "a result file that cannot be read (bad bytes, wrong header)"),
}


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
    kinds: tuple[tuple[str, float], ...] = ()  # named kinds with a share above 0, sorted by name

    @classmethod
    def parse(cls, text: str | None) -> FaultSettings:
        """`error=0.1,hang=0.03,after_effect=0.5,seed=7[,hang_seconds=35][,<kind>=share][,all=share]`."""
        values: dict[str, float | int] = {}
        kinds: dict[str, float] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in (*_SHARES, "seed", "hang_seconds", "all", *KINDS):
                raise FaultSpecError(
                    f"{part.strip()!r}: expected error=, hang=, after_effect=, seed=, hang_seconds=, all= or a "
                    "named kind (see --faults list), e.g. error=0.1"
                )
            try:
                number = int(raw) if name == "seed" else float(raw)
            except ValueError:
                raise FaultSpecError(f"{name}={raw.strip()!r} is not a number") from None
            if name == "all" or name in KINDS:
                if not 0.0 <= number <= 1.0:
                    raise FaultSpecError(f"{name}={number} must be a share from 0 to 1")
                for kind in KINDS if name == "all" else (name,):
                    kinds[kind] = float(number)
            else:
                values[name] = number
        for name in _SHARES:
            share = float(values.get(name, 0.0))
            if not 0.0 <= share <= 1.0:
                raise FaultSpecError(f"{name}={share} must be a share from 0 to 1")
        if float(values.get("error", 0.0)) + float(values.get("hang", 0.0)) > 1.0:
            raise FaultSpecError("error + hang must not exceed 1")
        if not 0 < float(values.get("hang_seconds", DEFAULT_HANG_SECONDS)) <= 600:
            raise FaultSpecError("hang_seconds must be above 0 and at most 600")
        chosen = tuple(sorted((kind, share) for kind, share in kinds.items() if share > 0))
        return cls(**values, kinds=chosen)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        """Whether any fault is drawn at random."""
        return self.error > 0 or self.hang > 0

    def share(self, kind: str) -> float:
        """The share of a named kind (0 when off)."""
        if kind not in KINDS:
            raise KeyError(f"unknown fault kind {kind!r}")
        return dict(self.kinds).get(kind, 0.0)

    def plan(self, peer: str) -> FaultPlan:
        """The plan of one peer (its own RNG)."""
        return FaultPlan(self, peer)

    def spec(self) -> str:
        """Back to the `LOCAL_FAULTS` form."""
        named = "".join(f",{kind}={share}" for kind, share in self.kinds)
        return (
            f"error={self.error},hang={self.hang},after_effect={self.after_effect},seed={self.seed},"
            f"hang_seconds={self.hang_seconds}{named}"
        )


def describe_kinds() -> str:
    """The table `--faults list` prints: every share and named kind, its peers and what it does."""
    rows = [
        ("error", "all", "a request answered 500, 502 or 503"),
        ("hang", "all", "a request held until the client gives up, then dropped"),
        ("after_effect", "all", "of the writes picked for error or hang, the share whose effect is made first"),
    ]
    rows += [(kind, ", ".join(peers), text) for kind, (peers, text) in KINDS.items()]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{name:<{width}}  {peers}: {text}" for name, peers, text in rows]
    lines.append(f"{'all':<{width}}  sets every named kind above (not error, hang, after_effect) to one share")
    return "\n".join(lines)


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
        self.injected: Counter[str] = Counter()  # "error", "hang", "error after effect", "hang after effect", kinds
        self._kind_rngs: dict[str, random.Random] = {}
        self._forced: Counter[str] = Counter()
        # BuildNexion object id -> the reason a named kind refused it for good (chaos expects it dead-lettered).
        self.refused: dict[str, str] = {}

    def draw(self, kind: str) -> bool:
        """Whether the named `kind` happens at this occasion (forced ones first, then its own seeded draw)."""
        share = self.settings.share(kind)
        with self._lock:
            if self._forced[kind] > 0:
                self._forced[kind] -= 1
            else:
                if share <= 0:
                    return False
                rng = self._kind_rngs.setdefault(
                    kind,
                    random.Random(f"{self.settings.seed}:{self.peer}:{kind}"),  # noqa: S311 - faults, not secrets
                )
                if rng.random() >= share:
                    return False
            self.injected[kind] += 1
            return True

    def force(self, kind: str, count: int = 1) -> None:
        """Make the next `count` draws of `kind` happen, whatever its share."""
        self.settings.share(kind)  # an unknown kind fails here, not silently later
        with self._lock:
            self._forced[kind] += count

    def record_refusal(self, object_id: str, reason: str) -> None:
        """Note that a named kind refused the document of `object_id` for good (a permanent error)."""
        with self._lock:
            self.refused.setdefault(object_id, reason)

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
