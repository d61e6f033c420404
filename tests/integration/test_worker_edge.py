"""The workers' SQS edge on moto's queues from template.yaml: retries with backoff, FIFO order, dead-letters."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.buildnexion.models import Invoice
from invoice_bridge.errors import DependencyUnavailable, PermanentSyncError, PlatformError, RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.worker import BatchEdge, DeadLetters, Failure, backoff_seconds, parse_event, parse_object
from sandbox.cfn import Template
from sandbox.lambda_host import LocalLambdaContext
from sandbox.runner import lambda_sqs_event
from tests.conftest import ROOT, emitted_metrics, load_event
from tests.integration.conftest import Aws

MAX_RECEIVE_COUNT = 10  # the queues' maxReceiveCount in template.yaml


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
        max_receive_count=MAX_RECEIVE_COUNT,
    )


def visible(aws: Aws, logical_id: str) -> int:
    attributes = aws.session.client("sqs").get_queue_attributes(
        QueueUrl=aws.provisioned.queues[logical_id].url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_one_bad_message_neither_redrives_its_neighbours_nor_is_overtaken(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
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
    # and counted: one retry (the skipped event of A is not a retry of its own), one dead letter
    counted = [(name, dimensions["destination"]) for name, dimensions in emitted_metrics(capsys.readouterr().out)]
    assert sorted(counted) == [("DocumentDeadLettered", "quipu"), ("DocumentRetried", "quipu")]
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


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        # the lowest jitter: Retry-After itself (rounded up), 0.8 x the exponential step, never under 1 s
        ("low", {40.2: 41, 0.0: 1, None: 4, "3rd": 16}),
        # the highest: up to a second past Retry-After, 1.2 x the exponential step
        ("high", {40.2: 42, 0.0: 1, None: 6, "3rd": 24}),
    ],
)
def test_backoff_jitter_only_ever_adds_to_retry_after(
    monkeypatch: pytest.MonkeyPatch, jitter: str, expected: dict[object, int]
) -> None:
    import random

    ranges: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        ranges.append((low, high))
        return low if jitter == "low" else high

    monkeypatch.setattr(random, "uniform", uniform)
    assert backoff_seconds(1, 40.2) == expected[40.2]
    assert backoff_seconds(1, 0) == expected[0.0]
    assert backoff_seconds(1, None) == expected[None]
    assert backoff_seconds(3, None) == expected["3rd"]
    assert ranges == [(0.0, 1.0), (0.0, 1.0), (0.8, 1.2), (0.8, 1.2)]


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


def test_an_object_its_destination_cannot_read_is_dead_lettered_as_a_malformed_message(aws: Aws) -> None:
    # Given a well-formed envelope whose invoice has no number
    event = load_event("buildnexion/01_invoice_created.json")
    del event["data"]["object"]["invoice_number"]
    received = enqueue_and_receive(aws, [("A", json.dumps(event))])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        parse_object(parse_event(record), Invoice, frozenset({"invoice.created"}))

    response = edge(aws).handle(received, context(), handler)
    # Then it is dead-lettered at once with the same reason code as a broken envelope, naming the field
    assert response["batchItemFailures"] == []
    (dead,) = aws.queue_messages("QuipuDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "malformed_message"
    assert dead["MessageAttributes"]["error_message"]["StringValue"].startswith(
        "message body: data.object.invoice_number:"
    )


def test_a_malformed_message_is_dead_lettered_not_retried(aws: Aws) -> None:
    event = enqueue_and_receive(aws, [("A", '{"id": "evt_y", "type": "invoice.created"}')])

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        parse_event(record)

    response = edge(aws).handle(event, context(), handler)
    assert response["batchItemFailures"] == []
    (dead,) = aws.queue_messages("QuipuDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "malformed_message"
    assert dead["MessageAttributes"]["error_message"]["StringValue"] == "message body: created: Field required"


@pytest.mark.parametrize(("receive", "dead_lettered"), [(MAX_RECEIVE_COUNT - 1, False), (MAX_RECEIVE_COUNT, True)])
def test_a_record_still_failing_on_its_last_receive_is_dead_lettered_with_its_reason(
    aws: Aws, receive: int, dead_lettered: bool
) -> None:
    # Given a record received for the n-th time, whose platform still answers 503
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(receive)

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise PlatformError("quipu", "Service unavailable", status=503, retryable=True, code="http_503")

    response = edge(aws).handle(event, context(), handler)
    # Then before its last receive it is retried; on its last one (SQS would move it with no reason) it is
    # dead-lettered by the worker, with the reason and the receives it took, and not retried
    assert (response["batchItemFailures"] == []) is dead_lettered
    letters = aws.queue_messages("QuipuDeadLetterQueue")
    if not dead_lettered:
        assert letters == []
        return
    (dead,) = letters
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["error_code"] == "http_503"
    assert attributes["error_message"] == f"Service unavailable (still failing after {MAX_RECEIVE_COUNT} receives)"
    assert attributes["attempts"] == str(MAX_RECEIVE_COUNT)


def test_a_reason_without_a_code_is_named_by_its_kind_on_the_last_receive(aws: Aws) -> None:
    # Given a record on its last receive whose work still has to wait, the error carrying no code of its own
    event = enqueue_and_receive(aws, [("A", envelope("evt_a1", "A"))])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(MAX_RECEIVE_COUNT)

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise RetryLater("the supplier's lease is held by another worker")

    edge(aws).handle(event, context(), handler)
    # Then the letter's code says what kind of failure it was
    (dead,) = aws.queue_messages("QuipuDeadLetterQueue")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "RetryLater"


def test_the_workers_give_up_on_the_receive_their_queue_would() -> None:
    # The worker's last receive is its queue's maxReceiveCount, as template.yaml sets both
    template = Template.load(ROOT / "template.yaml")
    for spec in template.functions:
        queue_ref = spec.environment.get("QUEUE_URL")
        if not isinstance(queue_ref, dict):
            continue
        queue = template.resources[queue_ref["Ref"]]
        redrive = queue["Properties"]["RedrivePolicy"]
        assert int(spec.environment["MAX_RECEIVE_COUNT"]) == int(redrive["maxReceiveCount"]), spec.logical_id


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


def test_a_dead_letter_keeps_the_dedupe_id_and_the_string_attributes(aws: Aws) -> None:
    # Given two messages refused for good: one whose record carries its deduplication id, one whose
    # record does not (the message id stands in), each with a string and a binary attribute
    sqs = aws.session.client("sqs")
    queue = aws.provisioned.queues["QuipuQueue"]
    for name in ("A", "B"):
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=envelope(f"evt_{name}", name),
            MessageGroupId=name,
            MessageDeduplicationId=f"dedupe-{name}",
            MessageAttributes={
                "event_id": {"DataType": "String", "StringValue": f"evt_{name}"},
                "trace": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
            },
        )
    event = lambda_sqs_event(queue, cast(Any, aws.queue_messages("QuipuQueue")))
    by_group = {r["attributes"]["MessageGroupId"]: r for r in event["Records"]}
    del by_group["B"]["attributes"]["MessageDeduplicationId"]
    by_group["A"]["attributes"]["ApproximateReceiveCount"] = "4"  # A was received three times before

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise PlatformError("quipu", "refused", status=422, retryable=False)  # a refusal without a code

    # When the edge dead-letters them
    assert edge(aws).handle(event, context(), handler)["batchItemFailures"] == []

    # Then each dead letter keeps its group and a deduplication id (retries of the dead-lettering are
    # deduplicated), and only the string attributes travel with it
    dead = {m["Attributes"]["MessageGroupId"]: m for m in aws.queue_messages("QuipuDeadLetterQueue")}
    assert dead["A"]["Attributes"]["MessageDeduplicationId"] == "dedupe-A"
    assert dead["B"]["Attributes"]["MessageDeduplicationId"] == by_group["B"]["messageId"]
    for name in ("A", "B"):
        assert dead[name]["MessageAttributes"]["event_id"]["StringValue"] == f"evt_{name}"
        assert "trace" not in dead[name]["MessageAttributes"]
        # the reason is the error's class when it names no code
        assert dead[name]["MessageAttributes"]["error_code"]["StringValue"] == "PlatformError"
    # and the attempts are the receive count
    assert dead["A"]["MessageAttributes"]["attempts"]["StringValue"] == "4"
    assert dead["B"]["MessageAttributes"]["attempts"]["StringValue"] == "1"


def test_dead_letters_fill_in_what_a_message_lacks_and_bound_what_is_too_long(aws: Aws) -> None:
    # Given a FIFO dead-letter queue and a failure with no group, an over-long deduplication id, no code,
    # an over-long message, no receive count and an empty attribute
    sqs = aws.session.client("sqs")
    dead_letters = DeadLetters(sqs, aws.provisioned.queues["QuipuDeadLetterQueue"].url, "quipu")
    before = datetime.now(UTC)
    dead_letters.send(
        "{}",
        {"event_id": "evt_1", "empty": ""},
        Failure("", "x" * 1500),
        group_id=None,
        dedupe_id="d" * 200,
        receive_count=0,
    )
    dead_letters.send("{}", {}, Failure("E1", ""), group_id="G", dedupe_id="second", receive_count=2)
    # and two without a deduplication id of their own: each deduplicated on its body, so both arrive
    for body in ('{"n": 1}', '{"n": 2}'):
        dead_letters.send(body, {}, Failure("E1", "m"), group_id="H", dedupe_id=None, receive_count=1)
    # Then each is on the queue, in a group, deduplicated on at most 128 characters, with bounded reasons
    messages = aws.queue_messages("QuipuDeadLetterQueue")
    by_group = {m["Attributes"]["MessageGroupId"]: m for m in messages}
    first, second = by_group["dead-letter"], by_group["G"]
    assert sorted(
        (m["Body"], m["Attributes"]["MessageDeduplicationId"])
        for m in messages
        if m["Attributes"]["MessageGroupId"] == "H"
    ) == [(body, hashlib.sha256(body.encode()).hexdigest()) for body in ('{"n": 1}', '{"n": 2}')]
    assert first["Attributes"]["MessageDeduplicationId"] == "d" * 128
    attributes = {name: value["StringValue"] for name, value in first["MessageAttributes"].items()}
    failed_at = datetime.fromisoformat(attributes.pop("failed_at"))
    assert attributes == {
        "event_id": "evt_1",
        "destination": "quipu",
        "error_code": "unknown",
        "error_message": "x" * 1000,
        "attempts": "1",
    }
    assert first["MessageAttributes"]["attempts"]["DataType"] == "Number"
    assert before <= failed_at <= datetime.now(UTC)
    assert second["Attributes"]["MessageDeduplicationId"] == "second"
    assert second["MessageAttributes"]["error_message"]["StringValue"] == "-"
    assert second["MessageAttributes"]["attempts"]["StringValue"] == "2"


def test_dead_letters_on_a_standard_queue_carry_no_group(aws: Aws) -> None:
    sqs = aws.session.client("sqs")
    dead_letters = DeadLetters(sqs, aws.provisioned.queues["TuimprentaDeadLetterQueue"].url, "tuimprenta")
    dead_letters.send("{}", {}, Failure("E1", "m"), group_id="G", dedupe_id="d", receive_count=1)
    (message,) = aws.queue_messages("TuimprentaDeadLetterQueue")
    assert "MessageGroupId" not in message["Attributes"]
    assert message["MessageAttributes"]["destination"]["StringValue"] == "tuimprenta"


class VisibilitySpy:
    """The SQS client, recording each change_message_visibility_batch call's entries."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.calls: list[list[dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def change_message_visibility_batch(self, **request: Any) -> Any:
        self.calls.append(request["Entries"])
        return self._sqs.change_message_visibility_batch(**request)


