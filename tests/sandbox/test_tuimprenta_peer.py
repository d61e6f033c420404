"""The sandbox tuimprenta against its reference (../shared/seeds/003_*.txt): what it refuses, in the reference's
error format; what it accepts; its listing; and every fault kind it plays, forced."""

from __future__ import annotations

import ast
import copy
import csv
import hashlib
import hmac
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.faults import FaultPlan, FaultSettings
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import ROOT, FakeClock

KEY = "tui_test_key"
SECRET = "tui_webhook_secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}
RESULT_HEADER = "index,invoice_id,status,series,number,error_code,error_message"

# The reference's own single-invoice example.
REFERENCE_INVOICE: dict[str, Any] = {
    "series": "TD-2025",
    "issue_date": "2025-11-07",
    "customer": {"name": "Inversiones ABC, C.A.", "tax_id": "J-123...", "email": "admin@abc.com"},
    "items": [
        {
            "sku": "CAT-TARJETAS-300G",
            "description": "Tarjetas 9x5 (100u)",
            "qty": 1,
            "unit_price": 12.0,
            "tax_rate": 0.16,
        }
    ],
    "currency": "USD",
    "send_email": True,
    "metadata": {"order_id": "TD-00123"},
}
# The reference's own batch example: no issue_date, currency or tax_rate.
REFERENCE_BATCH: dict[str, Any] = {
    "type": "invoice.create",
    "payload": [
        {
            "series": "TD-2025",
            "customer": {"name": "A", "tax_id": "J-1"},
            "items": [{"description": "Item A", "qty": 1, "unit_price": 10}],
        },
        {
            "series": "TD-2025",
            "customer": {"name": "B", "tax_id": "J-2"},
            "items": [{"description": "Item B", "qty": 2, "unit_price": 5}],
        },
    ],
    "callback_url": "https://tuapp.com/webhooks/tuimprenta",
}


class Sandbox:
    """A peer on a loopback port, its clock in the test's hands."""

    def __init__(self, peer: TuimprentaPeer, clock: FakeClock) -> None:
        self.peer = peer
        self.clock = clock

    @property
    def url(self) -> str:
        return self.peer.base_url

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(f"{self.url}{path}", data=data, headers=JSON if headers is None else headers, timeout=5)

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, headers=AUTH if headers is None else headers, timeout=5)

    def finished_batch(self, body: Any, key: str = "k-batch") -> dict[str, Any]:
        """Create a batch, let its processing time pass, read it finished."""
        created = self.post("/batches", body, {**JSON, "Idempotency-Key": key})
        assert created.status_code == 201, created.text
        self.clock.now += 60  # past processing_seconds, and a fresh rate-limit window
        answer = self.get(f"/batches/{created.json()['id']}")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        assert document["status"] in {"completed", "partial", "failed"}
        return document

    def result_rows(self, batch: dict[str, Any]) -> list[dict[str, str]]:
        answer = requests.get(batch["result_url"], headers=AUTH, timeout=5)
        assert answer.status_code == 200, answer.text
        text = answer.content.decode("utf-8")
        assert text.splitlines()[0] == RESULT_HEADER
        return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    clock = FakeClock(1000.0)
    peer = TuimprentaPeer(KEY, SECRET, processing_seconds=10, send_callbacks=False, clock=clock)
    peer.start()
    try:
        yield Sandbox(peer, clock)
    finally:
        peer.stop()


