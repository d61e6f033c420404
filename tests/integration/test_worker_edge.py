"""The workers' SQS edge on moto's queues from template.yaml: retries with backoff, FIFO order, dead-letters."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.errors import DependencyUnavailable, PermanentSyncError, PlatformError, RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.worker import BatchEdge, DeadLetters, backoff_seconds, parse_event
from sandbox.lambda_host import LocalLambdaContext
from sandbox.runner import lambda_sqs_event
from tests.conftest import load_event
from tests.integration.conftest import Aws


def context(seconds: float = 60) -> LambdaContext:
    return cast(LambdaContext, LocalLambdaContext("QuipuSyncFunction", 512, "req", int((time.time() + seconds) * 1000)))


def envelope(event_id: str, object_id: str) -> str:
    event = load_event("buildnexion/01_invoice_created.json")
    event["id"] = event_id
    event["data"]["object"]["id"] = object_id
    return json.dumps(event)


def enqueue_and_receive(aws: Aws, messages: list[tuple[str, str]]) -> dict[str, Any]:
    """Send (group, body) pairs to QuipuQueue, receive them as Lambda would, return the Lambda event."""
    sqs = aws.session.client("sqs")
    queue = aws.provisioned.queues["QuipuQueue"]
    for index, (group, body) in enumerate(messages):
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
            MessageAttributes={"event_id": {"DataType": "String", "StringValue": f"evt_{index}"}},
        )
    received: list[Any] = []
    while len(received) < len(messages):
        batch = sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        assert batch, "moto returned fewer messages than were sent"
        received.extend(batch)
    received.sort(key=lambda m: m["MessageAttributes"]["event_id"]["StringValue"])
    return lambda_sqs_event(queue, received)


def edge(aws: Aws) -> BatchEdge:
    sqs = aws.session.client("sqs")
    return BatchEdge(
        sqs=sqs,
        queue_url=aws.provisioned.queues["QuipuQueue"].url,
        dead_letters=DeadLetters(sqs, aws.provisioned.queues["QuipuDeadLetterQueue"].url, "quipu"),
        destination="quipu",
        fifo=True,
    )


def visible(aws: Aws, logical_id: str) -> int:
    attributes = aws.session.client("sqs").get_queue_attributes(
        QueueUrl=aws.provisioned.queues[logical_id].url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_one_bad_message_neither_redrives_its_neighbours_nor_is_overtaken(aws: Aws) -> None:
    # Given a batch: group A (a retryable failure, then a later event of A), group B (a permanent
    # failure), group C (fine)
    event = enqueue_and_receive(
        aws,
        [
            ("A", envelope("evt_a1", "A")),
            ("A", envelope("evt_a2", "A")),
            ("B", envelope("evt_b1", "B")),
            ("C", envelope("evt_c1", "C")),
        ],
    )
    handled: list[str] = []

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        parsed = parse_event(record)
        handled.append(parsed.id)
        if parsed.id == "evt_a1":
            raise PlatformError("quipu", "slow down", status=429, retryable=True, retry_after=40)
        if parsed.id == "evt_b1":
            raise PlatformError("quipu", "number: ya existe otra factura", status=422, code="422", retryable=False)

    # When the edge processes it
    response = edge(aws).handle(event, context(), handler)

    # Then A's first event failed and A's second was not even tried (order kept), B was dead-lettered
    # at once with Quipu's message, C succeeded
    ids = {r["messageId"]: json.loads(r["body"])["id"] for r in event["Records"]}
    assert sorted(ids[f["itemIdentifier"]] for f in response["batchItemFailures"]) == ["evt_a1", "evt_a2"]
    assert handled == ["evt_a1", "evt_b1", "evt_c1"]
    dead = aws.queue_messages("QuipuDeadLetterQueue")
    assert len(dead) == 1
    attributes = {k: v["StringValue"] for k, v in dead[0]["MessageAttributes"].items()}
    assert json.loads(dead[0]["Body"])["id"] == "evt_b1"
    assert attributes["error_message"] == "number: ya existe otra factura"
    assert attributes["error_code"] == "422"
    assert attributes["destination"] == "quipu"
    assert attributes["event_id"] == "evt_2"  # the original attributes travel with it
    assert dead[0]["Attributes"]["MessageGroupId"] == "B"
    # and both A messages wait out the 429's backoff (about 40 s) instead of returning at once
    assert visible(aws, "QuipuQueue") == 0
    sqs = aws.session.client("sqs")
    assert sqs.receive_message(QueueUrl=aws.provisioned.queues["QuipuQueue"].url).get("Messages", []) == []


def test_backoff_honours_retry_after_and_grows_with_receives() -> None:
    for _ in range(50):
        assert 40 <= backoff_seconds(1, 40) <= 41
        assert 4 <= backoff_seconds(1, None) <= 6
        assert 16 <= backoff_seconds(3, None) <= 24
        assert backoff_seconds(20, None) == 900
        assert backoff_seconds(1, 0) >= 1


def test_a_retried_message_comes_back_after_its_backoff(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise RetryLater("rate-limit slot not free", retry_after=0)

    response = edge(aws).handle(event, context(), handler)
    assert len(response["batchItemFailures"]) == 1
    # visibility was set to about one second (not the queue's 540 s): it is received again shortly
    sqs = aws.session.client("sqs")
    url = aws.provisioned.queues["QuipuQueue"].url
    deadline = time.monotonic() + 5
    again: list[Any] = []
    while not again and time.monotonic() < deadline:
        again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert again
    assert json.loads(again[0]["Body"])["id"] == "evt_a1"


def test_a_malformed_message_is_dead_lettered_not_retried(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", '{"id": "evt_y", "type": "invoice.created"}')])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        parse_event(record)

    response = edge(aws).handle(event, context(), handler)
    assert response["batchItemFailures"] == []
    (dead,) = aws.queue_messages("QuipuDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "malformed_message"
    assert dead["MessageAttributes"]["error_message"]["StringValue"] == "message body: created: Field required"


def test_an_unexpected_error_fails_the_record_for_the_redrive_policy(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise KeyError("a bug")

    response = edge(aws).handle(event, context(), handler)
    assert len(response["batchItemFailures"]) == 1
    assert visible(aws, "QuipuDeadLetterQueue") == 0  # not dead-lettered by us: maxReceiveCount decides


def test_an_aws_dependency_failure_is_retried(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise DependencyUnavailable("secret quipu", "throttled")

    response = edge(aws).handle(event, context(), handler)
    assert len(response["batchItemFailures"]) == 1
    assert visible(aws, "QuipuDeadLetterQueue") == 0


def test_a_permanent_sync_error_names_its_code(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise PermanentSyncError("provider prv_9 has no tax id", code="invalid_source")

    assert edge(aws).handle(event, context(), handler)["batchItemFailures"] == []
    (dead,) = aws.queue_messages("QuipuDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "invalid_source"
    assert dead["MessageAttributes"]["attempts"]["StringValue"] == "1"


def test_the_handler_gets_a_deadline_from_the_context(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])
    seen: list[float] = []
    edge(aws).handle(event, context(20), lambda record, deadline: seen.append(deadline.remaining()))
    assert 15 < seen[0] <= 17.1  # 20 s left, less the reserve for bookkeeping


@pytest.mark.parametrize("fifo", [False])
def test_standard_queues_use_the_plain_batch_processor(aws: Aws, fifo: bool) -> None:
    sqs = aws.session.client("sqs")
    queue = aws.provisioned.queues["TuimprentaQueue"]
    for index in range(3):
        sqs.send_message(QueueUrl=queue.url, MessageBody=envelope(f"evt_{index}", f"S{index}"))
    messages = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    event = lambda_sqs_event(queue, messages)
    dead_letters = DeadLetters(sqs, aws.provisioned.queues["TuimprentaDeadLetterQueue"].url, "tuimprenta")
    standard = BatchEdge(sqs=sqs, queue_url=queue.url, dead_letters=dead_letters, destination="tuimprenta", fifo=fifo)
    failing = json.loads(messages[0]["Body"])["id"]

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        if parse_event(record).id == failing:
            raise RetryLater("later", retry_after=60)

    response = standard.handle(event, context(), handler)
    # On a standard queue a failure does not hold back the others
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [messages[0]["MessageId"]]
