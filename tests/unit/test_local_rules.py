"""The local stack's pure rules: intrinsics, API Gateway v2 mapping, Lambda's partial batch semantics."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.aws_local import QueueInfo
from sandbox.cfn import ACCOUNT_ID, REGION, Intrinsics, TemplateError
from sandbox.functions import FunctionError, Invocation
from sandbox.gateway import http_api_event, http_reply, route_to
from sandbox.httpserver import Request, Router
from sandbox.runner import Scheduler, SqsMapping, SqsPoller, failed_message_ids, lambda_sqs_event, scheduled_event


def test_intrinsics_resolve_ref_getatt_sub_join_if() -> None:
    resolver = Intrinsics(
        {"Stage": "dev"}, {"Queue": "https://q"}, {("Queue", "Arn"): "arn:q"}, conditions={"IsDev": True}
    )
    value = {
        "a": {"Ref": "Queue"},
        "b": {"Fn::GetAtt": ["Queue", "Arn"]},
        "c": {"Fn::Sub": "${Stage}-${Queue.Arn}-${AWS::Region}"},
        "d": {"Fn::Join": ["/", [{"Ref": "Stage"}, "x"]]},
        "e": {"Fn::If": ["IsDev", "yes", "no"]},
        "f": {"Fn::Sub": ["${X}!", {"X": {"Ref": "Stage"}}]},
    }
    assert resolver.resolve(value) == {
        "a": "https://q",
        "b": "arn:q",
        "c": "dev-arn:q-eu-west-1",
        "d": "dev/x",
        "e": "yes",
        "f": "dev!",
    }


def test_unknown_ref_is_named() -> None:
    with pytest.raises(TemplateError, match="Ref Nope"):
        Intrinsics({}, {}, {}).resolve({"Ref": "Nope"})


def request(body: bytes, content_type: str = "application/json") -> Request:
    return Request(
        "POST", "/webhooks/buildnexion", "a=1&a=2", {"content-type": content_type, "X-Upper": "v"}, body, "127.0.0.1"
    )


def test_json_body_travels_as_text_and_binary_as_base64() -> None:
    text_event = http_api_event(request(b'{"a": 1}'), "POST /webhooks/buildnexion")
    assert text_event["body"] == '{"a": 1}'
    assert text_event["isBase64Encoded"] is False
    assert text_event["routeKey"] == "POST /webhooks/buildnexion"
    assert text_event["queryStringParameters"] == {"a": "1,2"}
    binary_event = http_api_event(request(b"\xff\x00", "application/octet-stream"), "POST /x")
    assert binary_event["isBase64Encoded"] is True
    assert base64.b64decode(binary_event["body"]) == b"\xff\x00"


def test_reply_follows_payload_format_2() -> None:
    reply = http_reply({"statusCode": 401, "headers": {"Content-Type": "application/json"}, "body": '{"m":1}'})
    assert (reply.status, reply.body) == (401, b'{"m":1}')
    inferred = http_reply({"ok": True})
    assert (inferred.status, json.loads(inferred.body)) == (200, {"ok": True})
    binary = http_reply({"statusCode": 200, "body": base64.b64encode(b"%PDF").decode(), "isBase64Encoded": True})
    assert binary.body == b"%PDF"


def test_router_answers_404_and_405() -> None:
    router = Router()
    router.add("POST", "/items/{id}", lambda req, params: http_reply({"id": params["id"]}))
    assert json.loads(router.dispatch(Request("POST", "/items/7", "", {}, b"", "")).body) == {"id": "7"}
    assert router.dispatch(Request("GET", "/items/7", "", {}, b"", "")).status == 405
    assert router.dispatch(Request("POST", "/other", "", {}, b"", "")).status == 404


QUEUE = QueueInfo("Q", "http://q", "arn:aws:sqs:eu-west-1:123456789012:q.fifo", "q.fifo", True, "DLQ")
MESSAGES: list[Any] = [
    {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "one", "Attributes": {"MessageGroupId": "inv_1"}},
    {"MessageId": "m2", "ReceiptHandle": "r2", "Body": "two", "Attributes": {"MessageGroupId": "inv_1"}},
]


def test_sqs_event_shape() -> None:
    record = lambda_sqs_event(QUEUE, MESSAGES)["Records"][0]
    assert record["messageId"] == "m1"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == QUEUE.arn
    assert record["attributes"]["MessageGroupId"] == "inv_1"


@pytest.mark.parametrize(
    ("invocation", "report", "failed"),
    [
        (Invocation(True, {"batchItemFailures": []}), True, set()),
        (Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m2"}]}), True, {"m2"}),
        (Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m2"}]}), False, set()),
        (Invocation(True, {"batchItemFailures": [{"itemIdentifier": "nope"}]}), True, {"m1", "m2"}),
        (Invocation(True, {"batchItemFailures": [{"itemIdentifier": ""}]}), True, {"m1", "m2"}),
        (Invocation(True, {"batchItemFailures": ["m2"]}), True, {"m1", "m2"}),  # not an object: whole batch
        (Invocation(True, None), True, set()),
        (Invocation(False, error_type="Boom"), True, {"m1", "m2"}),
    ],
)
def test_partial_batch_response_rules(invocation: Invocation, report: bool, failed: set[str]) -> None:
    assert failed_message_ids(MESSAGES, invocation, report) == failed


class _ScriptedSqs:
    """Hands out one message per receive, calls `on_last_receive` at receive `stop_after`; records deletes."""

    def __init__(self, stop_after: int, error: Exception | None = None) -> None:
        self.on_last_receive: Callable[[], None] = lambda: None
        self._stop_after = stop_after
        self._error = error
        self.receives = 0
        self.deleted: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {
            "QueueUrl": QUEUE.url,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 1,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        self.receives += 1
        if self.receives >= self._stop_after:
            self.on_last_receive()
        if self.receives == 1 and self._error is not None:
            raise self._error
        return {"Messages": MESSAGES[:1]}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        assert QueueUrl == QUEUE.url
        assert [entry["Id"] for entry in Entries] == [str(i) for i in range(len(Entries))]  # distinct, as SQS requires
        self.deleted.extend(entry["ReceiptHandle"] for entry in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


class _FlakyPool:
    """A function whose first `failures` instances cannot start; later invocations succeed."""

    spec = type("Spec", (), {"logical_id": "Flaky"})()

    def __init__(self, failures: int) -> None:
        self._failures = failures
        self.invocations = 0

    def invoke(self, event: Any) -> Invocation:
        self.invocations += 1
        if self.invocations <= self._failures:
            raise FunctionError("Flaky: the instance did not start")
        return Invocation(True, {"batchItemFailures": []})


def poller_for(pool: Any, sqs: _ScriptedSqs, logged: list[str]) -> SqsPoller:
    """A one-worker poller on QUEUE that pauses 0 s after a failure; `sqs` stops it at its last receive."""
    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=1)
    poller = SqsPoller(mapping, pool, sqs, logged.append, retry_seconds=0)  # type: ignore[arg-type]
    sqs.on_last_receive = poller.stop
    return poller


def test_start_runs_one_daemon_worker_per_configured_worker_until_stop() -> None:
    seen: set[str] = set()
    both_polling = threading.Event()

    class Sqs:
        """Long-polls an empty queue: waits its WaitTimeSeconds, or less once the poller is stopping."""

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            seen.add(threading.current_thread().name)
            if len(seen) == 2:
                both_polling.set()
            poller._stop.wait(kwargs["WaitTimeSeconds"])
            return {}

    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=2)
    poller = SqsPoller(mapping, _FlakyPool(0), Sqs(), [].append)  # type: ignore[arg-type]
    poller.start()
    assert both_polling.wait(10)
    workers = [t for t in threading.enumerate() if t.name.startswith("sqs-Q-")]
    assert sorted((t.name, t.daemon) for t in workers) == [("sqs-Q-0", True), ("sqs-Q-1", True)]
    poller.stop()
    assert seen == {"sqs-Q-0", "sqs-Q-1"}
    assert not any(t.is_alive() for t in workers)


def test_a_worker_keeps_polling_after_a_function_that_cannot_start() -> None:
    # Given a function whose first instance fails to start, and a queue that keeps handing out a message
    logged: list[str] = []
    pool, sqs = _FlakyPool(failures=1), _ScriptedSqs(stop_after=2)
    poller = poller_for(pool, sqs, logged)
    # When the worker runs (in this thread; the queue stops it at the second receive)
    poller._work()
    # Then the failure is logged, the message is left for SQS to return, and the worker polled again and delivered it
    assert logged == ["Q: Flaky: the instance did not start; the batch will be received again"]
    assert (sqs.receives, pool.invocations, sqs.deleted) == (2, 2, ["r1"])
    assert poller.busy == 0


def test_a_worker_keeps_polling_after_an_sqs_error() -> None:
    logged: list[str] = []
    error = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "ReceiveMessage")
    sqs = _ScriptedSqs(stop_after=2, error=error)
    poller = poller_for(_FlakyPool(failures=0), sqs, logged)
    poller._work()
    assert len(logged) == 1
    assert logged[0].startswith("Q: SQS error")
    assert (sqs.receives, sqs.deleted) == (2, ["r1"])


@pytest.mark.parametrize(
    ("queue", "unit"),
    [(QUEUE, "sqs:standard"), (QueueInfo("Q", "http://q.fifo", QUEUE.arn, "q.fifo", True, "DLQ"), "sqs:fifo")],
)
def test_only_successes_are_deleted_in_chunks_of_ten(queue: QueueInfo, unit: str) -> None:
    messages: list[Any] = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "b"} for i in range(12)]

    class Sqs:
        def __init__(self) -> None:
            self.deletes: list[list[str]] = []

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["MaxNumberOfMessages"] == 10
            assert kwargs["WaitTimeSeconds"] == 0  # a single poll does not block
            return {"Messages": messages}

        def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:  # noqa: N803
            assert QueueUrl == queue.url
            self.deletes.append([e["ReceiptHandle"] for e in Entries])

    class Pool:
        spec = type("Spec", (), {"logical_id": "F"})()

        def invoke(self, event: Any) -> Invocation:
            assert len(event["Records"]) == 12
            return Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m3"}]})

    sqs = Sqs()
    mapping = SqsMapping(queue=queue, batch_size=20, report_failures=True, workers=1)
    poller = SqsPoller(mapping, Pool(), sqs, [].append)  # type: ignore[arg-type]
    assert poller.poll_once() == 12
    done = [f"r{i}" for i in range(12) if i != 3]
    assert sqs.deletes == [done[:10], done[10:]]
    # What the cost bench bills: one receive and two delete batches, each one 64 KB unit of the queue's kind
    assert poller.sqs_requests == {"sqs:ReceiveMessage": 1, "sqs:DeleteMessageBatch": 2}
    assert poller.sqs_units == {unit: 3}
    # and it adds up over polls
    assert poller.poll_once() == 12
    assert poller.sqs_requests == {"sqs:ReceiveMessage": 2, "sqs:DeleteMessageBatch": 4}
    assert poller.sqs_units == {unit: 6}


def test_busy_counts_every_worker_holding_messages() -> None:
    # Given a function that, while it handles one batch, sees a second worker receive another
    seen: list[int] = []

    class Pool:
        spec = type("Spec", (), {"logical_id": "F"})()

        def invoke(self, event: Any) -> Invocation:
            seen.append(poller.busy)
            if len(seen) == 1:
                poller.poll_once()
            return Invocation(True, {"batchItemFailures": []})

    class Sqs:
        def receive_message(self, **_: Any) -> dict[str, Any]:
            return {"Messages": MESSAGES[:1]}

        def delete_message_batch(self, **_: Any) -> None:
            return None

    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=2)
    poller = SqsPoller(mapping, Pool(), Sqs(), [].append)  # type: ignore[arg-type]
    poller.poll_once()
    # Then busy said one, then two, and none once both were done
    assert (seen, poller.busy) == ([1, 2], 0)


class _Pool:
    """A pool whose invocation outcome the test chooses."""

    def __init__(self, outcome: Invocation | FunctionError) -> None:
        self._outcome = outcome
        self.events: list[Any] = []

    def invoke(self, event: Any) -> Invocation:
        self.events.append(event)
        if isinstance(self._outcome, FunctionError):
            raise self._outcome
        return self._outcome


@pytest.mark.parametrize(
    ("outcome", "status", "body"),
    [
        (Invocation(False, error_type="Boom", error_message="x"), 500, {"message": "Internal Server Error"}),
        (FunctionError("F: the instance did not start"), 503, {"message": "Service Unavailable"}),
        (Invocation(True, {"statusCode": 413, "body": '{"message": "Payload Too Large"}'}), 413, None),
    ],
)
def test_gateway_answers_like_api_gateway(outcome: Invocation | FunctionError, status: int, body: Any) -> None:
    pool = _Pool(outcome)
    reply = route_to(pool, "POST /webhooks/buildnexion")(request(b"{}"), {})  # type: ignore[arg-type]
    assert reply.status == status
    assert json.loads(reply.body) == (body or {"message": "Payload Too Large"})
    (event,) = pool.events
    assert event["routeKey"] == "POST /webhooks/buildnexion"


def test_http_api_event_is_the_whole_payload_format_2_event(far_from_utc: None) -> None:
    # Given a request with a textual body, a query string and a few headers
    req = Request(
        "POST",
        "/webhooks/buildnexion",
        "a=1&a=2&b=3",
        {"content-type": "application/json", "host": "127.0.0.1:3000", "user-agent": "curl/8"},
        b'{"a": 1}',
        "10.0.0.7",
    )
    before = int(time.time() * 1000)
    event = http_api_event(req, "POST /webhooks/buildnexion", api_id="api1")
    after = int(time.time() * 1000)
    # Then it is API Gateway's v2 event; only the request id and time vary
    context = event["requestContext"]
    assert uuid.UUID(context.pop("requestId")).version == 4
    epoch_ms = context.pop("timeEpoch")
    assert before <= epoch_ms <= after
    stamped = datetime.strptime(context.pop("time"), "%d/%b/%Y:%H:%M:%S +0000").replace(tzinfo=UTC)
    assert abs(stamped.timestamp() - epoch_ms / 1000) < 1  # the same instant, written in UTC
    assert event == {
        "version": "2.0",
        "routeKey": "POST /webhooks/buildnexion",
        "rawPath": "/webhooks/buildnexion",
        "rawQueryString": "a=1&a=2&b=3",
        "headers": {"content-type": "application/json", "host": "127.0.0.1:3000", "user-agent": "curl/8"},
        "queryStringParameters": {"a": "1,2", "b": "3"},
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "api1",
            "domainName": "127.0.0.1:3000",
            "domainPrefix": "127",
            "http": {
                "method": "POST",
                "path": "/webhooks/buildnexion",
                "protocol": "HTTP/1.1",
                "sourceIp": "10.0.0.7",
                "userAgent": "curl/8",
            },
            "routeKey": "POST /webhooks/buildnexion",
            "stage": "$default",
        },
        "isBase64Encoded": False,
        "body": '{"a": 1}',
    }


def test_http_api_event_without_body_query_or_optional_headers() -> None:
    event = http_api_event(Request("GET", "/x", "", {}, b"", "1.2.3.4"), "GET /x")
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    assert event["requestContext"]["http"]["userAgent"] == ""
    assert event["requestContext"]["apiId"] == "local"


@pytest.mark.parametrize(
    ("content_type", "body", "textual"),
    [
        ("text/plain; charset=utf-8", b"hola", True),
        ("application/xml", b"<a/>", True),
        ("application/x-www-form-urlencoded", b"a=1", True),
        ("application/json", b"\xff\xfe", False),  # declared text but not UTF-8: base64, as API Gateway does
        ("image/png", b"png", False),
    ],
)
def test_which_bodies_travel_as_text(content_type: str, body: bytes, textual: bool) -> None:
    event = http_api_event(request(body, content_type), "POST /x")
    assert event["isBase64Encoded"] is not textual
    assert event["body"] == (body.decode() if textual else base64.b64encode(body).decode())


def test_reply_headers_and_multi_value_headers() -> None:
    reply = http_reply(
        {
            "statusCode": "201",
            "headers": {"X-One": 1},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": None,
        }
    )
    assert (reply.status, reply.body, reply.headers) == (201, b"", {"X-One": "1", "Set-Cookie": "a=1,b=2"})
    text = http_reply("plain")
    assert (text.status, text.body, text.headers) == (200, b"plain", {"Content-Type": "application/json"})


def test_sqs_record_is_the_whole_lambda_record() -> None:
    message: Any = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "one",
        "MD5OfBody": "given",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {
            "event_id": {"DataType": "String", "StringValue": "evt_1"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00"},
        },
    }
    (record,) = lambda_sqs_event(QUEUE, [message])["Records"]
    assert record == {
        "messageId": "m1",
        "receiptHandle": "r1",
        "body": "one",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {
            "event_id": {
                "stringValue": "evt_1",
                "binaryValue": None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "blob": {
                "stringValue": None,
                "binaryValue": b"\x00",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": "given",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE.arn,
        "awsRegion": REGION,
    }
    (computed,) = lambda_sqs_event(QUEUE, [{"MessageId": "m", "ReceiptHandle": "r", "Body": "one"}])["Records"]
    assert computed["md5OfBody"] == hashlib.md5(b"one").hexdigest()  # noqa: S324 - SQS's own checksum
    assert (computed["attributes"], computed["messageAttributes"]) == ({}, {})


def test_scheduled_event_is_eventbridges(far_from_utc: None) -> None:
    event = scheduled_event("Ticker-Tick")
    assert uuid.UUID(event.pop("id")).version == 4
    stamped = datetime.strptime(event.pop("time"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(stamped.timestamp() - time.time()) < 2  # now, written in UTC
    assert event == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/Ticker-Tick"],
        "detail": {},
    }


def test_a_tick_invokes_every_target_and_survives_failures() -> None:
    spec = type("Spec", (), {"logical_id": "F"})()
    broken, failing, healthy = (
        _Pool(FunctionError("B: no start")),
        _Pool(Invocation(False, None, "Boom", "x")),
        _Pool(Invocation(True)),
    )
    failing.spec = healthy.spec = spec  # type: ignore[attr-defined]
    logged: list[str] = []
    scheduler = Scheduler([("b", broken), ("f", failing), ("h", healthy)], 60, logged.append)  # type: ignore[list-item]
    scheduler.tick()
    assert logged == ["b: B: no start; the next tick tries again", "F: Boom: x"]
    assert [len(p.events) for p in (broken, failing, healthy)] == [1, 1, 1]
    assert healthy.events[0]["resources"][0].endswith(":rule/h")
    assert scheduler.ticks == 1


def test_a_scheduler_ticks_every_interval_until_stopped() -> None:
    pool, logged = _Pool(Invocation(True)), list[str]()
    scheduler = Scheduler([("t", pool)], 0.01, logged.append)  # type: ignore[list-item]
    scheduler.start()
    # A daemon thread: a stack that dies without stop() must not keep the interpreter alive.
    assert [(t.name, t.daemon) for t in threading.enumerate() if t.name == "scheduler"] == [("scheduler", True)]
    deadline = time.monotonic() + 10
    while scheduler.ticks < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # poll interval of a bounded wait on a condition
    scheduler.stop()  # joins the thread: no tick can follow
    assert scheduler.ticks >= 3
    assert len(pool.events) == scheduler.ticks


def test_a_scheduler_without_targets_starts_no_thread() -> None:
    logged: list[str] = []
    scheduler = Scheduler([], 0.01, logged.append)
    scheduler.start()
    scheduler.stop()
    assert scheduler.ticks == 0


def test_an_empty_receive_invokes_nothing_and_a_failed_invocation_is_logged() -> None:
    class Sqs:
        def __init__(self, batches: list[list[Any]]) -> None:
            self.batches = batches

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["WaitTimeSeconds"] == 0  # poll_once() alone never long-polls
            batch = self.batches.pop(0)
            return {"Messages": batch} if batch else {}

        def delete_message_batch(self, **_: Any) -> None:
            raise AssertionError("nothing succeeded, nothing may be deleted")

    pool = _Pool(Invocation(False, error_type="Boom", error_message="bad"))
    pool.spec = type("Spec", (), {"logical_id": "F"})()  # type: ignore[attr-defined]
    logged: list[str] = []
    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=1)
    poller = SqsPoller(mapping, pool, Sqs([[], MESSAGES[:1]]), logged.append)  # type: ignore[arg-type]
    assert poller.poll_once() == 0
    assert pool.events == []
    assert poller.poll_once() == 1
    assert logged == ["F: Boom: bad"]
    assert poller.busy == 0


class _SteppedTime:
    """A monotonic clock that moves only when something waits on it (or a tick takes time)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now


