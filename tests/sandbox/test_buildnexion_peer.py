"""The sandbox BuildNexion against its contract (DESIGN.md, "BuildNexion contract"; docs/buildnexion-contract.md).

Each rule is shown from the outside, over HTTP: an object the contract forbids is refused with 400 naming its
field and is not held; the signature is the documented HMAC; lists page and refuse bad parameters as documented.
Nothing here takes an expected value from the product's code.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from sandbox.buildnexion import (
    DEFAULT_API_KEY,
    SIGNATURE_HEADER,
    BuildNexionPeer,
    ObjectRefused,
    check_object,
    sign_and_post,
    signature_header,
)
from sandbox.faults import FaultSettings
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from tests.conftest import ROOT

SECRETS = ["whsec_peer_test_old", "whsec_peer_test_new"]
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
TIMEOUT = (3.05, 10)

INVOICE: dict[str, Any] = {
    "object": "invoice",
    "id": "inv_8f3k2",
    "invoice_number": "F-2026-0042",
    "issue_date": "2026-11-03",
    "due_date": "2026-12-03",
    "currency": "EUR",
    "provider_id": "prv_123",
    "status": "open",
    "paid_at": None,
    "lines": [
        {
            "description": "Hormigón HA-25",
            "quantity": "12.5",
            "unit_amount": 8450,
            "vat_percent": "21",
            "retention_percent": "0",
        }
    ],
    "subtotal_amount": 105625,
    "vat_amount": 22181,
    "retention_amount": 0,
    "total_amount": 127806,
    "updated_at": "2026-11-03T10:15:00Z",
}
PROVIDER: dict[str, Any] = {
    "object": "provider",
    "id": "prv_900",
    "name": "Hormigones Muñoz, S.L.",
    "nif": "B12345678",
    "email": "admin@hmunoz.es",
    "phone": "961234567",
    "address": "C/ Mayor 1",
    "town": "Valencia",
    "zip_code": "46001",
    "country_code": "ES",
}
PURCHASE_ORDER: dict[str, Any] = {
    "object": "purchase_order",
    "id": "po_55",
    "number": "PO-2026-0007",
    "date": "2026-11-02",
    "provider_id": "prv_123",
    "currency": "EUR",
    "status": "sent",
    "notes": "Entregar en obra",
    "lines": [
        {
            "product_code": "HA25",
            "description": "Hormigón HA-25",
            "quantity": "3",
            "unit_amount": 8450,
            "vat_percent": "21",
        }
    ],
    "updated_at": "2026-11-02T08:00:00Z",
}
SALES_INVOICE: dict[str, Any] = {
    "object": "sales_invoice",
    "id": "sin_9",
    "series": "TD-2025",
    "issue_date": "2026-11-07",
    "currency": "USD",
    "send_email": True,
    "status": "open",
    "customer": {"name": "Inversiones ABC, C.A.", "tax_id": "J-12345678-9", "email": "admin@abc.com"},
    "lines": [
        {
            "sku": "CERT-04",
            "description": "Certificación obra 4",
            "quantity": "1",
            "unit_amount": 1200000,
            "tax_rate": "0.16",
        }
    ],
    "updated_at": "2026-11-07T12:00:00Z",
}
SAMPLES = {
    "invoice": INVOICE,
    "provider": PROVIDER,
    "purchase_order": PURCHASE_ORDER,
    "sales_invoice": SALES_INVOICE,
}
COLLECTION = {
    "invoice": "invoices",
    "provider": "providers",
    "purchase_order": "purchase_orders",
    "sales_invoice": "sales_invoices",
}


@pytest.fixture(scope="module")
def peer() -> Iterator[BuildNexionPeer]:
    served = BuildNexionPeer(DEFAULT_API_KEY, SECRETS)
    served.start()
    yield served
    served.stop()


def put(peer: BuildNexionPeer, document: Any) -> requests.Response:
    return requests.put(f"{peer.base_url}/sandbox/objects", json=document, headers=AUTH, timeout=TIMEOUT)


def get(peer: BuildNexionPeer, kind: str, object_id: str) -> requests.Response:
    return requests.get(f"{peer.base_url}/{COLLECTION[kind]}/{object_id}", headers=AUTH, timeout=TIMEOUT)


def changed(kind: str, path: str, value: Any, *, new_id: str) -> dict[str, Any]:
    """A copy of the sample of `kind` with `path` (dotted, `lines[0].x`) set to `value`, or removed for DROP."""
    document = copy.deepcopy(SAMPLES[kind])
    document["id"] = new_id
    *parents, last = re.findall(r"[^.\[\]]+", path)
    target: Any = document
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is DROP:
        del target[last]
    else:
        target[last] = value
    return document


DROP = object()

# (kind, field path, bad value or DROP): each must be refused with 400 naming exactly that field.
REFUSALS = [
    # required fields
    *[
        ("invoice", name, DROP)
        for name in (
            "invoice_number",
            "issue_date",
            "currency",
            "provider_id",
            "status",
            "lines",
            "subtotal_amount",
            "vat_amount",
            "retention_amount",
            "total_amount",
            "updated_at",
        )
    ],
    *[("invoice", f"lines[0].{name}", DROP) for name in ("description", "quantity", "unit_amount", "vat_percent")],
    *[("provider", name, DROP) for name in ("name", "nif")],
    *[
        ("purchase_order", name, DROP)
        for name in ("number", "date", "provider_id", "currency", "status", "lines", "updated_at")
    ],
    *[
        ("purchase_order", f"lines[0].{name}", DROP)
        for name in ("description", "quantity", "unit_amount", "vat_percent")
    ],
    *[
        ("sales_invoice", name, DROP)
        for name in ("series", "issue_date", "currency", "status", "customer", "lines", "updated_at")
    ],
    ("sales_invoice", "customer.name", DROP),
    ("sales_invoice", "customer.tax_id", DROP),
    *[("sales_invoice", f"lines[0].{name}", DROP) for name in ("description", "quantity", "unit_amount", "tax_rate")],
    # amounts are integer cents: not strings, floats or booleans
    ("invoice", "total_amount", "127806"),
    ("invoice", "total_amount", 1278.06),
    ("invoice", "vat_amount", True),
    ("invoice", "lines[0].unit_amount", 84.5),
    ("purchase_order", "lines[0].unit_amount", "8450"),
    ("sales_invoice", "lines[0].unit_amount", 12000.0),
    # quantities and percentages are decimal strings in plain notation
    ("invoice", "lines[0].quantity", 12.5),
    ("invoice", "lines[0].quantity", "1.25e1"),
    ("invoice", "lines[0].vat_percent", "21%"),
    ("invoice", "lines[0].retention_percent", 0),
    ("invoice", "lines[0].unit_amount_decimal", 903.8),
    ("purchase_order", "lines[0].quantity", " 3"),
    ("purchase_order", "lines[0].vat_percent", "NaN"),
    ("sales_invoice", "lines[0].tax_rate", 0.16),
    ("sales_invoice", "lines[0].quantity", "1,5"),
    # dates and date-times
    ("invoice", "issue_date", "03/11/2026"),
    ("invoice", "due_date", "2026-02-30"),
    ("invoice", "updated_at", "2026-11-03T10:15:00"),  # no time zone
    ("invoice", "updated_at", "2026-11-03"),
    ("invoice", "paid_at", "yesterday"),
    ("purchase_order", "date", "20261102"),
    ("purchase_order", "updated_at", "2026-11-02 08:00:00Z"),  # ISO 8601 puts a T between date and time
    ("sales_invoice", "updated_at", 1763719200),
    # identity, text and the other types
    ("invoice", "id", "inv with spaces"),
    ("invoice", "id", "x" * 129),
    ("invoice", "invoice_number", ""),
    ("invoice", "currency", "eur"),
    ("invoice", "lines", {"description": "not a list"}),
    ("provider", "country_code", "ESP"),
    ("provider", "nif", 12345678),
    ("purchase_order", "notes", 7),
    ("sales_invoice", "send_email", "yes"),
    ("sales_invoice", "customer.tax_id", "  "),
    ("sales_invoice", "customer", "Inversiones ABC"),
]


@pytest.mark.parametrize(("kind", "path", "value"), REFUSALS, ids=lambda v: repr(v)[:40])
def test_an_object_breaking_the_contract_is_refused_naming_its_field_and_not_held(
    peer: BuildNexionPeer, kind: str, path: str, value: Any
) -> None:
    object_id = f"{kind[:3]}_refused_{REFUSALS.index((kind, path, value))}"
    document = changed(kind, path, value, new_id=object_id)
    if path == "id":
        object_id = str(value)
    response = put(peer, document)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["field"] == path
    assert error["message"]
    if path != "id":
        assert get(peer, kind, object_id).status_code == 404


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_each_contract_sample_is_held_as_sent_with_unknown_fields_kept(peer: BuildNexionPeer, kind: str) -> None:
    document = {**SAMPLES[kind], "id": f"{kind[:3]}_held", "added_by_a_newer_buildnexion": {"x": 1}}
    assert put(peer, document).status_code == 204
    response = get(peer, kind, document["id"])
    assert response.status_code == 200
    assert response.json() == document


def test_optional_fields_may_be_absent_or_null(peer: BuildNexionPeer) -> None:
    invoice = {**INVOICE, "id": "inv_optional", "due_date": None, "paid_at": "2026-11-20T09:00:00+01:00"}
    invoice["lines"] = [{k: v for k, v in INVOICE["lines"][0].items() if k != "retention_percent"}]
    invoice["lines"][0]["unit_amount_decimal"] = "8450.5"
    order = {k: v for k, v in PURCHASE_ORDER.items() if k != "notes"} | {"id": "po_optional"}
    order["lines"] = [{k: v for k, v in PURCHASE_ORDER["lines"][0].items() if k != "product_code"}]
    sale = {k: v for k, v in SALES_INVOICE.items() if k != "send_email"} | {"id": "sin_optional"}
    sale["customer"] = {"name": "Promotora Andina, C.A.", "tax_id": "J-40111222-3"}
    provider = {"object": "provider", "id": "prv_bare", "name": "Áridos del Turia, S.L.", "nif": "B46111222"}
    for document in (invoice, order, sale, provider):
        assert put(peer, document).status_code == 204, document["id"]


def test_an_unknown_kind_or_a_body_that_is_no_object_is_refused(peer: BuildNexionPeer) -> None:
    unknown = put(peer, {**INVOICE, "object": "credit_note", "id": "cn_1"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "object"
    listed = put(peer, [INVOICE])
    assert listed.status_code == 400
    assert listed.json()["error"]["field"] == "body"
    garbled = requests.put(
        f"{peer.base_url}/sandbox/objects",
        data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert garbled.status_code == 400
    assert garbled.json()["error"]["field"] == "body"


def test_put_objects_in_process_refuses_the_whole_set_and_names_the_field(peer: BuildNexionPeer) -> None:
    good = {**INVOICE, "id": "inv_set_good"}
    bad = changed("invoice", "lines[0].quantity", 3, new_id="inv_set_bad")
    with pytest.raises(ObjectRefused) as refused:
        peer.put_objects([good, bad])
    assert refused.value.field == "lines[0].quantity"
    assert get(peer, "invoice", "inv_set_good").status_code == 404  # nothing of a refused set is held


def test_check_object_answers_the_kind_and_id() -> None:
    assert check_object(INVOICE) == ("invoice", "inv_8f3k2")
    with pytest.raises(ObjectRefused, match="updated_at"):
        check_object({k: v for k, v in SALES_INVOICE.items() if k != "updated_at"})


# -- signature -----------------------------------------------------------------------------------------


def expected_v1(secret: str, timestamp: int, body: bytes) -> str:
    """The contract's scheme, written here from DESIGN.md: HMAC-SHA256 of "{t}.{raw body}", the whole secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_the_signature_header_is_the_documented_one() -> None:
    body = (
        b'{"id":"evt_01JDOC","type":"invoice.created","created":1763719200,"data":{"object":{"object":"invoice",'
        b'"id":"inv_8f3k2","updated_at":"2026-11-03T10:15:00Z"}}}'
    )
    # The worked example of docs/buildnexion-contract.md (also computable with openssl, as it shows).
    assert (
        signature_header(["whsec_example_secret"], 1763719200, body)
        == "t=1763719200,v1=ce3d70a69b0861e398d3608fd8477928c590d0b6da77b7039547a7910800d5a1"
    )
    assert signature_header(["whsec_example_secret", "whsec_example_new"], 1763719200, body) == (
        "t=1763719200,v1=ce3d70a69b0861e398d3608fd8477928c590d0b6da77b7039547a7910800d5a1,"
        "v1=940d1ccbb0ec08583b0136b0a5a59f5b2d6875521b942469e8b60768d0621ae0"
    )


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Request]]]:
    received: list[Request] = []

    def hook(request: Request, _params: dict[str, str]) -> Reply:
        received.append(request)
        return Reply.json(200, {"status": "accepted"})

    router = Router()
    router.add("POST", "/hook", hook)
    server = LocalHttpServer(router)
    server.start()
    yield f"{server.url}/hook", received
    server.stop()