def invoice(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(REFERENCE_INVOICE)
    document.update(changes)
    return document


def batch_of(*invoices: dict[str, Any]) -> dict[str, Any]:
    return {"type": "invoice.create", "payload": list(invoices)}


def assert_error(answer: requests.Response, status: int, kind: str, code: str, field: str | None) -> None:
    """The reference's error format, all four members."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"type", "message", "field", "code"}
    assert (error["type"], error["code"], error["field"]) == (kind, code, field)
    assert isinstance(error["message"], str)
    assert error["message"]


def test_no_platform_module_of_the_sandbox_imports_the_product() -> None:
    tree = ast.parse((ROOT / "sandbox" / "tuimprenta.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.split(".")[0] == "invoice_bridge"]


# -- Bearer auth -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}],
    ids=["none", "wrong key", "no scheme", "basic"],
)
def test_a_request_without_the_bearer_key_is_refused_401(sandbox: Sandbox, headers: dict[str, str]) -> None:
    assert_error(sandbox.get("/ping", headers=headers), 401, "authentication_error", "E4010", None)
    assert sandbox.get("/ping").status_code == 200


# -- Content-Type and bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/invoices", "/batches"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_write_without_the_json_content_type_is_refused(
    sandbox: Sandbox, path: str, content_type: str | None
) -> None:
    headers = {**AUTH} if content_type is None else {**AUTH, "Content-Type": content_type}
    body = REFERENCE_BATCH if path == "/batches" else REFERENCE_INVOICE
    assert_error(sandbox.post(path, body, headers), 422, "validation_error", "E1007", "Content-Type")
    assert sandbox.peer.batches == {}
    assert sandbox.peer.invoices == {}


def test_the_json_content_type_may_carry_a_charset(sandbox: Sandbox) -> None:
    answer = sandbox.post("/invoices", REFERENCE_INVOICE, {**AUTH, "Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1,", b'{"series": NaN}', b'{"series": "A", "series": "B"}', b"\xff\xfe"],
    ids=["truncated", "truncated array", "NaN", "duplicate key", "not utf-8"],
)
@pytest.mark.parametrize("path", ["/invoices", "/batches"])
def test_a_body_that_is_not_json_is_refused(sandbox: Sandbox, path: str, body: bytes) -> None:
    assert_error(sandbox.post(path, body), 422, "validation_error", "E1000", None)


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"type": None}, "E1001", "type"),
        ({"type": "invoice.cancel"}, "E1003", "type"),
        ({"payload": None}, "E1001", "payload"),
        ({"payload": {"series": "TD-2025"}}, "E1002", "payload"),
        ({"payload": []}, "E1005", "payload"),
        ({"payload": ["not an invoice"]}, "E1002", "payload[0]"),
        ({"callback_url": "tuapp.com/hook"}, "E1003", "callback_url"),
        ({"callback_url": 7}, "E1003", "callback_url"),
        ({"priority": "high"}, "E1006", "priority"),
    ],
)
def test_a_batch_of_another_shape_is_refused(sandbox: Sandbox, change: dict[str, Any], code: str, field: str) -> None:
    body = {**REFERENCE_BATCH, **change}
    body = {k: v for k, v in body.items() if v is not None}
    assert_error(sandbox.post("/batches", body), 422, "validation_error", code, field)
    assert sandbox.peer.batches == {}


def test_a_batch_holds_at_most_1000_invoices(sandbox: Sandbox) -> None:
    one = REFERENCE_BATCH["payload"][0]
    assert_error(sandbox.post("/batches", batch_of(*[one] * 1001)), 422, "validation_error", "E1005", "payload")
    assert sandbox.post("/batches", batch_of(*[one] * 1000)).status_code == 201


REFERENCE_CSV = (
    b"series,issue_date,customer_name,customer_tax_id,customer_email,item_description,item_qty,item_unit_price,"
    b"tax_rate,currency,metadata_order_id\r\n"
    b"TD-2025,2025-11-07,Inversiones ABC,J-123...,admin@abc.com,Tarjetas 9x5,1,12.00,0.16,USD,TD-00123\r\n"
)


def post_form(sandbox: Sandbox, files: dict[str, Any], key: str = "k-form") -> requests.Response:
    return requests.post(f"{sandbox.url}/batches", headers={**AUTH, "Idempotency-Key": key}, files=files, timeout=5)


def test_a_multipart_batch_of_the_references_csv_is_issued(sandbox: Sandbox) -> None:
    created = post_form(sandbox, {"file": ("lote.csv", REFERENCE_CSV, "text/csv"), "type": (None, "invoice.create")})
    assert created.status_code == 201, created.text
    # The same content under another boundary is the same request for its key.
    again = post_form(sandbox, {"file": ("lote.csv", REFERENCE_CSV, "text/csv"), "type": (None, "invoice.create")})
    assert again.json()["id"] == created.json()["id"]
    sandbox.clock.now += 60
    batch = sandbox.get(f"/batches/{created.json()['id']}").json()
    (row,) = sandbox.result_rows(batch)
    assert row["status"] == "issued"
    document = sandbox.get(f"/invoices/{row['invoice_id']}").json()
    assert (document["metadata"], document["totals"]["total"]) == ({"order_id": "TD-00123"}, 13.92)
    assert document["customer"] == {"name": "Inversiones ABC", "tax_id": "J-123...", "email": "admin@abc.com"}


def test_a_multipart_batch_may_attach_json_invoices(sandbox: Sandbox) -> None:
    attached = json.dumps(REFERENCE_BATCH["payload"]).encode()
    created = post_form(sandbox, {"file": ("lote.json", attached, "application/json")})
    assert created.status_code == 201, created.text
    assert created.json()["counts"]["queued"] == 2


def test_a_multipart_csv_of_other_columns_is_refused(sandbox: Sandbox) -> None:
    answer = post_form(sandbox, {"file": ("lote.csv", b"series,qty\r\nTD-2025,1\r\n", "text/csv")})
    assert_error(answer, 422, "validation_error", "E1003", "file")
    assert_error(post_form(sandbox, {"type": (None, "invoice.create")}), 422, "validation_error", "E1001", "file")


def test_a_multipart_csv_cell_that_is_not_a_number_fails_its_row_naming_the_field(sandbox: Sandbox) -> None:
    bad = REFERENCE_CSV.replace(b",1,12.00,", b",uno,12.00,")
    created = post_form(sandbox, {"file": ("lote.csv", bad, "text/csv")})
    assert created.status_code == 201, created.text
    sandbox.clock.now += 60
    (row,) = sandbox.result_rows(sandbox.get(f"/batches/{created.json()['id']}").json())
    assert (row["status"], row["error_code"]) == ("failed", "E1002")
    assert row["error_message"].startswith("items[0].qty: ")


# -- invoice fields --------------------------------------------------------------------------------------------


def _item(**changes: Any) -> list[dict[str, Any]]:
    return [{**REFERENCE_INVOICE["items"][0], **changes}]


def _without(document: dict[str, Any], *path: str) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    target = copied
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return copied


# (invoice, error code, field) for each rule an invoice breaks.
INVALID_INVOICES: list[tuple[str, dict[str, Any], str, str]] = [
    ("series missing", _without(REFERENCE_INVOICE, "series"), "E1001", "series"),
    ("series blank", invoice(series="  "), "E1001", "series"),
    ("series a number", invoice(series=2025), "E1002", "series"),
    ("issue_date not a day", invoice(issue_date="2025-02-30"), "E1003", "issue_date"),
    ("issue_date compact", invoice(issue_date="20251107"), "E1003", "issue_date"),
    ("issue_date a timestamp", invoice(issue_date="2025-11-07T00:00:00Z"), "E1003", "issue_date"),
    ("customer missing", _without(REFERENCE_INVOICE, "customer"), "E1001", "customer"),
    ("customer a string", invoice(customer="ABC"), "E1002", "customer"),
    ("customer name missing", _without(REFERENCE_INVOICE, "customer", "name"), "E1001", "customer.name"),
    ("tax_id missing", _without(REFERENCE_INVOICE, "customer", "tax_id"), "E1001", "customer.tax_id"),
    ("tax_id blank", invoice(customer={"name": "A", "tax_id": " "}), "E1001", "customer.tax_id"),
    ("tax_id a number", invoice(customer={"name": "A", "tax_id": 123}), "E1002", "customer.tax_id"),
    ("email not an address", invoice(customer={"name": "A", "tax_id": "J-1", "email": "x"}), "E1003", "customer.email"),
    ("customer field unknown", invoice(customer={"name": "A", "tax_id": "J-1", "rif": "J"}), "E1006", "customer.rif"),
    ("items missing", _without(REFERENCE_INVOICE, "items"), "E1001", "items"),
    ("items empty", invoice(items=[]), "E1001", "items"),
    ("items an object", invoice(items={"qty": 1}), "E1002", "items"),
    ("description missing", invoice(items=[{"qty": 1, "unit_price": 1}]), "E1001", "items[0].description"),
    ("qty missing", invoice(items=[{"description": "d", "unit_price": 1}]), "E1001", "items[0].qty"),
    ("qty zero", invoice(items=_item(qty=0)), "E1003", "items[0].qty"),
    ("qty negative", invoice(items=_item(qty=-1)), "E1003", "items[0].qty"),
    ("qty a string", invoice(items=_item(qty="1")), "E1002", "items[0].qty"),
    ("qty a boolean", invoice(items=_item(qty=True)), "E1002", "items[0].qty"),
    ("unit_price a string", invoice(items=_item(unit_price="12.00")), "E1002", "items[0].unit_price"),
    ("unit_price null", invoice(items=_item(unit_price=None)), "E1001", "items[0].unit_price"),
    ("unit_price 7 decimals in USD", invoice(items=_item(unit_price=12.0000001)), "E1004", "items[0].unit_price"),
    (
        "unit_price 5 decimals in JPY",
        invoice(currency="JPY", items=_item(unit_price=1.00001)),
        "E1004",
        "items[0].unit_price",
    ),
    ("tax_rate a percent", invoice(items=_item(tax_rate=16)), "E1003", "items[0].tax_rate"),
    ("tax_rate negative", invoice(items=_item(tax_rate=-0.1)), "E1003", "items[0].tax_rate"),
    ("tax_rate a string", invoice(items=_item(tax_rate="0.16")), "E1002", "items[0].tax_rate"),
    ("item field unknown", invoice(items=_item(discount=1)), "E1006", "items[0].discount"),
    ("currency lower case", invoice(currency="usd"), "E1003", "currency"),
    ("currency two letters", invoice(currency="US"), "E1003", "currency"),
    ("currency a number", invoice(currency=840), "E1002", "currency"),
    ("send_email a string", invoice(send_email="yes"), "E1002", "send_email"),
    ("metadata a list", invoice(metadata=["x"]), "E1002", "metadata"),
    ("metadata value a number", invoice(metadata={"buildnexion_id": 9}), "E1002", "metadata.buildnexion_id"),
    ("a misspelt field", {**invoice(), "metdata": {}}, "E1006", "metdata"),
    ("a field of the platform's own", invoice(totals={"total": 1}), "E1006", "totals"),
]


@pytest.mark.parametrize(
    ("document", "code", "field"), [c[1:] for c in INVALID_INVOICES], ids=[c[0] for c in INVALID_INVOICES]
)
def test_a_single_invoice_that_breaks_a_rule_is_refused_422_naming_the_field(
    sandbox: Sandbox, document: dict[str, Any], code: str, field: str
) -> None:
    answer = sandbox.post("/invoices", document, {**JSON, "Idempotency-Key": "k1"})
    assert_error(answer, 422, "validation_error", code, field)
    assert sandbox.peer.invoices == {}


def test_every_broken_rule_in_a_batch_is_its_invoices_failed_row_naming_the_field(sandbox: Sandbox) -> None:
    valid = REFERENCE_BATCH["payload"][0]
    body = batch_of(valid, *[c[1] for c in INVALID_INVOICES])
    batch = sandbox.finished_batch(body)
    assert batch["status"] == "partial"
    assert batch["counts"] == {"queued": len(INVALID_INVOICES) + 1, "processed": 1, "failed": len(INVALID_INVOICES)}
    rows = {int(r["index"]): r for r in sandbox.result_rows(batch)}
    assert rows[0]["status"] == "issued"
    for index, (_name, _document, code, field) in enumerate(INVALID_INVOICES, start=1):
        assert (rows[index]["status"], rows[index]["error_code"], rows[index]["invoice_id"]) == ("failed", code, "")
        assert rows[index]["error_message"].startswith(f"{field}: ")
    assert len(sandbox.peer.invoices) == 1


def test_the_references_own_invoice_is_issued_with_its_totals_links_and_metadata(sandbox: Sandbox) -> None:
    answer = sandbox.post("/invoices", REFERENCE_INVOICE, {**JSON, "Idempotency-Key": "k1"})
    assert answer.status_code == 201, answer.text
    document = json.loads(answer.content, parse_float=Decimal)
    assert document["totals"] == {"subtotal": Decimal("12.00"), "tax": Decimal("1.92"), "total": Decimal("13.92")}
    assert b'"unit_price":12.0' in answer.content  # the digits sent, back as sent
    assert (document["series"], document["number"], document["status"]) == ("TD-2025", 1, "issued")
    assert document["metadata"] == {"order_id": "TD-00123"}
    assert document["links"]["pdf"].endswith(f"/invoices/{document['id']}/pdf")
    assert datetime.strptime(document["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert sandbox.get(f"/invoices/{document['id']}").json()["id"] == document["id"]
    assert sandbox.get(f"/invoices/{document['id']}/pdf").content.startswith(b"%PDF")
    assert b"<total>13.92</total>" in sandbox.get(f"/invoices/{document['id']}/xml").content


@pytest.mark.parametrize(
    ("currency", "price"),
    # A negative price (a discount line) too: the reference sets no sign on unit_price.
    [("USD", "9.038"), ("USD", "12.00"), ("USD", "0.123456"), ("JPY", "1200"), ("KWD", "1.2345678"), ("USD", "-5.00")],
)
def test_a_unit_price_with_the_currencys_decimals_and_up_to_four_more_is_accepted(
    sandbox: Sandbox, currency: str, price: str
) -> None:
    # Sub-cent unit prices (DESIGN.md's unit_amount_decimal) leave with exactly their decimals: 903.8 cents is 9.038.
    body = json.dumps(invoice(currency=currency, items=[])).replace(
        '"items": []', f'"items": [{{"description": "d", "qty": 2, "unit_price": {price}}}]'
    )
    answer = sandbox.post("/invoices", body.encode(), {**JSON, "Idempotency-Key": f"k-{currency}-{price}"})
    assert answer.status_code == 201, answer.text
    (issued,) = sandbox.peer.invoices.values()
    assert str(issued.document["items"][0]["unit_price"]) == price


def test_the_references_own_batch_is_issued_whole(sandbox: Sandbox) -> None:
    batch = sandbox.finished_batch(REFERENCE_BATCH)
    assert batch["status"] == "completed"
    rows = sandbox.result_rows(batch)
    assert sorted((r["index"], r["status"], r["series"], r["number"]) for r in rows) == [
        ("0", "issued", "TD-2025", "1"),
        ("1", "issued", "TD-2025", "2"),
    ]
    for row in rows:
        assert sandbox.get(f"/invoices/{row['invoice_id']}").json()["currency"] == "USD"


# -- Idempotency-Key -------------------------------------------------------------------------------------------


def test_the_same_key_and_body_give_the_same_batch_and_another_body_is_a_409(sandbox: Sandbox) -> None:
    headers = {**JSON, "Idempotency-Key": "k-same"}
    first = sandbox.post("/batches", REFERENCE_BATCH, headers)
    again = sandbox.post("/batches", REFERENCE_BATCH, headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    assert len(sandbox.peer.batches) == 1
    other = {**REFERENCE_BATCH, "payload": REFERENCE_BATCH["payload"][:1]}
    assert_error(sandbox.post("/batches", other, headers), 409, "idempotency_error", "E4090", "Idempotency-Key")
    assert len(sandbox.peer.batches) == 1


def test_the_same_key_and_body_give_the_same_invoice(sandbox: Sandbox) -> None:
    headers = {**JSON, "Idempotency-Key": "k-inv"}
    ids = {sandbox.post("/invoices", REFERENCE_INVOICE, headers).json()["id"] for _ in range(3)}
    assert len(ids) == 1
    assert len(sandbox.peer.invoices) == 1
    assert_error(
        sandbox.post("/invoices", invoice(series="OTHER"), headers),
        409,
        "idempotency_error",
        "E4090",
        "Idempotency-Key",
    )


def test_a_write_without_a_key_is_served_as_the_reference_shows_and_counted(sandbox: Sandbox) -> None:
    # The reference's batch example sends no Idempotency-Key: served, and counted so a test can see it.
    assert sandbox.post("/batches", REFERENCE_BATCH).status_code == 201
    assert sandbox.peer.unkeyed_writes["POST /batches"] == 1


def test_a_cancel_repeated_with_its_key_is_the_same_answer_and_without_it_a_409(sandbox: Sandbox) -> None:
    created = sandbox.post("/invoices", REFERENCE_INVOICE, {**JSON, "Idempotency-Key": "k1"}).json()
    # The reference cancels with curl -d and no Content-Type.
    headers = {**AUTH, "Idempotency-Key": "c1"}
    path = f"{sandbox.url}/invoices/{created['id']}/cancel"
    first = requests.post(path, data=b'{"reason":"mistake"}', headers=headers, timeout=5)
    again = requests.post(path, data=b'{"reason":"mistake"}', headers=headers, timeout=5)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == again.json()["status"] == "canceled"
    answered = requests.post(path, data=b'{"reason":"again"}', headers=AUTH, timeout=5)
    assert_error(answered, 409, "conflict_error", "E4091", None)
    assert_error(
        requests.post(f"{sandbox.url}/invoices/inv_nope/cancel", headers=AUTH, timeout=5),
        404,
        "not_found_error",
        "E4040",
        None,
    )
    assert_error(
        requests.post(path, data=b'{"why":"x"}', headers=AUTH, timeout=5), 422, "validation_error", "E1006", "why"
    )


# -- rate limit ------------------------------------------------------------------------------------------------


def test_the_61st_request_of_a_minute_is_a_429_with_x_ratelimit_headers_and_no_retry_after(sandbox: Sandbox) -> None:
    answers = [sandbox.get("/ping") for _ in range(61)]
    assert [a.status_code for a in answers[:60]] == [200] * 60
    assert answers[0].headers["X-RateLimit-Limit"] == "60"
    assert answers[0].headers["X-RateLimit-Remaining"] == "59"
    refused = answers[60]
    assert_error(refused, 429, "rate_limit_error", "E4290", None)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["X-RateLimit-Reset"]) <= 60
    assert "Retry-After" not in refused.headers
    sandbox.clock.now += 60
    assert sandbox.get("/ping").status_code == 200


# -- batches and results ---------------------------------------------------------------------------------------


def test_a_batch_goes_queued_processing_then_completed_and_only_then_has_a_result(sandbox: Sandbox) -> None:
    created = sandbox.post("/batches", REFERENCE_BATCH, {**JSON, "Idempotency-Key": "k"}).json()
    assert (created["status"], created["type"], "result_url" in created) == ("queued", "invoice.create", False)
    assert_error(sandbox.get(f"/batches/{created['id']}/result.csv"), 404, "not_found_error", "E4040", None)
    sandbox.clock.now += 5
    assert sandbox.get(f"/batches/{created['id']}").json()["status"] == "processing"
    sandbox.clock.now += 5
    done = sandbox.get(f"/batches/{created['id']}").json()
    assert done["status"] == "completed"
    assert done["counts"] == {"queued": 2, "processed": 2, "failed": 0}
    assert done["result_url"] == f"{sandbox.url}/batches/{created['id']}/result.csv"


@pytest.mark.parametrize("path", ["/batches/batch_nope", "/batches/batch_nope/result.csv", "/invoices/inv_nope"])
def test_a_resource_that_does_not_exist_is_a_404(sandbox: Sandbox, path: str) -> None:
    assert_error(sandbox.get(path), 404, "not_found_error", "E4040", None)


def test_a_batch_callback_is_signed_with_the_hmac_of_its_raw_body(sandbox: Sandbox) -> None:
    received: list[Request] = []
    arrived = threading.Event()

    def hook(request: Request, _params: dict[str, str]) -> Reply:
        received.append(request)
        arrived.set()
        return Reply.json(200, {})

    router = Router()
    router.add("POST", "/hook", hook)
    receiver = LocalHttpServer(router)
    receiver.start()
    peer = TuimprentaPeer(KEY, SECRET, processing_seconds=0)
    peer.start()
    try:
        body = {**REFERENCE_BATCH, "callback_url": f"{receiver.url}/hook"}
        answer = requests.post(f"{peer.base_url}/batches", json=body, headers=JSON, timeout=5)
        assert answer.status_code == 201
        assert arrived.wait(10)
    finally:
        peer.stop()
        receiver.stop()
    (request,) = received
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("x-tuimprenta-signature") == expected
    event = json.loads(request.body)
    assert (event["type"], event["data"]["batch_id"]) == ("batch.completed", answer.json()["id"])


# -- listing ---------------------------------------------------------------------------------------------------


def _issue(sandbox: Sandbox, n: int, series: str = "TD-2025") -> str:
    body = invoice(series=series, metadata={"buildnexion_id": f"sin_{n}"})
    answer = sandbox.post("/invoices", body, {**JSON, "Idempotency-Key": f"k-{series}-{n}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_the_listing_pages_with_cursors_over_every_invoice_once_in_the_order_made(sandbox: Sandbox) -> None:
    ids = [_issue(sandbox, n) for n in range(5)]
    seen: list[str] = []
    pages = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = sandbox.get("/invoices", **params).json()
        pages.append(page)
        seen += [i["id"] for i in page["data"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "starting_after": page["next_cursor"]}
    assert seen == ids
    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert pages[0]["prev_cursor"] is None
    assert pages[1]["prev_cursor"] == ids[2]
    assert pages[2]["prev_cursor"] == ids[4]
    assert [i["metadata"]["buildnexion_id"] for p in pages for i in p["data"]] == [f"sin_{n}" for n in range(5)]


def test_the_listing_filters_by_status_series_and_creation_day(sandbox: Sandbox) -> None:
    days = iter([datetime(2025, 10, 31, 23, 59, tzinfo=UTC), datetime(2025, 11, 1, 0, 0, tzinfo=UTC)] * 2)
    sandbox.peer._wall_clock = lambda: next(days)
    old, new = _issue(sandbox, 1), _issue(sandbox, 2)
    _other_old, other_new = _issue(sandbox, 3, "TD-2026"), _issue(sandbox, 4, "TD-2026")
    requests.post(f"{sandbox.url}/invoices/{new}/cancel", headers=AUTH, timeout=5)

    def ids(**params: Any) -> list[str]:
        return [i["id"] for i in sandbox.get("/invoices", **params).json()["data"]]

    assert ids(created_from="2025-11-01") == [new, other_new]
    assert ids(series="TD-2025") == [old, new]
    assert ids(status="canceled") == [new]
    assert ids(status="issued", series="TD-2026", created_from="2025-11-01") == [other_new]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "paid"}, "status"),
        ({"created_from": "2025-13-01"}, "created_from"),
        ({"created_from": "2025-11-01T00:00:00Z"}, "created_from"),
        ({"starting_after": "inv_nope"}, "starting_after"),
        ({"ending_before": "inv_1"}, "ending_before"),
    ],
)
def test_a_listing_parameter_the_reference_does_not_allow_is_refused(
    sandbox: Sandbox, params: dict[str, str], field: str
) -> None:
    answer = requests.get(f"{sandbox.url}/invoices", params=params, headers=AUTH, timeout=5)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


# -- fault kinds -----------------------------------------------------------------------------------------------


def test_status_401_refuses_a_request_with_the_right_key(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_401")
    assert_error(sandbox.get("/ping"), 401, "authentication_error", "E4010", None)
    assert sandbox.get("/ping").status_code == 200


def test_status_402_fails_a_batch_invoice_and_records_its_refusal(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_402")
    one, two = (invoice(metadata={"buildnexion_id": f"sin_{n}"}) for n in (1, 2))
    batch = sandbox.finished_batch(batch_of(one, two))
    rows = {r["index"]: r for r in sandbox.result_rows(batch)}
    assert (rows["0"]["status"], rows["0"]["error_code"]) == ("failed", "E4020")
    assert rows["1"]["status"] == "issued"
    assert batch["status"] == "partial"
    assert set(sandbox.peer.faults.refused) == {"sin_1"}


def test_status_402_refuses_a_single_invoice_and_records_its_refusal(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_402")
    body = invoice(metadata={"buildnexion_id": "sin_9"})
    assert_error(sandbox.post("/invoices", body, {**JSON, "Idempotency-Key": "k"}), 402, "fiscal_error", "E4020", None)
    assert sandbox.peer.invoices == {}
    assert set(sandbox.peer.faults.refused) == {"sin_9"}


def test_status_404_answers_a_read_of_an_invoice_that_exists(sandbox: Sandbox) -> None:
    invoice_id = _issue(sandbox, 1)
    sandbox.peer.faults.force("status_404")
    # A write is not a read: the cancel is not drawn, and the forced 404 waits for the next read.
    assert requests.post(f"{sandbox.url}/invoices/{invoice_id}/cancel", headers=AUTH, timeout=5).status_code == 200
    assert_error(sandbox.get(f"/invoices/{invoice_id}"), 404, "not_found_error", "E4040", None)
    assert sandbox.get(f"/invoices/{invoice_id}").status_code == 200


def test_status_409_refuses_a_write_without_its_effect(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_409")
    answer = sandbox.post("/batches", REFERENCE_BATCH, {**JSON, "Idempotency-Key": "k"})
    assert_error(answer, 409, "idempotency_error", "E4090", "Idempotency-Key")
    assert sandbox.peer.batches == {}


def test_status_422_fails_a_batch_invoice_or_a_single_one_and_records_the_refusal(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_422")
    body = invoice(metadata={"buildnexion_id": "sin_1"})
    assert_error(
        sandbox.post("/invoices", body, {**JSON, "Idempotency-Key": "k"}), 422, "validation_error", "E1003", None
    )
    sandbox.peer.faults.force("status_422")
    batch = sandbox.finished_batch(batch_of(invoice(metadata={"buildnexion_id": "sin_2"})))
    (row,) = sandbox.result_rows(batch)
    assert (row["status"], row["error_code"], batch["status"]) == ("failed", "E1003", "failed")
    assert set(sandbox.peer.faults.refused) == {"sin_1", "sin_2"}


def test_status_429_answers_with_the_rate_limit_headers_and_no_retry_after(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("status_429")
    answer = sandbox.get("/ping")
    assert_error(answer, 429, "rate_limit_error", "E4290", None)
    assert (answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"]) == ("60", "0")
    assert answer.headers["X-RateLimit-Reset"] == "1"
    assert "Retry-After" not in answer.headers


def test_a_scripted_fault_still_answers_in_the_error_format_without_retry_after(sandbox: Sandbox) -> None:
    sandbox.peer.fail_next("POST /batches", 503, 429)
    assert_error(sandbox.post("/batches", REFERENCE_BATCH), 503, "api_error", "E5030", None)
    limited = sandbox.post("/batches", REFERENCE_BATCH)
    assert_error(limited, 429, "rate_limit_error", "E4290", None)
    assert "Retry-After" not in limited.headers
    assert limited.headers["X-RateLimit-Reset"] == "1"
    assert sandbox.post("/batches", REFERENCE_BATCH).status_code == 201


def test_result_redirect_sends_the_download_to_the_apis_own_origin_behind_the_key(sandbox: Sandbox) -> None:
    batch = sandbox.finished_batch(REFERENCE_BATCH)
    sandbox.peer.faults.force("result_redirect")
    first = requests.get(batch["result_url"], headers=AUTH, allow_redirects=False, timeout=5)
    assert first.status_code == 302
    location = first.headers["Location"]
    assert urlsplit(location)[:2] == urlsplit(sandbox.url)[:2]
    assert location != batch["result_url"]
    assert_error(requests.get(location, timeout=5), 401, "authentication_error", "E4010", None)
    followed = requests.get(location, headers=AUTH, timeout=5)
    assert followed.content.decode().splitlines()[0] == RESULT_HEADER
    sandbox.peer.faults.force("result_redirect")
    # What the reference's curl -L does: the same host keeps the Authorization header.
    assert requests.get(batch["result_url"], headers=AUTH, timeout=5).status_code == 200


def test_result_elsewhere_is_a_presigned_url_on_another_host_that_refuses_and_counts_credentials(
    sandbox: Sandbox,
) -> None:
    sandbox.peer.faults.force("result_elsewhere")
    batch = sandbox.finished_batch(REFERENCE_BATCH)
    where = urlsplit(batch["result_url"])
    assert (where.hostname, where.port) != (urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port)
    plain = requests.get(batch["result_url"], timeout=5)
    assert plain.status_code == 200
    assert plain.content.decode().splitlines()[0] == RESULT_HEADER
    assert sandbox.peer.presigned_with_authorization == 0
    leaked = requests.get(batch["result_url"], headers=AUTH, timeout=5)
    assert leaked.status_code == 400
    assert sandbox.peer.presigned_with_authorization == 1
    forged = requests.get(batch["result_url"].replace("X-Tuim-Signature=", "X-Tuim-Signature=x"), timeout=5)
    assert forged.status_code == 403


def test_batch_404_once_answers_the_first_read_404_and_the_batch_still_exists(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("batch_404_once")
    created = sandbox.post("/batches", REFERENCE_BATCH, {**JSON, "Idempotency-Key": "k"}).json()
    assert_error(sandbox.get(f"/batches/{created['id']}"), 404, "not_found_error", "E4040", None)
    sandbox.clock.now += 60
    assert sandbox.get(f"/batches/{created['id']}").json()["status"] == "completed"
    assert len(sandbox.peer.invoices) == 2


def test_row_missing_leaves_an_issued_invoice_out_of_the_result_and_the_listing_finds_it(sandbox: Sandbox) -> None:
    sandbox.peer.faults.force("row_missing")
    members = [invoice(metadata={"buildnexion_id": f"sin_{n}"}) for n in range(3)]
    batch = sandbox.finished_batch(batch_of(*members))
    rows = sandbox.result_rows(batch)
    assert len(rows) == 2
    assert batch["status"] == "completed"
    (missing,) = {"0", "1", "2"} - {r["index"] for r in rows}
    assert sandbox.result_rows(batch)
    assert {r["index"] for r in sandbox.result_rows(batch)} == {"0", "1", "2"} - {missing}
    wanted = f"sin_{missing}"
    assert len(sandbox.peer.issued_for(wanted)) == 1
    listed = sandbox.get("/invoices", series="TD-2025").json()["data"]
    assert [i["id"] for i in listed if i["metadata"].get("buildnexion_id") == wanted] == [
        sandbox.peer.issued_for(wanted)[0].id
    ]


def test_result_malformed_answers_bad_bytes_then_a_wrong_header(sandbox: Sandbox) -> None:
    batch = sandbox.finished_batch(REFERENCE_BATCH)
    sandbox.peer.faults.force("result_malformed", 2)
    bad_bytes = requests.get(batch["result_url"], headers=AUTH, timeout=5).content
    with pytest.raises(UnicodeDecodeError):
        bad_bytes.decode("utf-8")
    wrong = requests.get(batch["result_url"], headers=AUTH, timeout=5).content.decode()
    assert wrong.splitlines()[0] != RESULT_HEADER
    assert len(sandbox.result_rows(batch)) == 2


def test_faults_from_local_faults_are_drawn_by_their_seed() -> None:
    def refused(seed: int) -> dict[str, str]:
        plan = FaultSettings.parse(f"status_402=0.5,seed={seed}").plan("tuimprenta")
        peer = TuimprentaPeer(KEY, SECRET, processing_seconds=0, send_callbacks=False, faults=plan)
        peer.start()
        try:
            body = batch_of(*[invoice(metadata={"buildnexion_id": f"sin_{n}"}) for n in range(20)])
            created = requests.post(f"{peer.base_url}/batches", json=body, headers=JSON, timeout=5).json()
            requests.get(f"{peer.base_url}/batches/{created['id']}", headers=AUTH, timeout=5)
        finally:
            peer.stop()
        return plan.refused

    first = refused(3)
    assert 0 < len(first) < 20
    assert refused(3) == first


def test_a_fault_plan_without_named_kinds_plays_none(sandbox: Sandbox) -> None:
    assert isinstance(sandbox.peer.faults, FaultPlan)
    batch = sandbox.finished_batch(REFERENCE_BATCH)
    assert len(sandbox.result_rows(batch)) == 2
    assert sandbox.peer.faults.injected == {}
