"""The local stack's pure rules: intrinsics, API Gateway v2 mapping, Lambda's partial batch semantics."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sandbox.aws_local import QueueInfo
from sandbox.cfn import Intrinsics, TemplateError
from sandbox.functions import FunctionError, Invocation
from sandbox.gateway import http_api_event, http_reply
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


class _OneBatchSqs:
    """Hands out one message, then nothing; records how often it was asked."""

    def __init__(self) -> None:
        self.receives = 0

    def receive_message(self, **_: Any) -> dict[str, Any]:
        self.receives += 1
        return {"Messages": MESSAGES[:1]} if self.receives == 1 else {}


class _UnstartablePool:
    spec = type("Spec", (), {"logical_id": "Broken"})()

    def invoke(self, event: Any) -> Invocation:
        raise FunctionError("Broken: the instance did not start")


def test_a_worker_survives_a_function_that_cannot_start() -> None:
    # Given a function whose instances fail to start, and a queue with one message
    sqs = _OneBatchSqs()
    logged: list[str] = []
    mapping = SqsMapping(queue=QUEUE, batch_size=10, report_failures=True, workers=1)
    poller = SqsPoller(mapping, _UnstartablePool(), sqs, logged.append)  # type: ignore[arg-type]
    # When the worker loop runs until it has polled again after the failure
    original_wait = poller._stop.wait

    def stop_after_retry(timeout: float | None = None) -> bool:
        poller._stop.set()
        return original_wait(0)

    poller._stop.wait = stop_after_retry  # type: ignore[method-assign]
    poller._work()
    # Then the failure is reported, the message is left for SQS to return, and the worker waits instead of dying
    assert logged == ["Q: Broken: the instance did not start; the batch will be received again"]
    assert sqs.receives == 1
    assert poller.busy == 0
