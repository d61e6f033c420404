"""The local stack's pure rules: intrinsics, API Gateway v2 mapping, Lambda's partial batch semantics."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.aws_local import QueueInfo
from sandbox.cfn import Intrinsics, TemplateError
from sandbox.functions import FunctionError, Invocation
from sandbox.gateway import http_api_event, http_reply, route_to
from sandbox.httpserver import Request, Router
from sandbox.runner import SqsMapping, SqsPoller, failed_message_ids, lambda_sqs_event


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

    def receive_message(self, **_: Any) -> dict[str, Any]:
        self.receives += 1
        if self.receives >= self._stop_after:
            self.on_last_receive()
        if self.receives == 1 and self._error is not None:
            raise self._error
        return {"Messages": MESSAGES[:1]}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
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


def test_only_successes_are_deleted_in_chunks_of_ten() -> None:
    messages: list[Any] = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "b"} for i in range(12)]

    class Sqs:
        def __init__(self) -> None:
            self.deletes: list[list[str]] = []

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["MaxNumberOfMessages"] == 10
            return {"Messages": messages}

        def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:  # noqa: N803
            assert QueueUrl == QUEUE.url
            self.deletes.append([e["ReceiptHandle"] for e in Entries])

    class Pool:
        spec = type("Spec", (), {"logical_id": "F"})()

        def invoke(self, event: Any) -> Invocation:
            assert len(event["Records"]) == 12
            return Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m3"}]})

    sqs = Sqs()
    mapping = SqsMapping(queue=QUEUE, batch_size=20, report_failures=True, workers=1)
    poller = SqsPoller(mapping, Pool(), sqs, [].append)  # type: ignore[arg-type]
    assert poller.poll_once() == 12
    done = [f"r{i}" for i in range(12) if i != 3]
    assert sqs.deletes == [done[:10], done[10:]]


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