class _StopAfter:
    """A stop event that is never set: each wait passes its whole timeout on the clock, until `waits` are done."""

    def __init__(self, clock: _SteppedTime, waits: int) -> None:
        self._clock = clock
        self._left = waits

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self._clock.waits.append(timeout)
        self._clock.now += timeout
        self._left -= 1
        return self._left <= 0


def test_a_scheduler_ticks_one_interval_after_start_then_on_its_beat_catching_up_after_a_slow_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a 60 s schedule whose second tick takes 70 s
    clock = _SteppedTime(1000.0)
    monkeypatch.setattr("sandbox.runner.time", clock)

    class SlowSecondTick(_Pool):
        def invoke(self, event: Any) -> Invocation:
            if len(self.events) == 1:
                clock.now += 70
            return super().invoke(event)

    pool = SlowSecondTick(Invocation(True))
    logged: list[str] = []
    scheduler = Scheduler([("t", pool)], 60, logged.append)  # type: ignore[list-item]
    scheduler._stop = _StopAfter(clock, waits=4)  # type: ignore[assignment]
    # When it runs (in this thread) until its fourth wait
    scheduler._run()
    # Then it waited a whole interval before the first tick, kept the beat, and ran the late tick at once
    assert clock.waits == [60, 60, 0, 50]
    assert scheduler.ticks == 3


def test_a_worker_pauses_one_second_after_a_failure_by_default_and_long_polls_one_second() -> None:
    waits: list[float] = []
    error = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "ReceiveMessage")
    sqs = _ScriptedSqs(stop_after=2, error=error)
    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=1)
    poller = SqsPoller(mapping, _FlakyPool(failures=0), sqs, [].append)  # type: ignore[arg-type]

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout if timeout is not None else -1.0)
            return self.is_set()

    poller._stop = Stop()
    sqs.on_last_receive = poller._stop.set
    poller._work()  # _ScriptedSqs asserts each receive long-polls WaitTimeSeconds=1
    assert waits == [1.0]