def test_a_delivery_carries_one_v1_per_secret_over_the_exact_body(receiver: tuple[str, list[Request]]) -> None:
    url, received = receiver
    body = json.dumps({"id": "evt_sig", "type": "invoice.created"}).encode()
    sign_and_post(url, body, SECRETS, timestamp=1763719200)
    (request,) = received
    header = request.header(SIGNATURE_HEADER) or ""
    assert re.fullmatch(r"t=\d+(,v1=[0-9a-f]{64}){2}", header), header
    assert request.body == body
    assert request.header("content-type") == "application/json"
    assert header == f"t=1763719200,v1={expected_v1(SECRETS[0], 1763719200, body)},v1=" + expected_v1(
        SECRETS[1], 1763719200, body
    )


def test_registering_a_url_again_rotates_and_deliveries_carry_every_secret(
    receiver: tuple[str, list[Request]],
) -> None:
    url, received = receiver
    peer = BuildNexionPeer(DEFAULT_API_KEY, SECRETS[:1])
    first = peer.subscribe(url, ["invoice.created"])
    rotated = peer.subscribe(url, ["invoice.created"])
    assert rotated.secrets[0] == first.secret == SECRETS[0]
    assert rotated.secret.startswith("whsec_")
    assert rotated.secret != first.secret
    envelope = {"id": "evt_rot", "type": "invoice.created", "created": 1763719200, "data": {"object": INVOICE}}
    (delivery,) = peer.deliver(envelope)
    assert delivery.status == 200
    header = received[-1].header(SIGNATURE_HEADER) or ""
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert header.split(",")[1:] == [f"v1={expected_v1(s, stamp, received[-1].body)}" for s in rotated.secrets]


