"""The demo's pass rule under faults (sandbox.demo.judge), with a hand-made destination and BuildNexion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sandbox.buildnexion import BuildNexionPeer
from sandbox.chaos_check import Letter
from sandbox.demo import judge
from sandbox.faults import FaultPlan
from sandbox.peers import DemoCheck, DestinationPeer


class FakeBuildNexion:
    """Only what judge uses: the suspension of its faults, observable."""

    def __init__(self) -> None:
        self.suspended = False

    @contextmanager
    def faults_suspended(self) -> Iterator[None]:
        self.suspended = True
        try:
            yield
        finally:
            self.suspended = False


class FakeDestination:
    """A destination whose check says every document it is asked about arrived (and records the asking)."""

    def __init__(self, bn: FakeBuildNexion, failed: int = 0) -> None:
        self.calls: Counter[str] = Counter()
        self.faults = FaultPlan(peer="fake")
        self.asked: list[str] = []
        self.suspended_while_checking: bool | None = None
        self._bn = bn
        self._failed = failed

    def demo_check(self, buildnexion: Any, events: Sequence[Mapping[str, Any]]) -> DemoCheck:
        self.suspended_while_checking = self._bn.suspended
        self.asked = [str(e["data"]["object"]["id"]) for e in events]
        return DemoCheck(synced=len(set(self.asked)) - self._failed, failed=self._failed)


def _event(object_id: str) -> dict[str, Any]:
    return {"id": f"evt_{object_id}", "type": "purchase_order.created", "data": {"object": {"id": object_id}}}


SENT = [_event("po_1"), _event("po_2"), _event("po_3")]


def _judge(destination: FakeDestination, bn: FakeBuildNexion, letters: Sequence[Letter]) -> Any:
    return judge(cast(DestinationPeer, destination), cast(BuildNexionPeer, bn), SENT, letters)


def test_the_check_reads_buildnexion_with_its_faults_suspended() -> None:
    bn = FakeBuildNexion()
    destination = FakeDestination(bn)
    outcome = _judge(destination, bn, [])
    assert destination.suspended_while_checking is True
    assert bn.suspended is False  # and only while checking
    assert outcome.problems == []
    assert outcome.check.synced == 3


def test_a_document_refused_for_good_and_dead_lettered_is_reported_as_such_not_as_a_failure() -> None:
    bn = FakeBuildNexion()
    destination = FakeDestination(bn)
    destination.faults.record_refusal("po_2", "status_422: INVALID_INPUT_DATA")
    letters = [Letter("facturadirecta", "po_2", "INVALID_INPUT_DATA: El campo tax1 no es válido")]
    outcome = _judge(destination, bn, letters)
    assert destination.asked == ["po_1", "po_3"]  # the refused document is not expected at the destination
    assert outcome.problems == []
    assert outcome.refused == {"po_2": "status_422: INVALID_INPUT_DATA"}
    assert outcome.dead_lettered == 1
    assert outcome.notes == [
        "po_2: status_422: INVALID_INPUT_DATA; dead-lettered: INVALID_INPUT_DATA: El campo tax1 no es válido"
    ]


def test_a_refused_document_not_on_the_dead_letter_queue_fails_the_demo() -> None:
    bn = FakeBuildNexion()
    destination = FakeDestination(bn)
    destination.faults.record_refusal("po_2", "status_422")
    outcome = _judge(destination, bn, [])
    assert outcome.problems == ["po_2: refused for good (status_422) but not dead-lettered"]


def test_a_refused_document_dead_lettered_without_a_reason_fails_the_demo() -> None:
    bn = FakeBuildNexion()
    destination = FakeDestination(bn)
    destination.faults.record_refusal("po_2", "status_422")
    outcome = _judge(destination, bn, [Letter("facturadirecta", "po_2", "")])
    assert outcome.problems == ["po_2: refused for good (status_422); dead-lettered without a reason"]


def test_a_letter_no_refusal_explains_fails_the_demo_unless_the_check_expected_the_failure() -> None:
    bn = FakeBuildNexion()
    letters = [Letter("facturadirecta", "po_3", "")]  # e.g. retries ran out under injected 5xx
    outcome = _judge(FakeDestination(bn), bn, letters)
    assert outcome.problems == ["1 dead-lettered, 0 expected to fail", "dead-lettered po_3: no reason given"]
    expected_failure = _judge(FakeDestination(bn, failed=1), bn, [Letter("facturadirecta", "po_3", "no tax id")])
    assert expected_failure.problems == []


def test_refusals_of_documents_this_destination_was_not_sent_are_not_its_business() -> None:
    bn = FakeBuildNexion()
    destination = FakeDestination(bn)
    destination.faults.record_refusal("sin_9", "status_402")
    outcome = _judge(destination, bn, [])
    assert outcome.refused == {}
    assert outcome.problems == []