def test_a_fifo_group_waits_out_the_backoff_of_its_failed_record(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.setattr(random, "uniform", lambda low, high: low)  # no jitter: the delays are exact
    # Given groups A (429 asking 40 s, then a later event), B (a bug, then a later event), D (AWS throttled)
    event = enqueue_and_receive(
        aws,
        [
            ("A", envelope("evt_a1", "A")),
            ("A", envelope("evt_a2", "A")),
            ("B", envelope("evt_b1", "B")),
            ("B", envelope("evt_b2", "B")),
            ("D", envelope("evt_d1", "D")),
        ],
    )

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        event_id = parse_event(record).id
        if event_id == "evt_a1":
            raise RetryLater("slot not free", retry_after=40)
        if event_id == "evt_b1":
            raise KeyError("a bug")
        if event_id == "evt_d1":
            raise DependencyUnavailable("state table", "throttled")

    sqs = VisibilitySpy(aws.session.client("sqs"))
    url = aws.provisioned.queues["QuipuQueue"].url
    dead_letters = DeadLetters(sqs, aws.provisioned.queues["QuipuDeadLetterQueue"].url, "quipu")  # type: ignore[arg-type]
    fifo = BatchEdge(
        sqs=sqs,  # type: ignore[arg-type]
        queue_url=url,
        dead_letters=dead_letters,
        destination="quipu",
        fifo=True,
        max_receive_count=MAX_RECEIVE_COUNT,
    )
    fifo.handle(event, context(), handler)

    # Then A's skipped event waits as long as A's failed one, D waits its exponential backoff, and B (a
    # bug: no backoff asked) keeps the queue's own visibility timeout
    handles = {json.loads(r["body"])["id"]: r["receiptHandle"] for r in event["Records"]}
    (entries,) = sqs.calls
    assert {e["ReceiptHandle"]: e["VisibilityTimeout"] for e in entries} == {
        handles["evt_a1"]: 40,
        handles["evt_a2"]: 40,
        handles["evt_d1"]: 4,
    }
    assert len({e["Id"] for e in entries}) == 3


def test_more_than_ten_retried_records_all_get_their_backoff(aws: Aws) -> None:
    # Given a standard queue batch of twelve records, each asking its own wait
    sqs = VisibilitySpy(aws.session.client("sqs"))
    queue = aws.provisioned.queues["TuimprentaQueue"]
    for index in range(12):
        sqs.send_message(QueueUrl=queue.url, MessageBody=envelope(f"evt_{index}", f"S{index}"))
    messages: list[Any] = []
    while len(messages) < 12:
        messages += sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    event = lambda_sqs_event(queue, messages)
    dead_letters = DeadLetters(sqs, aws.provisioned.queues["TuimprentaDeadLetterQueue"].url, "tuimprenta")  # type: ignore[arg-type]
    standard = BatchEdge(
        sqs=sqs,  # type: ignore[arg-type]
        queue_url=queue.url,
        dead_letters=dead_letters,
        destination="tuimprenta",
        fifo=False,
        max_receive_count=MAX_RECEIVE_COUNT,
    )

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise RetryLater("later", retry_after=100 + int(parse_event(record).id.removeprefix("evt_")) * 10)

    standard.handle(event, context(), handler)
    # Then SQS gets them in batches of at most ten, and every record its own wait (plus under a second)
    assert [len(entries) for entries in sqs.calls] == [10, 2]
    waits = {e["ReceiptHandle"]: e["VisibilityTimeout"] for entries in sqs.calls for e in entries}
    for record in event["Records"]:
        asked = 100 + int(json.loads(record["body"])["id"].removeprefix("evt_")) * 10
        assert asked <= waits[record["receiptHandle"]] <= asked + 1


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
    standard = BatchEdge(
        sqs=sqs,
        queue_url=queue.url,
        dead_letters=dead_letters,
        destination="tuimprenta",
        fifo=fifo,
        max_receive_count=MAX_RECEIVE_COUNT,
    )
    failing = json.loads(messages[0]["Body"])["id"]

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        if parse_event(record).id == failing:
            raise RetryLater("later", retry_after=60)

    response = standard.handle(event, context(), handler)
    # On a standard queue a failure does not hold back the others
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [messages[0]["MessageId"]]


def test_backoffs_sqs_refuses_to_set_are_reported_in_a_warning(aws: Aws, log_stream: io.StringIO) -> None:
    # Given a record to retry whose receipt handle SQS no longer takes (its visibility lapsed meanwhile)
    event = enqueue_and_receive(aws, [("A", envelope("evt_l1", "A"))])
    event["Records"][0]["receiptHandle"] = "lapsed"

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        raise RetryLater("rate-limit slot not free", retry_after=3)

    # When the edge sets its backoff
    edge(aws).handle(event, context(), handler)
    # Then the refusal is told (the record comes back after the queue's own visibility timeout instead)
    warnings = [json.loads(line) for line in log_stream.getvalue().splitlines() if "backoff" in line]
    assert [(w["message"], w["failed"]) for w in warnings] == [("could not set the backoff of some records", 1)]