# -- the API: auth, lookups, lists, webhook registration -----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/invoices/inv_8f3k2"),
        ("GET", "/invoices"),
        ("GET", "/providers/prv_123"),
        ("GET", "/invoices/inv_8f3k2/pdf"),
        ("POST", "/webhooks"),
        ("PUT", "/sandbox/objects"),
    ],
)
def test_every_route_wants_the_api_key(peer: BuildNexionPeer, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer bn_wrong"}, {"Authorization": DEFAULT_API_KEY}):
        response = requests.request(method, f"{peer.base_url}{path}", json={}, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json() == {"error": {"type": "unauthorized", "message": "invalid API key"}}


def test_an_unknown_object_is_404(peer: BuildNexionPeer) -> None:
    response = get(peer, "purchase_order", "po_nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def _list(peer: BuildNexionPeer, collection: str, **query: Any) -> requests.Response:
    return requests.get(f"{peer.base_url}/{collection}", params=query, headers=AUTH, timeout=TIMEOUT)


def test_lists_order_by_updated_at_then_id_and_page_with_starting_after() -> None:
    peer = BuildNexionPeer(DEFAULT_API_KEY, SECRETS)
    peer.start()
    try:
        stamps = ["2026-11-05T00:00:00Z", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00+01:00", "2026-11-01T00:00:00Z"]
        ids = ["po_a", "po_d", "po_c", "po_b"]
        peer.put_objects([{**PURCHASE_ORDER, "id": i, "updated_at": t} for i, t in zip(ids, stamps, strict=True)])
        first = _list(peer, "purchase_orders", limit=2).json()
        assert first["object"] == "list"
        assert [o["id"] for o in first["data"]] == ["po_b", "po_d"]
        assert first["has_more"] is True
        rest = _list(peer, "purchase_orders", limit=2, starting_after="po_d").json()
        assert [o["id"] for o in rest["data"]] == ["po_c", "po_a"]
        assert rest["has_more"] is False
        since = int(datetime(2026, 11, 2, 23, tzinfo=UTC).timestamp())
        assert [o["id"] for o in _list(peer, "purchase_orders", updated_since=since).json()["data"]] == ["po_c", "po_a"]
        assert len(_list(peer, "purchase_orders").json()["data"]) == 4  # default limit 20
    finally:
        peer.stop()


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"updated_since": "2026-11-01"}, "updated_since"),
        ({"starting_after": "inv_not_listed"}, "starting_after"),
        ({"page": "2"}, "page"),
    ],
)
def test_a_bad_list_parameter_is_400_naming_it(peer: BuildNexionPeer, query: dict[str, str], param: str) -> None:
    response = _list(peer, "invoices", **query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "param"}
    assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["invoice.created"]}, "url"),
        ({"url": "ftp://example.com/hook", "events": ["invoice.created"]}, "url"),
        ({"url": "https://example.com/hook"}, "events"),
        ({"url": "https://example.com/hook", "events": []}, "events"),
        ({"url": "https://example.com/hook", "events": "invoice.created"}, "events"),
        ({"url": "https://example.com/hook", "events": ["invoice.created", 7]}, "events[1]"),
        (["https://example.com/hook"], "body"),
    ],
)
def test_a_bad_webhook_registration_is_400_naming_the_field(peer: BuildNexionPeer, body: Any, field: str) -> None:
    response = requests.post(f"{peer.base_url}/webhooks", json=body, headers=AUTH, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_a_webhook_registration_answers_id_url_events_and_secret(peer: BuildNexionPeer) -> None:
    body = {"url": "https://example.com/registered", "events": ["invoice.created", "invoice.updated"]}
    response = requests.post(f"{peer.base_url}/webhooks", json=body, headers=AUTH, timeout=TIMEOUT)
    assert response.status_code == 200
    answer = response.json()
    assert re.fullmatch(r"we_[0-9a-f]{12}", answer["id"])
    assert (answer["url"], answer["events"], answer["secret"]) == (body["url"], body["events"], SECRETS[0])


# -- faults ----------------------------------------------------------------------------------------------


def test_faults_play_on_the_api_but_not_while_suspended() -> None:
    peer = BuildNexionPeer(DEFAULT_API_KEY, SECRETS, faults=FaultSettings.parse("error=1,seed=1").plan("buildnexion"))
    peer.start()
    try:
        assert get(peer, "provider", "prv_123").status_code >= 500
        with peer.faults_suspended():
            assert get(peer, "provider", "prv_123").status_code == 200
        assert get(peer, "provider", "prv_123").status_code >= 500
        assert put(peer, {**INVOICE, "id": "inv_exempt"}).status_code == 204  # the sandbox route never faults
    finally:
        peer.stop()


def test_the_peer_imports_nothing_of_the_product() -> None:
    # In a fresh interpreter: every module the sandbox BuildNexion pulls in, transitively.
    code = "import sys, sandbox.buildnexion; print([m for m in sys.modules if m.split('.')[0] == 'invoice_bridge'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
