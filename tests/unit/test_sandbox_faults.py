"""The sandbox peers' shared fault plan, in-process: seeded decisions, shares, and the after-effect case."""

from __future__ import annotations

from collections import Counter

import pytest

from sandbox.faults import ERROR_STATUSES, FaultPlan, FaultSettings, FaultSpecError
from sandbox.httpserver import DropConnection, Reply, Request, Router
from sandbox.settings import LocalSettings

SPEC = "error=0.1,hang=0.03,after_effect=0.5,seed=7"


def _request(method: str = "POST", path: str = "/things") -> Request:
    return Request(method, path, "", {}, b"{}", "127.0.0.1")


def _decisions(plan: FaultPlan, count: int, method: str = "POST") -> list[tuple[str, int, bool]]:
    return [(d.kind, d.status, d.after_effect) for d in (plan.decide(method) for _ in range(count))]


def test_the_spec_reads_as_the_issue_writes_it() -> None:
    settings = FaultSettings.parse(SPEC + ",hang_seconds=2")
    assert (settings.error, settings.hang, settings.after_effect, settings.seed) == (0.1, 0.03, 0.5, 7)
    assert settings.hang_seconds == 2
    assert FaultSettings.parse(settings.spec()) == settings
    assert not FaultSettings.parse("").active


@pytest.mark.parametrize(
    ("spec", "named"),
    [("error=2", "error"), ("boom=0.1", "boom"), ("seed=x", "seed"), ("error=0.7,hang=0.5", r"error \+ hang")],
)
def test_a_bad_spec_names_the_part(spec: str, named: str) -> None:
    with pytest.raises(FaultSpecError, match=named):
        FaultSettings.parse(spec)


def test_local_faults_is_validated_with_the_variable_named() -> None:
    from invoice_bridge.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="LOCAL_FAULTS"):
        LocalSettings.from_env({"LOCAL_FAULTS": "error=1.5"})
    assert LocalSettings.from_env({"LOCAL_FAULTS": SPEC}).fault_settings().seed == 7


def test_the_same_seed_gives_the_same_decisions_per_peer() -> None:
    settings = FaultSettings.parse(SPEC)
    first = _decisions(settings.plan("quipu"), 500)
    assert first == _decisions(settings.plan("quipu"), 500)
    # Each peer has its own RNG, and another seed another sequence.
    assert first != _decisions(settings.plan("tuimprenta"), 500)
    assert first != _decisions(FaultSettings.parse(SPEC.replace("seed=7", "seed=8")).plan("quipu"), 500)


def test_the_shares_are_what_the_spec_says() -> None:
    plan = FaultSettings.parse("error=0.2,hang=0.1,after_effect=0.5,seed=1").plan("facturadirecta")
    decisions = [plan.decide("POST") for _ in range(10_000)]
    kinds = Counter(d.kind for d in decisions)
    assert 1800 < kinds["error"] < 2200
    assert 850 < kinds["hang"] < 1150
    faulted = [d for d in decisions if d.kind != "none"]
    assert 0.45 < sum(d.after_effect for d in faulted) / len(faulted) < 0.55
    assert {d.status for d in decisions if d.kind == "error"} == set(ERROR_STATUSES)


def test_reads_never_fault_after_an_effect() -> None:
    plan = FaultSettings.parse("error=0.5,hang=0.5,after_effect=1,seed=3").plan("buildnexion")
    decisions = [plan.decide("GET") for _ in range(200)]
    assert all(d.kind != "none" and not d.after_effect for d in decisions)


class _Store:
    """A write endpoint whose effect can be observed."""

    def __init__(self) -> None:
        self.created = 0
        self.router = Router()
        self.router.add("POST", "/things", self._create)
        self.router.add("GET", "/things", lambda _r, _p: Reply.json(200, {"count": self.created}))

    def _create(self, _request: Request, _params: dict[str, str]) -> Reply:
        self.created += 1
        return Reply.json(201, {"id": self.created})


def test_an_error_before_the_effect_leaves_nothing_written() -> None:
    store = _Store()
    router = FaultSettings.parse("error=1,seed=1").plan("quipu").wrap(store.router)
    reply = router.dispatch(_request())
    assert reply.status in ERROR_STATUSES
    assert store.created == 0


def test_the_after_effect_share_really_makes_the_effect_and_loses_the_answer() -> None:
    store = _Store()
    plan = FaultSettings.parse("error=1,after_effect=1,seed=1").plan("quipu")
    reply = plan.wrap(store.router).dispatch(_request())
    assert reply.status in ERROR_STATUSES  # the client hears a 5xx ...
    assert store.created == 1  # ... yet the write happened
    assert plan.injected == Counter({"error after effect": 1})


def test_a_hang_drops_the_connection_after_the_effect_when_the_plan_says_so() -> None:
    store = _Store()
    plan = FaultSettings.parse("hang=1,after_effect=1,seed=1,hang_seconds=4").plan("facturadirecta")
    with pytest.raises(DropConnection) as raised:
        plan.wrap(store.router).dispatch(_request())
    assert raised.value.linger == 4
    assert store.created == 1
    before = FaultSettings.parse("hang=1,after_effect=0,seed=1").plan("facturadirecta")
    with pytest.raises(DropConnection):
        before.wrap(store.router).dispatch(_request())
    assert store.created == 1


def test_exempt_requests_and_a_plan_without_faults_pass_untouched() -> None:
    store = _Store()
    always = FaultSettings.parse("error=1,seed=1").plan("buildnexion")
    assert always.wrap(store.router, exempt=lambda r: r.method == "GET").dispatch(_request("GET")).status == 200
    assert FaultPlan().wrap(store.router).dispatch(_request()).status == 201


def test_scripted_faults_come_first_and_match_method_and_route() -> None:
    plan = FaultPlan(peer="tuimprenta")
    plan.fail_next(429, route="POST /batches")
    plan.fail_next(400, method="POST", code="INVALID_INPUT_DATA")
    assert plan.decide("GET", "GET /batches/{id}").kind == "none"
    decision = plan.decide("POST", "POST /batches")
    assert (decision.kind, decision.status) == ("error", 429)
    decision = plan.decide("POST", "POST /other")
    assert (decision.status, decision.code) == (400, "INVALID_INPUT_DATA")
    assert plan.decide("POST", "POST /batches").kind == "none"
