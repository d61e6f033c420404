"""`GET /local/status` of the local stack: depths per queue, and `idle` only when nothing is left to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.aws_local import Provisioned, QueueInfo
from sandbox.runner import SqsMapping
from sandbox.stack import LocalStack, StackOptions
from tests.conftest import ROOT


def queue(logical_id: str, dead_letter: str | None) -> QueueInfo:
    return QueueInfo(logical_id, f"http://sqs/{logical_id}", f"arn:{logical_id}", logical_id, False, dead_letter)


QUEUES = {
    "WorkQueue": queue("WorkQueue", "WorkDeadLetterQueue"),
    "WorkDeadLetterQueue": queue("WorkDeadLetterQueue", None),
    "UnconsumedQueue": queue("UnconsumedQueue", "UnconsumedDeadLetterQueue"),
    "UnconsumedDeadLetterQueue": queue("UnconsumedDeadLetterQueue", None),
}


class Sqs:
    """get_queue_attributes from a table of (visible, in flight) per queue URL."""

    def __init__(self, depths: dict[str, tuple[int, int]]) -> None:
        self.depths = depths

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:  # noqa: N803
        visible, in_flight = self.depths.get(QueueUrl.rsplit("/", 1)[1], (0, 0))
        attributes = {
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
        }
        return {"Attributes": {k: v for k, v in attributes.items() if k in AttributeNames}}


@dataclass
class State:
    open_batches: int = 0

    def count_open_tuimprenta_batches(self) -> int:
        return self.open_batches


@dataclass
class Pool:
    running: int = 0


@dataclass
class Poller:
    mapping: SqsMapping
    busy: int = 0


def stack_with(
    depths: dict[str, tuple[int, int]], open_batches: int = 0, running: int = 0, busy: int = 0
) -> LocalStack:
    """A stack that is not started, wired to stand-ins for its queues, state table, functions and pollers."""
    stack = LocalStack(StackOptions(root=ROOT, environ={}))
    stack.provisioned = Provisioned(queues=dict(QUEUES))
    stack._status_sqs = Sqs(depths)  # type: ignore[assignment]
    stack._state = State(open_batches)  # type: ignore[assignment]
    stack.pools = {"WorkerFunction": Pool(running)}  # type: ignore[dict-item]
    mapping = SqsMapping(queue=QUEUES["WorkQueue"], batch_size=10, report_failures=True, workers=2)
    stack.pollers = [Poller(mapping, busy)]  # type: ignore[list-item]
    return stack


def test_an_empty_stack_is_idle_and_reports_each_source_queue_with_its_dead_letters() -> None:
    status = stack_with({"WorkDeadLetterQueue": (2, 0), "UnconsumedDeadLetterQueue": (1, 0)}).status()
    assert status == {
        "idle": True,
        "queues": {
            "WorkQueue": {"visible": 0, "in_flight": 0, "dlq": 2},
            "UnconsumedQueue": {"visible": 0, "in_flight": 0, "dlq": 1},
        },
        "open_batches": 0,
    }


def test_messages_waiting_on_a_queue_nobody_consumes_leave_the_stack_idle() -> None:
    status = stack_with({"UnconsumedQueue": (3, 0)}).status()
    assert status["idle"] is True
    assert status["queues"]["UnconsumedQueue"] == {"visible": 3, "in_flight": 0, "dlq": 0}


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param(lambda: stack_with({"WorkQueue": (1, 0)}), id="visible-on-a-consumed-queue"),
        pytest.param(lambda: stack_with({"WorkQueue": (0, 1)}), id="in-flight"),
        pytest.param(lambda: stack_with({"UnconsumedQueue": (0, 1)}), id="in-flight-on-an-unconsumed-queue"),
        pytest.param(lambda: stack_with({}, open_batches=1), id="open-batch"),
        pytest.param(lambda: stack_with({}, running=1), id="running-invocation"),
        pytest.param(lambda: stack_with({}, busy=1), id="worker-holding-a-batch"),
    ],
)
def test_anything_left_to_do_means_not_idle(stack: Any) -> None:
    assert stack().status()["idle"] is False


def test_status_of_a_stack_that_is_not_running_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"^the stack is not running$"):
        LocalStack(StackOptions(root=ROOT, environ={})).status()
    half_started = stack_with({})
    half_started._state = None
    with pytest.raises(RuntimeError, match="not running"):
        half_started.status()


def test_a_stack_that_never_started_reads_its_settings_and_template_and_stops_as_a_no_op() -> None:
    # start() calls stop() when any step fails, so stop() must work on whatever was not started yet
    stack = LocalStack(StackOptions(root=ROOT, environ={"LOCAL_SCHEDULE_SECONDS": "2"}))
    assert stack.settings.schedule_seconds == 2
    assert "WebhookReceiverFunction" in [f.logical_id for f in stack.template.functions]
    stack.stop()
    assert (stack.peers, stack.pools, stack.pollers, stack.routes, stack.aws.endpoint) == ({}, {}, [], [], "")
    with pytest.raises(RuntimeError, match="not running"):
        _ = stack.url
    assert LocalStack().options.port == 3000


class Stoppable:
    """Records the order in which the stack stops its pieces."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name = name
        self.stopped = stopped
        self.endpoint = "http://127.0.0.1:5000"

    def stop(self) -> None:
        self.stopped.append(self.name)

    def close(self) -> None:
        self.stopped.append(self.name)


def test_stop_stops_every_piece_that_was_started() -> None:
    stopped: list[str] = []
    stack = stack_with({})
    stack.scheduler = Stoppable("scheduler", stopped)  # type: ignore[assignment]
    stack.pollers = [Stoppable(f"poller-{n}", stopped) for n in range(3)]  # type: ignore[misc]
    stack._server = Stoppable("gateway", stopped)  # type: ignore[assignment]
    stack.pools = {"F": Stoppable("pool", stopped)}  # type: ignore[dict-item]
    stack.peers = {"quipu": Stoppable("peer", stopped)}
    stack.aws = Stoppable("aws", stopped)  # type: ignore[assignment]
    stack.stop()
    assert stopped[0] == "scheduler"
    assert sorted(stopped[1:4]) == ["poller-0", "poller-1", "poller-2"]  # stopped together, in any order
    assert stopped[4:] == ["gateway", "pool", "peer", "aws"]
    assert (stack._server, stack.peers, stack.aws.endpoint) == (None, {}, "")
