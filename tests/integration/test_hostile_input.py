"""Hostile and broken input (issue 18), against real sockets and the receiver's real handler.

Credentials never go to a host a platform's answer names; ids never leave their path segment; the receiver
answers 401 or 400, never 500, to whatever headers and bodies it is sent.
"""

from __future__ import annotations

import decimal
import json
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import SalesInvoice
from invoice_bridge.buildnexion.signature import signature_header
from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.http import Deadline
from invoice_bridge.money import json_number
from invoice_bridge.tuimprenta.client import Batch, TuimprentaClient
from invoice_bridge.tuimprenta.webhook import compute_signature as tuimprenta_signature
from invoice_bridge.worker import BatchEdge, DeadLetters
from sandbox.lambda_host import LocalLambdaContext
from sandbox.runner import lambda_sqs_event
from tests.conftest import load_event
from tests.integration.conftest import TUIMPRENTA_SECRET, WEBHOOK_SECRETS, Aws, apigw_event, invoke

API_KEY = SecretStr("tui-key-never-elsewhere")
CSV = b"index,invoice_id,status,series,number,error_code,error_message\r\n0,inv_1,issued,TD-2025,1,,\r\n"


@dataclass
class Seen:
    """What one request brought to a recording server."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """A tiny HTTP server on its own address that records every request and answers from a table of paths."""

    host: str
    answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_address[1]}"

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append(Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, content_type, body = recorder.answers.get(self.path, (404, "application/json", b"{}"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Recorder]:
    recorder = Recorder("127.0.0.1")
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    # Another loopback address: another host as far as any URL comparison can tell.
    recorder = Recorder("127.0.0.2")
    recorder.start()
    yield recorder
    recorder.stop()


def batch_answer(result_url: str) -> tuple[int, str, bytes]:
    document = {"id": "batch_1", "type": "invoice.create", "status": "completed", "result_url": result_url}
    return 200, "application/json", json.dumps(document).encode()


# -- (1) the API key goes only to the API's own origin ------------------------------------------------------


def test_a_result_url_on_another_host_is_read_without_the_api_key(api: Recorder, elsewhere: Recorder) -> None:
    api.answers["/v1/batches/batch_1"] = batch_answer(f"{elsewhere.url}/presigned/x.csv")
    elsewhere.answers["/presigned/x.csv"] = (200, "text/csv", CSV)
    client = TuimprentaClient(f"{api.url}/v1", API_KEY)

    batch = client.batch("batch_1", Deadline(10))
    text = client.batch_result(batch, Deadline(10))

    assert text.startswith("index,invoice_id")
    assert api.seen[0].headers["authorization"] == f"Bearer {API_KEY.get_secret_value()}"
    assert [s.path for s in elsewhere.seen] == ["/presigned/x.csv"]
    assert "authorization" not in elsewhere.seen[0].headers
    assert API_KEY.get_secret_value() not in json.dumps([s.headers for s in elsewhere.seen])


def test_another_port_on_the_same_host_is_another_origin(api: Recorder) -> None:
    other = Recorder("127.0.0.1")
    other.start()
    try:
        other.answers["/x.csv"] = (200, "text/csv", CSV)
        client = TuimprentaClient(f"{api.url}/v1", API_KEY)
        client.batch_result(Batch(id="b", status="completed", result_url=f"{other.url}/x.csv"), Deadline(10))
        assert "authorization" not in other.seen[0].headers
    finally:
        other.stop()


def test_a_result_url_on_the_api_s_own_origin_carries_the_key(api: Recorder) -> None:
    api.answers["/v1/batches/batch_1/result.csv"] = (200, "text/csv", CSV)
    client = TuimprentaClient(f"{api.url}/v1", API_KEY)
    batch = Batch(id="batch_1", status="completed", result_url=f"{api.url}/v1/batches/batch_1/result.csv")
    client.batch_result(batch, Deadline(10))
    assert api.seen[0].headers["authorization"] == f"Bearer {API_KEY.get_secret_value()}"


def test_a_plain_http_result_url_under_an_https_base_is_never_called(elsewhere: Recorder) -> None:
    # The base is HTTPS (nothing listens there: the documented path is tried instead and fails to connect).
    elsewhere.answers["/x.csv"] = (200, "text/csv", CSV)
    client = TuimprentaClient("https://127.0.0.1:9/v1", API_KEY, max_attempts=1)
    batch = Batch(id="batch_1", status="completed", result_url=f"{elsewhere.url}/x.csv")
    with pytest.raises(PlatformError):
        client.batch_result(batch, Deadline(5))
    assert elsewhere.seen == []


def test_the_base_client_refuses_plain_http_under_an_https_base(elsewhere: Recorder) -> None:
    client = TuimprentaClient("https://127.0.0.1:9/v1", API_KEY, max_attempts=1)
    with pytest.raises(PlatformError) as caught:
        client.request("GET", f"{elsewhere.url}/x.csv", deadline=Deadline(5))
    assert caught.value.code == "insecure_url"
    assert not caught.value.retryable
    assert elsewhere.seen == []
    assert API_KEY.get_secret_value() not in str(caught.value)


# -- (7) ids stay inside their path segment -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("object_id", "expected_path"),
    [
        ("../webhooks", "/v1/invoices/..%2Fwebhooks"),
        ("inv_1?limit=100", "/v1/invoices/inv_1%3Flimit%3D100"),
        ("inv_1#frag", "/v1/invoices/inv_1%23frag"),
        ("inv_8f3k2", "/v1/invoices/inv_8f3k2"),
    ],
)
def test_an_id_never_reaches_another_path(api: Recorder, object_id: str, expected_path: str) -> None:
    client = BuildNexionClient(f"{api.url}/v1", SecretStr("bn-key"), max_attempts=1)
    with pytest.raises(PlatformError):
        client.invoice(object_id, Deadline(5))  # the recorder answers 404 to everything
    assert [s.path for s in api.seen] == [expected_path]


@pytest.mark.parametrize("object_id", ["..", "."])
def test_a_dot_id_is_never_sent(api: Recorder, object_id: str) -> None:
    # `%2E%2E` is decoded back to `..` by requests before it is sent: such an id is refused, not encoded.
    client = BuildNexionClient(f"{api.url}/v1", SecretStr("bn-key"), max_attempts=1)
    with pytest.raises(PermanentSyncError):
        client.invoice(object_id, Deadline(5))
    assert api.seen == []


# -- (5), (6) the receiver answers 401 or 400, never 500 -----------------------------------------------------


def fresh_event(**changes: Any) -> dict[str, Any]:
    event = load_event("buildnexion/01_invoice_created.json")
    return {**event, **changes}


def post_buildnexion(handler: ModuleType, body: bytes, header: str) -> tuple[int, dict[str, Any]]:
    return invoke(handler, apigw_event("/webhooks/buildnexion", body, {"BuildNexion-Signature": header}))


def post_tuimprenta(handler: ModuleType, body: bytes, header: str) -> tuple[int, dict[str, Any]]:
    return invoke(handler, apigw_event("/webhooks/tuimprenta", body, {"X-Tuimprenta-Signature": header}))


@pytest.mark.parametrize(
    "header",
    [
        "t=" + "9" * 4301 + ",v1=" + "0" * 64,  # int() refuses more than 4,300 digits
        "t=" + "9" * 13 + ",v1=" + "0" * 64,  # more than 12 digits
        "t=\u0661\u0662\u0663\u0664,v1=" + "0" * 64,  # Arabic-Indic digits pass str.isdigit
        "t=²,v1=" + "0" * 64,
        f"t={int(time.time())},v1=" + "é" * 64,  # compare_digest raises TypeError on non-ASCII text
        f"t={int(time.time())},v1=" + "0" * 63,
        f"t={int(time.time())},v1=" + "g" * 64,
        f"t={int(time.time())},v1=" + "0" * 65,
        f"t=+{int(time.time())},v1=" + "0" * 64,
        f"t= {int(time.time())},v1=" + "0" * 64,
        "t=" + "1" * 3000 + ",v1=" + "0" * 64 * 40,
    ],
)
def test_buildnexion_signature_headers_python_cannot_read_are_401(handler: ModuleType, header: str) -> None:
    body = json.dumps(fresh_event()).encode()
    assert post_buildnexion(handler, body, header) == (401, {"message": "Unauthorized"})


@pytest.mark.parametrize(
    "header",
    ["sha256=" + "é" * 64, "sha256=" + "0" * 63, "sha256=" + "z" * 64, "sha256=" + "\u0660" * 64, "sha256="],
)
def test_tuimprenta_signature_headers_python_cannot_read_are_401(handler: ModuleType, header: str) -> None:
    body = json.dumps(load_event("tuimprenta/batch_completed.json")).encode()
    assert post_tuimprenta(handler, body, header) == (401, {"message": "Unauthorized"})


def signed(body: bytes) -> str:
    return signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"id": "evt_1", "created": ' + b"9" * 5000 + b"}", "number longer than 64 characters"),
        (b'{"id": "evt_1", "n": 1.' + b"5" * 100 + b"}", "number longer than 64 characters"),
        (b'{"id": "evt_1", "deep": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested deeper than 64 levels"),
        (b'{"id": "evt_1", "deep": ' + b"[" * 65 + b"]" * 65 + b"}", "nested deeper than 64 levels"),
        (b'{"id": "evt_1", "created": NaN}', "NaN is not JSON"),
        (b'{"id": "evt_1", "created": -Infinity}', "-Infinity is not JSON"),
    ],
)
def test_signed_json_python_cannot_hold_is_400(handler: ModuleType, body: bytes, problem: str) -> None:
    status, answer = post_buildnexion(handler, body, signed(body))
    assert (status, answer["field"]) == (400, "body")
    assert problem in answer["message"]


def test_nesting_within_the_bound_is_still_read(handler: ModuleType, aws: Aws) -> None:
    event = fresh_event()
    event["data"]["object"]["extra"] = json.loads("[" * 50 + "]" * 50)
    body = json.dumps(event).encode()
    assert post_buildnexion(handler, body, signed(body))[0] == 200


# Headers: printable text and the characters that broke parsing (other scripts' digits, superscripts, letters).
ODD_CHARACTERS = "\u0661\u00b2\u00e9\u20ac\u00df\u0130\u00a0"
HEADER_TEXT = st.text(alphabet=st.sampled_from(string.printable.strip() + ODD_CHARACTERS + ",= "), max_size=300)
TIMESTAMPS = st.one_of(
    # around now: only a fresh timestamp gets as far as comparing signatures
    st.builds(lambda offset: str(int(time.time()) + offset), st.integers(min_value=-400, max_value=400)),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.text(alphabet="0123456789" + ODD_CHARACTERS, min_size=1, max_size=14),
    # every character passes str.isdigit; int() reads some of them and refuses the superscripts
    st.text(alphabet="0123456789\u00b2\u00b3\u0661\u0967", min_size=1, max_size=12),
    st.integers(min_value=4290, max_value=4400).map(lambda n: "9" * n),  # around int()'s 4,300-digit limit
    HEADER_TEXT,
)
SIGNATURES = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=62, max_size=66),
    st.text(alphabet="0123456789abcdef" + ODD_CHARACTERS, min_size=64, max_size=64),
    HEADER_TEXT,
)
STRUCTURED_HEADER = st.builds(lambda t, v: f"t={t},v1={v}", TIMESTAMPS, SIGNATURES)
TUIMPRENTA_HEADER = st.builds(lambda v: f"sha256={v}", SIGNATURES)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
)


def _text_of(value: Any) -> str:
    return json.dumps(value, default=str)


def _envelope(data: str, created: str) -> bytes:
    # `data` first: the parser meets the nesting before the number, so each is judged on its own.
    return ('{"id": "evt_fuzz", "type": "invoice.created", "data": ' + data + ', "created": ' + created + "}").encode()


BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: _text_of(v).encode()),
    # nesting around the bound, and far past the parser's recursion limit
    st.builds(
        lambda depth: _envelope("[" * depth + "]" * depth, "1"),
        st.one_of(st.integers(min_value=60, max_value=70), st.integers(min_value=900, max_value=60_000)),
    ),
    # numbers around the bound and past int()'s 4,300 digits, and the constants JSON does not have
    st.builds(
        lambda digits: _envelope("{}", "9" * digits),
        st.one_of(st.integers(min_value=60, max_value=70), st.integers(min_value=4000, max_value=6000)),
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "1." + "5" * 100]).map(
        lambda n: _envelope("{}", n)
    ),
)


# The structured headers are drawn twice as often: they are the ones that get past the first checks.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(HEADER_TEXT, STRUCTURED_HEADER, STRUCTURED_HEADER, TUIMPRENTA_HEADER), body=BODIES)
def test_fuzzed_unsigned_deliveries_are_401_on_both_routes(handler: ModuleType, header: str, body: bytes) -> None:
    assert post_buildnexion(handler, body, header)[0] == 401
    assert post_tuimprenta(handler, body, header)[0] == 401


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_fuzzed_signed_bodies_are_400_or_accepted_never_500(handler: ModuleType, body: bytes) -> None:
    # Signed correctly, so the body itself is what is judged: 2xx, or 400 (413 cannot happen at this size).
    assert post_buildnexion(handler, body, signed(body))[0] in {200, 400}
    assert post_tuimprenta(handler, body, tuimprenta_signature(TUIMPRENTA_SECRET, body))[0] in {200, 400}


# -- (9) a tuimprenta callback is refused once it is older than the tolerance --------------------------------


def tuimprenta_event(created_at: datetime) -> bytes:
    event = {**load_event("tuimprenta/batch_completed.json"), "created_at": created_at.isoformat()}
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (datetime.now(UTC) - datetime(2020, 1, 1, tzinfo=UTC), 401),
        (timedelta(hours=25, minutes=1), 401),
        (timedelta(minutes=-6), 401),  # from the future, beyond clock skew
        (timedelta(hours=24), 200),  # tuimprenta retries a delivery for up to 24 h
        (timedelta(minutes=-4), 200),
        (timedelta(0), 200),
    ],
)
def test_a_tuimprenta_callback_outside_the_tolerance_is_refused(
    handler: ModuleType, aws: Aws, age: timedelta, status: int
) -> None:
    body = tuimprenta_event(datetime.now(UTC) - age)
    assert post_tuimprenta(handler, body, tuimprenta_signature(TUIMPRENTA_SECRET, body))[0] == status
    items = aws.session.client("dynamodb").scan(TableName=aws.provisioned.tables["StateTable"])["Items"]
    assert len(items) == (1 if status == 200 else 0)


# -- (3) at the workers' SQS edge: a document that cannot be built is dead-lettered at once, with its reason ---


def test_the_worker_edge_dead_letters_an_unbuildable_document_at_once_and_processes_the_rest(aws: Aws) -> None:
    sqs = aws.session.client("sqs")
    queue = aws.provisioned.queues["QuipuQueue"]
    for index, object_id in enumerate(["inv_ok_1", "inv_decimal", "inv_model", "inv_amount", "inv_ok_2"]):
        event = load_event("buildnexion/01_invoice_created.json")
        event["id"] = f"evt_edge_{index}"
        event["data"]["object"]["id"] = object_id
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=json.dumps(event),
            MessageGroupId=object_id,
            MessageDeduplicationId=event["id"],
        )
    received = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(received) == 5
    handled: list[str] = []

    def handler(record: SQSRecord, deadline: Deadline) -> None:
        object_id = json.loads(record.body)["data"]["object"]["id"]
        if object_id == "inv_decimal":
            decimal.Context(prec=28).quantize(decimal.Decimal(10**30), decimal.Decimal("0.01"))
        if object_id == "inv_model":
            SalesInvoice.model_validate({"object": "sales_invoice"})
        if object_id == "inv_amount":
            json_number(decimal.Decimal("1e-9999"))
        handled.append(object_id)

    edge = BatchEdge(
        sqs=sqs,
        queue_url=queue.url,
        dead_letters=DeadLetters(sqs, aws.provisioned.queues["QuipuDeadLetterQueue"].url, "quipu"),
        destination="quipu",
        fifo=True,
        max_receive_count=10,
    )
    local = LocalLambdaContext("QuipuSyncFunction", 256, "req", int((time.time() + 60) * 1000))
    response = edge.handle(lambda_sqs_event(queue, received), cast(LambdaContext, local), handler)

    assert response == {"batchItemFailures": []}  # nothing goes back to wait for a visibility timeout
    assert handled == ["inv_ok_1", "inv_ok_2"]
    dead = aws.queue_messages("QuipuDeadLetterQueue")
    reasons = {
        json.loads(m["Body"])["data"]["object"]["id"]: (
            m["MessageAttributes"]["error_code"]["StringValue"],
            m["MessageAttributes"]["error_message"]["StringValue"],
        )
        for m in dead
    }
    assert {code for code, _ in reasons.values()} == {"unprocessable_document"}
    assert "InvalidOperation" in reasons["inv_decimal"][1]
    assert reasons["inv_model"][1].startswith("id: ")  # the field, never the input
    assert reasons["inv_amount"][1] == "AmountError: amount has more than 12 decimals"
    assert set(reasons) == {"inv_decimal", "inv_model", "inv_amount"}
