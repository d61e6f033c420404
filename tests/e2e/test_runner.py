"""The local event-source runner and scheduler, on a small template of their own.

Checks Lambda's rules as the stack plays them: batch size, partial batch responses, the visibility
timeout, redrive to the dead-letter queue after maxReceiveCount, two concurrent workers, the schedule.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.conftest import StackLog, wait_for

pytestmark = pytest.mark.e2e

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Timeout: 30
    Environment:
      Variables:
        RECORD_DIR: {record_dir}
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      # Long enough that a loaded machine still deletes a good batch before it becomes visible again.
      VisibilityTimeout: 3
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn
        maxReceiveCount: 2
  WorkDeadLetterQueue:
    Type: AWS::SQS::Queue
  BarrierQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt BarrierDeadLetterQueue.Arn
        maxReceiveCount: 5
  BarrierDeadLetterQueue:
    Type: AWS::SQS::Queue
  StateTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}, {{AttributeName: sk, AttributeType: S}}]
      KeySchema: [{{AttributeName: pk, KeyType: HASH}}, {{AttributeName: sk, KeyType: RANGE}}]
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.work
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
  BarrierFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.barrier
      Events:
        Barrier:
          Type: SQS
          Properties:
            Queue: !GetAtt BarrierQueue.Arn
            BatchSize: 1
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.slow
      Timeout: 1
  TickerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.tick
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
"""

HANDLERS = """
import json, os, time, pathlib

RECORDS = pathlib.Path(os.environ["RECORD_DIR"])


def _append(name, entry):
    with open(RECORDS / name, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")


def work(event, context):
    records = event["Records"]
    _append("batches.jsonl", {"size": len(records)})
    failures = []
    for record in records:
        _append("receives.jsonl", {"id": record["messageId"], "body": record["body"], "at": time.time(),
                                   "count": int(record["attributes"]["ApproximateReceiveCount"])})
        if record["body"] == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def barrier(event, context):
    # Each invocation announces itself and waits for a partner: only concurrent invocations both meet.
    (record,) = event["Records"]
    arrivals = RECORDS / "arrivals"
    arrivals.mkdir(exist_ok=True)
    (arrivals / record["messageId"]).touch()
    deadline = time.monotonic() + 20
    while len(list(arrivals.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    _append("barrier.jsonl", {"met": len(list(arrivals.iterdir())) >= 2, "pid": os.getpid()})


def slow(event, context):
    _append("slow.jsonl", {"pid": os.getpid()})
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}


def tick(event, context):
    _append("ticks.jsonl", {"detail_type": event["detail-type"], "source": event["source"]})
"""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def stack_log() -> StackLog:
    return StackLog()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_log: StackLog) -> Iterator[tuple[LocalStack, Path]]:
    root = tmp_path_factory.mktemp("stack")
    records = root / "records"
    records.mkdir()
    (root / "template.yaml").write_text(TEMPLATE.format(record_dir=records))
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(textwrap.dedent(HANDLERS))
    options = StackOptions(root=root, port=0, environ={"LOCAL_SCHEDULE_SECONDS": "0.3"}, log_sink=stack_log.sink)
    with LocalStack(options) as running:
        # Two warm instances first: a cold start longer than the 2 s visibility timeout would let a message
        # come back while its first invocation still runs, which SQS allows but this test does not look at.
        warm_up = [
            threading.Thread(target=running.pools["WorkerFunction"].invoke, args=({"Records": []},)) for _ in range(2)
        ]
        for thread in warm_up:
            thread.start()
        for thread in warm_up:
            thread.join()
        (records / "batches.jsonl").unlink(missing_ok=True)
        yield running, records


def send(stack: LocalStack, queue: str, bodies: list[str]) -> None:
    sqs = stack.aws.sqs()
    for body in bodies:
        sqs.send_message(QueueUrl=stack.provisioned.queues[queue].url, MessageBody=body)


def test_batches_partial_failures_visibility_and_redrive(stack: tuple[LocalStack, Path]) -> None:
    running, records = stack
    # Given seven good messages and one that its handler always reports as failed
    send(running, "WorkQueue", [f"ok-{i}" for i in range(7)] + ["fail"])

    # When the runner has worked the queue down to nothing left to do
    def drained() -> dict[str, Any] | None:
        status = running.status()
        depth = status["queues"]["WorkQueue"]
        return status if depth["dlq"] == 1 and status["idle"] else None

    status = wait_for(drained, 60, "the failing message to reach the dead-letter queue")

    # Then no batch exceeded the batch size, every good message was handled once and deleted,
    receives = read_jsonl(records / "receives.jsonl")
    assert max(b["size"] for b in read_jsonl(records / "batches.jsonl")) <= 3
    good = [r["body"] for r in receives if r["body"] != "fail"]
    assert sorted(good) == sorted(f"ok-{i}" for i in range(7))
    assert status["queues"]["WorkQueue"] == {"visible": 0, "in_flight": 0, "dlq": 1}
    # the failed one came back only after its visibility timeout, and went to the DLQ after 2 receives.
    failed = [r for r in receives if r["body"] == "fail"]
    assert [r["count"] for r in failed] == [1, 2]
    assert failed[1]["at"] - failed[0]["at"] >= 2.9


def test_two_workers_invoke_concurrently(stack: tuple[LocalStack, Path]) -> None:
    running, records = stack
    send(running, "BarrierQueue", ["a", "b"])
    meetings = wait_for(
        lambda: r if len(r := read_jsonl(records / "barrier.jsonl")) == 2 else None, 60, "both invocations"
    )
    assert all(m["met"] for m in meetings)
    assert len({m["pid"] for m in meetings}) == 2  # two warm instances, as Lambda scales out


def test_scheduler_invokes_with_a_scheduled_event(stack: tuple[LocalStack, Path]) -> None:
    _, records = stack
    ticks = wait_for(
        lambda: t if len(t := read_jsonl(records / "ticks.jsonl")) >= 2 else None, 30, "two scheduled ticks"
    )
    assert ticks[0] == {"detail_type": "Scheduled Event", "source": "aws.events"}


def test_a_timed_out_invocation_kills_its_instance(stack: tuple[LocalStack, Path]) -> None:
    running, records = stack
    pool = running.pools["SlowFunction"]
    # Given an invocation that outlives the function's 1 s timeout
    timed_out = pool.invoke({"sleep": 5})
    # Then it fails as Lambda reports it, and its instance is gone (never reused with a stale reply pending)
    assert (timed_out.ok, timed_out.error_message) == (False, "Task timed out after 1 seconds")
    (first,) = read_jsonl(records / "slow.jsonl")
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)
    again = pool.invoke({})
    assert again.ok
    assert again.result["pid"] != first["pid"]
