"""Plays Lambda's SQS event source mappings and EventBridge schedules for the local stack."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sandbox.aws_local import QueueInfo
from sandbox.cfn import ACCOUNT_ID, REGION
from sandbox.functions import FunctionError, FunctionPool, Invocation

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

MIN_WORKERS = 2
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class SqsMapping:
    """One `Type: SQS` event of a function."""

    queue: QueueInfo
    batch_size: int
    report_failures: bool
    workers: int


def lambda_sqs_event(queue: QueueInfo, messages: list[MessageTypeDef]) -> dict[str, Any]:
    """The event Lambda hands an SQS-triggered function."""
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes", {}))
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": attributes,
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def failed_message_ids(messages: list[MessageTypeDef], invocation: Invocation, report_failures: bool) -> set[str]:
    """Which messages go back to the queue, by Lambda's rules for partial batch responses."""
    every = {m["MessageId"] for m in messages}
    if not invocation.ok:
        return every
    if not report_failures:
        return set()
    result = invocation.result
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failures = result["batchItemFailures"]
    ids = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in every:
            # Lambda treats a malformed or unknown identifier as a failure of the whole batch.
            return every
        ids.add(identifier)
    return ids


class SqsPoller:
    """One event source mapping: several workers receive, invoke and delete what succeeded."""

    def __init__(
        self, mapping: SqsMapping, pool: FunctionPool, sqs: SQSClient, log: LogFn, retry_seconds: float = 1.0
    ) -> None:
        self.mapping = mapping
        self._pool = pool
        self._sqs = sqs
        self._log = log
        self._retry_seconds = retry_seconds  # pause after an SQS or instance failure before polling again
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._lock = threading.Lock()
        # SQS hands out a FIFO group to one receiver at a time; moto's check is not atomic across
        # concurrent ReceiveMessage calls, so the workers of one mapping receive one at a time.
        self._receive_lock = threading.Lock()
        # The SQS requests Lambda's pollers make for documents (billed to the account): receives that
        # brought messages and the deletes. Empty long polls depend on time, not on documents: not counted.
        self.sqs_requests: Counter[str] = Counter()
        self.sqs_units: Counter[str] = Counter()  # billed requests, by "sqs:fifo" / "sqs:standard"
        self._unit = "sqs:fifo" if mapping.queue.url.endswith(".fifo") else "sqs:standard"

    @property
    def busy(self) -> int:
        """Workers holding received messages."""
        with self._lock:
            return self._busy

    def start(self) -> None:
        """Start the workers."""
        for index in range(self.mapping.workers):
            thread = threading.Thread(
                target=self._work, name=f"sqs-{self.mapping.queue.logical_id}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def request_stop(self) -> None:
        """Ask the workers to stop, without waiting for them (a Ctrl-C that leaves the process next)."""
        self._stop.set()

    def stop(self) -> None:
        """Ask the workers to stop and wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except (BotoCoreError, ClientError) as exc:
                self._log(f"{self.mapping.queue.logical_id}: SQS error {exc}; retrying")
                self._stop.wait(self._retry_seconds)
            except FunctionError as exc:
                # As on Lambda, the batch stays on the queue and returns after its visibility timeout.
                self._log(f"{self.mapping.queue.logical_id}: {exc}; the batch will be received again")
                self._stop.wait(self._retry_seconds)

    def poll_once(self, wait_seconds: int = 0) -> int:
        """Receive one batch, invoke, delete the successes; return how many messages came."""
        queue = self.mapping.queue
        with self._receive_lock:
            messages = self._sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=min(self.mapping.batch_size, 10),
                WaitTimeSeconds=wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            self._busy += 1
            self.sqs_requests["sqs:ReceiveMessage"] += 1
            self.sqs_units[self._unit] += 1  # a batch of up to 10 small messages: under 64 KB
        try:
            invocation = self._pool.invoke(lambda_sqs_event(queue, messages))
            if not invocation.ok:
                self._log(f"{self._pool.spec.logical_id}: {invocation.error_type}: {invocation.error_message}")
            failed = failed_message_ids(messages, invocation, self.mapping.report_failures)
            done = [m for m in messages if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                chunk = done[start : start + 10]
                with self._lock:
                    self.sqs_requests["sqs:DeleteMessageBatch"] += 1
                    self.sqs_units[self._unit] += 1
                self._sqs.delete_message_batch(
                    QueueUrl=queue.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
                )
            # What failed stays invisible until its visibility timeout ends, then comes back (or goes
            # to the DLQ once maxReceiveCount is reached): SQS's rules, applied by the emulated queue.
            return len(messages)
        finally:
            with self._lock:
                self._busy -= 1


def scheduled_event(rule_name: str) -> dict[str, Any]:
    """The event EventBridge hands a scheduled function."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


class Scheduler:
    """Invokes each scheduled function every `interval` seconds (the local stand-in for `rate(...)`)."""

    def __init__(self, targets: list[tuple[str, FunctionPool]], interval: float, log: LogFn) -> None:
        self._targets = targets
        self._interval = interval
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        """Start ticking (the first tick comes after one interval)."""
        if not self._targets:
            return
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop ticking, without waiting for a tick under way."""
        self._stop.set()

    def stop(self) -> None:
        """Stop ticking."""
        self._stop.set()
        if self._thread:
            self._thread.join()

    def tick(self) -> None:
        """Invoke every scheduled function once."""
        for rule_name, pool in self._targets:
            try:
                invocation = pool.invoke(scheduled_event(rule_name))
            except FunctionError as exc:
                self._log(f"{rule_name}: {exc}; the next tick tries again")
                continue
            if not invocation.ok:
                self._log(f"{pool.spec.logical_id}: {invocation.error_type}: {invocation.error_message}")
        self.ticks += 1

    def _run(self) -> None:
        next_run = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            self.tick()
            next_run += self._interval
