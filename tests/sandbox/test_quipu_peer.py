"""The sandbox Quipu against its reference (seeds 001/002): what the reference says must be refused is refused,
in the reference's error format, and every named fault kind the peer owns is produced.

Driven over HTTP on 127.0.0.1, as the product reaches it. Each request here is built by hand from the reference's
own examples (no product code), so a rule the peer loses shows up as a request it wrongly accepts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.faults import KINDS, FaultSettings
from sandbox.quipu import MEDIA_TYPE, QuipuOptions, QuipuPeer

APP_ID = "peer-app"
# Chosen so that the standard and the URL-safe Base64 of "app_id:app_secret" differ (the standard one has + or /).
APP_SECRET = "s3cret?>>~~"
TIMEOUT = (3.05, 10.0)


def urlsafe(app_id: str = APP_ID, secret: str = APP_SECRET) -> str:
    return base64.urlsafe_b64encode(f"{app_id}:{secret}".encode()).decode()


def standard(app_id: str = APP_ID, secret: str = APP_SECRET) -> str:
    return base64.b64encode(f"{app_id}:{secret}".encode()).decode()


class Api:
    """A hand-written Quipu client: the reference's headers by default, each one overridable."""

    def __init__(self, peer: QuipuPeer) -> None:
        self.peer = peer
        self.url = peer.base_url
        self.token = ""

    def token_request(
        self,
        *,
        credentials: str | None = None,
        content_type: str = "application/x-www-form-urlencoded;charset=UTF-8",
        form: str = "scope=ecommerce&grant_type=client_credentials",
    ) -> requests.Response:
        return requests.post(
            f"{self.url}/oauth/token",
            data=form.encode(),
            headers={"Authorization": f"Basic {credentials or urlsafe()}", "Content-Type": content_type},
            timeout=TIMEOUT,
        )

    def login(self) -> None:
        answer = self.token_request()
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    def call(
        self,
        method: str,
        path: str,
        document: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str | None] | None = None,
    ) -> requests.Response:
        sent: dict[str, str | None] = {"Authorization": f"Bearer {self.token}", "Accept": MEDIA_TYPE}
        if document is not None:
            sent["Content-Type"] = MEDIA_TYPE
        sent.update(headers or {})
        return requests.request(
            method,
            self.url + path,
            data=None if document is None else json.dumps(document).encode(),
            params=params,
            headers={k: v for k, v in sent.items() if v is not None},
            timeout=TIMEOUT,
        )

    def contact(self, tax_id: str = "B12345678", name: str = "Hormigones Muñoz, S.L.") -> str:
        answer = self.call(
            "POST", "/contacts", {"data": {"type": "contacts", "attributes": {"name": name, "tax_id": tax_id}}}
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["data"]["id"])

    def invoice(self, document: dict[str, Any]) -> requests.Response:
        return self.call("POST", "/invoices", document)


def item(**changes: Any) -> dict[str, Any]:
    """An item as the reference's create example writes it."""
    attributes: dict[str, Any] = {
        "concept": "Tornillos",
        "unitary_amount": "0.50",
        "quantity": 30,
        "vat_percent": 21,
        "retention_percent": 0,
    }
    attributes.update(changes)
    return {"type": "book_entry_items", "attributes": {k: v for k, v in attributes.items() if v is not ...}}


def invoice(
    contact_id: str, *, attributes: dict[str, Any] | None = None, items: list[Any] | None = None
) -> dict[str, Any]:
    """An expense invoice as the reference's create example writes it."""
    written: dict[str, Any] = {
        "kind": "expenses",
        "number": "F-2026-0042",
        "issue_date": "2026-11-03",
        "due_dates": ["2026-12-03"],
        "paid_at": None,
        "payment_method": "bank_transfer",
        "tags": "bn:inv_8f3k2",
    }
    written.update(attributes or {})
    return {
        "data": {
            "type": "invoices",
            "attributes": {k: v for k, v in written.items() if v is not ...},
            "relationships": {
                "contact": {"data": {"id": contact_id, "type": "contacts"}},
                "items": {"data": [item()] if items is None else items},
            },
        }
    }


def errors(answer: requests.Response) -> list[dict[str, Any]]:
    """The reference's error document: `{"errors": [{"detail", "source": {...}}]}`, nothing else."""
    document = answer.json()
    assert list(document) == ["errors"], document
    assert document["errors"], document
    for error in document["errors"]:
        assert isinstance(error["detail"], str)
        assert error["detail"]
        assert set(error) <= {"detail", "source"}
    return list(document["errors"])


def pointers(answer: requests.Response) -> list[str]:
    return [e.get("source", {}).get("pointer", "") for e in errors(answer)]


def sources(answer: requests.Response, kind: str) -> list[str]:
    return [e.get("source", {}).get(kind, "") for e in errors(answer)]


@pytest.fixture
def peer() -> Iterator[QuipuPeer]:
    served = QuipuPeer(QuipuOptions(app_id=APP_ID, app_secret=APP_SECRET, limit=1000, window_seconds=1.0))
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def api(peer: QuipuPeer) -> Api:
    made = Api(peer)
    made.login()
    return made


# -- the token request ----------------------------------------------------------------------------------


def test_the_token_request_takes_url_safe_base64_and_refuses_the_standard_alphabet(peer: QuipuPeer) -> None:
    assert standard() != urlsafe()  # the credentials of this test really differ between the two alphabets
    api = Api(peer)
    refused = api.token_request(credentials=standard())
    assert refused.status_code == 401
    assert sources(refused, "header") == ["Authorization"]
    accepted = api.token_request(credentials=urlsafe())
    assert accepted.status_code == 200
    assert accepted.json()["token_type"] == "bearer"


def test_standard_base64_is_accepted_where_it_equals_the_url_safe_one(peer: QuipuPeer) -> None:
    # "sandbox" credentials encode without + or /: both alphabets write the same text, which is URL-safe.
    plain = QuipuPeer(QuipuOptions(app_id="abc", app_secret="def"))
    plain.start()
    try:
        assert standard("abc", "def") == urlsafe("abc", "def")
        assert Api(plain).token_request(credentials=standard("abc", "def")).status_code == 200
    finally:
        plain.stop()


@pytest.mark.parametrize("credentials", [urlsafe(secret="wrong"), "not base64!", urlsafe().rstrip("=") + "*"])
def test_wrong_or_unreadable_credentials_are_refused(peer: QuipuPeer, credentials: str) -> None:
    answer = Api(peer).token_request(credentials=credentials)
    assert answer.status_code == 401
    assert sources(answer, "header") == ["Authorization"]


@pytest.mark.parametrize("content_type", ["application/json", MEDIA_TYPE, "text/plain"])
def test_the_token_request_must_be_a_form(peer: QuipuPeer, content_type: str) -> None:
    answer = Api(peer).token_request(content_type=content_type)
    assert answer.status_code == 415
    assert sources(answer, "header") == ["Content-Type"]


@pytest.mark.parametrize(
    ("form", "parameters"),
    [
        ("grant_type=client_credentials", ["scope"]),
        ("scope=ecommerce", ["grant_type"]),
        ("scope=admin&grant_type=client_credentials", ["scope"]),
        ("scope=ecommerce&grant_type=password", ["grant_type"]),
        ("scope=ecommerce&grant_type=client_credentials&grant_type=client_credentials", ["grant_type"]),
    ],
)
def test_grant_type_and_scope_are_the_references(peer: QuipuPeer, form: str, parameters: list[str]) -> None:
    answer = Api(peer).token_request(form=form)
    assert answer.status_code == 400
    assert sources(answer, "parameter") == parameters


# -- every API request ---------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "application/vnd.quipu.v2+json"])
def test_every_request_must_accept_the_vendor_media_type(api: Api, accept: str | None) -> None:
    answer = api.call("GET", "/contacts", headers={"Accept": accept})
    assert answer.status_code == 406
    assert sources(answer, "header") == ["Accept"]


def test_the_vendor_media_type_among_others_is_accepted(api: Api) -> None:
    assert api.call("GET", "/contacts", headers={"Accept": f"application/json, {MEDIA_TYPE}"}).status_code == 200


@pytest.mark.parametrize("content_type", [None, "application/json", "application/vnd.api+json"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"])
def test_writes_must_be_sent_as_the_vendor_media_type(api: Api, method: str, content_type: str | None) -> None:
    contact_id = api.contact()
    created = api.invoice(invoice(contact_id))
    assert created.status_code == 201, created.text
    path = "/invoices" if method == "POST" else f"/invoices/{created.json()['data']['id']}"
    answer = api.call(method, path, invoice(contact_id), headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert sources(answer, "header") == ["Content-Type"]


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic " + urlsafe()])
def test_every_api_request_needs_a_live_bearer_token(api: Api, authorization: str | None) -> None:
    answer = api.call("GET", "/contacts", headers={"Authorization": authorization})
    assert answer.status_code == 401
    assert sources(answer, "header") == ["Authorization"]


def test_an_expired_token_is_refused() -> None:
    now = [1_800_000_000.0]
    peer = QuipuPeer(
        QuipuOptions(app_id=APP_ID, app_secret=APP_SECRET, token_lifetime_seconds=60), clock=lambda: now[0]
    )
    peer.start()
    try:
        api = Api(peer)
        api.login()
        assert api.call("GET", "/contacts").status_code == 200
        now[0] += 60
        assert api.call("GET", "/contacts").status_code == 401
    finally:
        peer.stop()


def test_an_unknown_path_is_refused_in_the_error_format(api: Api) -> None:
    answer = api.call("GET", "/expenses")
    assert answer.status_code == 404
    errors(answer)


# -- the rate limit --------------------------------------------------------------------------------------


def test_429_carries_the_drafts_ratelimit_headers_and_no_retry_after() -> None:
    peer = QuipuPeer(QuipuOptions(app_id=APP_ID, app_secret=APP_SECRET, limit=3, window_seconds=60))
    peer.start()
    try:
        api = Api(peer)
        api.login()  # the token request counts: one of three
        answers = [api.call("GET", "/contacts") for _ in range(3)]
    finally:
        peer.stop()
    assert [a.status_code for a in answers] == [200, 200, 429]
    ok, refused = answers[1], answers[2]
    assert ok.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == "3, 3;w=60"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
    assert "Retry-After" not in refused.headers
    assert not [h for h in refused.headers if h.lower().startswith("x-ratelimit")]
    errors(refused)


# -- JSON-API documents ----------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["contact", "contacts ", "invoices", "Contacts"])
def test_a_contact_create_must_say_it_is_a_contact(api: Api, written: str) -> None:
    answer = api.call("POST", "/contacts", {"data": {"type": written, "attributes": {"name": "x"}}})
    assert answer.status_code == 409
    assert pointers(answer) == ["/data/type"]


def test_an_invoice_create_and_update_must_say_they_are_invoices(api: Api) -> None:
    contact_id = api.contact()
    wrong = invoice(contact_id)
    wrong["data"]["type"] = "expenses"
    answer = api.invoice(wrong)
    assert answer.status_code == 409
    assert pointers(answer) == ["/data/type"]
    created = api.invoice(invoice(contact_id)).json()["data"]["id"]
    patched = api.call("PATCH", f"/invoices/{created}", {"data": {"type": "book_entries", "attributes": {}}})
    assert patched.status_code == 409
    other_id = api.call("PATCH", f"/invoices/{created}", {"data": {"type": "invoices", "id": "1", "attributes": {}}})
    assert other_id.status_code == 409
    assert pointers(other_id) == ["/data/id"]


def test_a_document_without_type_or_data_is_refused(api: Api) -> None:
    untyped = api.call("POST", "/contacts", {"data": {"attributes": {"name": "x"}}})
    assert untyped.status_code == 422
    assert pointers(untyped) == ["/data/type"]
    bare = api.call("POST", "/contacts", {"name": "x"})
    assert bare.status_code == 400
    assert pointers(bare) == ["/data"]


def test_linked_resources_must_be_of_their_type(api: Api) -> None:
    contact_id = api.contact()
    document = invoice(contact_id, items=[{"type": "items", "attributes": item()["attributes"]}])
    document["data"]["relationships"]["contact"]["data"]["type"] = "suppliers"
    answer = api.invoice(document)
    assert answer.status_code == 422
    assert sorted(pointers(answer)) == [
        "/data/relationships/contact/data/type",
        "/data/relationships/items/data/0/type",
    ]


def test_relationships_the_reference_does_not_write_are_refused(api: Api) -> None:
    document = invoice(api.contact())
    document["data"]["relationships"]["amending_invoices"] = {"data": []}
    document["data"]["relationships"]["supplier"] = {"data": None}
    answer = api.invoice(document)
    assert answer.status_code == 422
    assert sorted(pointers(answer)) == ["/data/relationships/amending_invoices", "/data/relationships/supplier"]


# -- invoices: required, typed, enumerated ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"kind": ...}, "/data/attributes/kind"),
        ({"issue_date": ...}, "/data/attributes/issue_date"),
        ({"kind": "expense"}, "/data/attributes/kind"),
        ({"issue_date": "2026-02-30"}, "/data/attributes/issue_date"),
        ({"issue_date": "03/11/2026"}, "/data/attributes/issue_date"),
        ({"due_dates": "2026-12-03"}, "/data/attributes/due_dates"),
        ({"due_dates": None}, "/data/attributes/due_dates"),
        ({"due_dates": ["2026-12-03", "2026-13-01"]}, "/data/attributes/due_dates/1"),
        ({"paid_at": "2026-11-31"}, "/data/attributes/paid_at"),
        ({"paid_at": "yesterday"}, "/data/attributes/paid_at"),
        ({"paid_at": 1763719200}, "/data/attributes/paid_at"),
        ({"payment_method": "bitcoin"}, "/data/attributes/payment_method"),
        ({"number": 42}, "/data/attributes/number"),
        ({"tags": ["bn:inv_1"]}, "/data/attributes/tags"),
        ({"last_sent_at": "2026-11-03"}, "/data/attributes/last_sent_at"),
        ({"total_amount": "1278.06"}, "/data/attributes/total_amount"),
        ({"payment_status": "paid"}, "/data/attributes/payment_status"),
        ({"due_date": "2026-12-03"}, "/data/attributes/due_date"),
    ],
)
def test_invoice_attributes_are_required_typed_and_writable_as_the_reference_says(
    api: Api, change: dict[str, Any], pointer: str
) -> None:
    answer = api.invoice(invoice(api.contact(), attributes=change))
    assert answer.status_code == 422, answer.text
    assert pointers(answer) == [pointer]
    assert api.peer.invoices == {}


def test_an_invoice_needs_its_contact_and_items(api: Api) -> None:
    document = invoice(api.contact())
    del document["data"]["relationships"]["items"]
    document["data"]["relationships"]["contact"] = {"data": None}
    answer = api.invoice(document)
    assert answer.status_code == 422
    assert sorted(pointers(answer)) == ["/data/relationships/contact", "/data/relationships/items"]
    unknown = api.invoice(invoice("999999"))
    assert unknown.status_code == 422
    assert pointers(unknown) == ["/data/relationships/contact"]


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"quantity": ...}, "quantity"),  # no default quantity of 1
        ({"unitary_amount": ...}, "unitary_amount"),
        ({"unitary_amount": 0.5}, "unitary_amount"),  # money is a decimal string in every example
        ({"unitary_amount": "0,50"}, "unitary_amount"),
        ({"unitary_amount": "5E-1"}, "unitary_amount"),
        ({"quantity": "thirty"}, "quantity"),
        ({"quantity": "3e1"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"vat_percent": "21%"}, "vat_percent"),
        ({"vat_percent": 121}, "vat_percent"),
        ({"retention_percent": -1}, "retention_percent"),
        ({"discount_percent": 101}, "discount_percent"),
        ({"kind": "reimbursement"}, "kind"),  # income items only
        ({"concept": 7}, "concept"),
        ({"total_amount": "15.0"}, "total_amount"),
        ({"price": "0.50"}, "price"),
    ],
)
def test_items_are_required_typed_and_writable_as_the_reference_says(
    api: Api, change: dict[str, Any], pointer: str
) -> None:
    answer = api.invoice(invoice(api.contact(), items=[item(**change)]))
    assert answer.status_code == 422, answer.text
    assert pointers(answer) == [f"/data/relationships/items/data/0/attributes/{pointer}"]


@pytest.mark.parametrize(
    "change",
    [
        {},  # the reference's example: quantity and percents as numbers, money as a string
        {"quantity": "30", "vat_percent": "21", "retention_percent": "0"},  # as its answers write them
        {"quantity": 12.5, "unitary_amount": "-5.00"},  # a fraction; a negative amount (its partial refund)
        {"kind": "assets", "description": "item description", "discount_percent": 10},
    ],
)
def test_items_written_as_the_reference_writes_them_are_taken(api: Api, change: dict[str, Any]) -> None:
    answer = api.invoice(invoice(api.contact(), items=[item(**change)]))
    assert answer.status_code == 201, answer.text


def test_an_invoice_is_answered_with_its_computed_totals_and_sideloaded_items(api: Api) -> None:
    answer = api.invoice(invoice(api.contact(), items=[item(), item(concept="Tuercas", unitary_amount="0.35")]))
    document = answer.json()
    assert document["data"]["attributes"]["total_amount_without_taxes"] == "25.50"
    assert document["data"]["attributes"]["vat_amount"] == "5.36"  # 5.355 rounded half up
    assert document["data"]["attributes"]["total_amount"] == "30.86"
    assert [i["attributes"]["quantity"] for i in document["included"]] == ["30", "30"]


def test_an_expense_number_is_unique_per_supplier_and_year(api: Api) -> None:
    contact_id = api.contact()
    assert api.invoice(invoice(contact_id)).status_code == 201
    again = api.invoice(invoice(contact_id))
    assert again.status_code == 422
    assert pointers(again) == ["/data/attributes/number"]
    assert api.invoice(invoice(contact_id, attributes={"issue_date": "2027-01-02"})).status_code == 201
    assert api.invoice(invoice(api.contact("B87654321"))).status_code == 201


def test_a_credit_note_is_typed_like_any_invoice(api: Api) -> None:
    original = api.invoice(invoice(api.contact())).json()["data"]["id"]

    def note(kind: str) -> dict[str, Any]:
        return {
            "data": {"type": "invoices", "relationships": {"amended_invoice": {"data": {"id": original, "type": kind}}}}
        }

    answer = api.invoice(note("bills"))
    assert answer.status_code == 422
    assert pointers(answer) == ["/data/relationships/amended_invoice/data/type"]
    made = api.invoice(note("invoices"))
    assert made.status_code == 201
    assert made.json()["data"]["attributes"]["total_amount"] == "-18.15"


# -- contacts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"tax_id": "B12345678"}, "/data/attributes/name"),
        ({"name": "  "}, "/data/attributes/name"),
        ({"name": "x", "tax_id": 12345678}, "/data/attributes/tax_id"),
        ({"name": "x", "country_code": "ES"}, "/data/attributes/country_code"),
        ({"name": "x", "client_number": "six"}, "/data/attributes/client_number"),
        ({"name": "x", "is_supplier_of_direct_goods": "no"}, "/data/attributes/is_supplier_of_direct_goods"),
        ({"name": "x", "is_supplier": True}, "/data/attributes/is_supplier"),
        ({"name": "x", "nif": "B12345678"}, "/data/attributes/nif"),
    ],
)
def test_contact_attributes_are_required_and_typed(api: Api, attributes: dict[str, Any], pointer: str) -> None:
    answer = api.call("POST", "/contacts", {"data": {"type": "contacts", "attributes": attributes}})
    assert answer.status_code == 422
    assert pointers(answer) == [pointer]
    assert api.peer.contacts == {}


def test_an_invalid_iban_is_refused_with_the_references_message(api: Api) -> None:
    attributes = {"name": "x", "bank_account_number": "ES92 3821 0601"}
    answer = api.call("POST", "/contacts", {"data": {"type": "contacts", "attributes": attributes}})
    assert answer.status_code == 422
    assert errors(answer) == [
        {
            "detail": "This Iban is not valid, please contact your bank and provide a new one.",
            "source": {"pointer": "/data/attributes/bank_account_number"},
        }
    ]
    attributes["bank_account_number"] = "ES92 3821 0601 2314 3339 5656"  # the reference's own, valid
    assert api.call("POST", "/contacts", {"data": {"type": "contacts", "attributes": attributes}}).status_code == 201


def test_contacts_are_listed_20_a_page_with_the_references_meta(api: Api) -> None:
    for n in range(21):
        api.contact(f"B{n:08d}", name=f"Supplier {n:02d}")
    first = api.call("GET", "/contacts", params={"sort": "name"}).json()
    second = api.call("GET", "/contacts", params={"sort": "name", "page[number]": "2"}).json()
    assert len(first["data"]) == 20
    assert [c["attributes"]["name"] for c in second["data"]] == ["Supplier 20"]
    assert second["meta"] == {"pagination_info": {"total_pages": 2, "current_page": 2, "total_results": 21}}


def test_the_tax_id_filter_matches_the_stored_tax_id_only(api: Api) -> None:
    api.contact("ESB12345678")
    assert api.call("GET", "/contacts", params={"filter[tax_id]": "B12345678"}).json()["data"] == []
    (found,) = api.call("GET", "/contacts", params={"filter[tax_id]": "esb12345678"}).json()["data"]
    assert found["attributes"]["tax_id"] == "ESB12345678"


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/contacts", {"filter[nif]": "B1"}, "filter[nif]"),
        ("/contacts", {"filter[kind]": "provider"}, "filter[kind]"),
        ("/contacts", {"filter[country]": "ES"}, "filter[country]"),
        ("/contacts", {"page[number]": "0"}, "page[number]"),
        ("/contacts", {"page[size]": "100"}, "page[size]"),
        ("/contacts", {"sort": "tax_id"}, "sort"),
        ("/contacts", {"include": "items"}, "include"),
        ("/invoices", {"filter[kind]": "expense"}, "filter[kind]"),
        ("/invoices", {"filter[period]": "2026-13"}, "filter[period]"),
        ("/invoices", {"filter[contact_id]": "abc"}, "filter[contact_id]"),
        ("/invoices", {"include": "contact"}, "include"),
    ],
)
def test_query_parameters_are_the_documented_ones(api: Api, path: str, params: dict[str, str], parameter: str) -> None:
    answer = api.call("GET", path, params=params)
    assert answer.status_code == 400
    assert sources(answer, "parameter") == [parameter]


def test_the_documented_invoice_filters_are_taken(api: Api) -> None:
    contact_id = api.contact()
    api.invoice(invoice(contact_id))
    for period in ("2026", "2026-11", "2026-Q4", "4Q-2026"):
        params = {
            "filter[kind]": "expenses",
            "filter[contact_id]": contact_id,
            "filter[period]": period,
            "include": "items",
        }
        answer = api.call("GET", "/invoices", params=params)
        assert answer.status_code == 200, (period, answer.text)
        assert [i["attributes"]["number"] for i in answer.json()["data"]] == ["F-2026-0042"]
    assert api.call("GET", "/invoices", params={"filter[period]": "2026-Q3"}).json()["data"] == []


# -- the named fault kinds ---------------------------------------------------------------------------------

QUIPU_KINDS = sorted(kind for kind, (peers, _text) in KINDS.items() if "quipu" in peers)


def test_the_peer_plays_every_kind_faults_py_gives_quipu() -> None:
    # Each of these has its own test below; a kind added for quipu without one fails here.
    assert (
        sorted(
            [
                "status_401",
                "status_404",
                "status_422",
                "status_429",
                "token_revoked",
                "contact_204",
                "contact_pages",
                "es_prefix",
            ]
        )
        == QUIPU_KINDS
    )


def test_status_401_refuses_one_request_and_the_token_stays_good(api: Api) -> None:
    api.peer.faults.force("status_401")
    refused = api.call("GET", "/contacts")
    assert refused.status_code == 401
    assert sources(refused, "header") == ["Authorization"]
    assert api.call("GET", "/contacts").status_code == 200
    assert api.peer.faults.injected["status_401"] == 1


def test_status_401_on_the_token_request(peer: QuipuPeer) -> None:
    peer.faults.force("status_401")
    assert Api(peer).token_request().status_code == 401
    assert Api(peer).token_request().status_code == 200


def test_token_revoked_kills_the_token_in_use_until_a_new_one_is_taken(api: Api) -> None:
    api.peer.faults.force("token_revoked")
    assert api.call("GET", "/contacts").status_code == 401
    assert api.call("GET", "/contacts").status_code == 401  # revoked, not a one-off
    api.login()
    assert api.call("GET", "/contacts").status_code == 200


def test_status_404_answers_a_read_of_an_existing_invoice_or_contact_404(api: Api) -> None:
    contact_id = api.contact()
    invoice_id = api.invoice(invoice(contact_id)).json()["data"]["id"]
    api.peer.faults.force("status_404", 2)
    for path in (f"/invoices/{invoice_id}", f"/contacts/{contact_id}"):
        answer = api.call("GET", path)
        assert answer.status_code == 404
        errors(answer)
    assert api.call("GET", f"/invoices/{invoice_id}").status_code == 200
    assert invoice_id in api.peer.invoices


def test_status_422_refuses_a_valid_invoice_for_good_and_names_whose_it_was(api: Api) -> None:
    contact_id = api.contact()
    api.peer.faults.force("status_422", 2)
    tagged = api.invoice(invoice(contact_id, attributes={"tags": "obra 7, bn:inv_8f3k2"}))
    untagged = api.invoice(invoice(contact_id, attributes={"tags": "", "number": "F-2"}))
    for answer in (tagged, untagged):
        assert answer.status_code == 422
        assert pointers(answer) == ["/data/attributes/issue_date"]  # not the number: no adoption to attempt
    assert api.peer.invoices == {}
    assert set(api.peer.faults.refused) == {"inv_8f3k2", "F-2"}
    assert "accounting period is closed" in api.peer.faults.refused["inv_8f3k2"]


def test_status_422_on_an_update_leaves_the_invoice_as_it_was(api: Api) -> None:
    created = api.invoice(invoice(api.contact())).json()["data"]["id"]
    api.peer.faults.force("status_422")
    change = {
        "data": {"type": "invoices", "id": created, "attributes": {"issue_date": "2026-11-04", "tags": "bn:inv_9"}}
    }
    assert api.call("PATCH", f"/invoices/{created}", change).status_code == 422
    assert api.peer.invoices[created].issue_date == "2026-11-03"
    assert set(api.peer.faults.refused) == {"inv_9"}


def test_status_429_is_answered_with_the_drafts_headers_only(api: Api) -> None:
    api.peer.faults.force("status_429")
    answer = api.call("GET", "/contacts")
    assert answer.status_code == 429
    assert answer.headers["RateLimit-Remaining"] == "0"
    assert answer.headers["RateLimit-Reset"] == "1"  # the peer's window in this fixture
    assert "Retry-After" not in answer.headers
    errors(answer)
    assert api.call("GET", "/contacts").status_code == 200


def test_contact_204_makes_the_contact_and_answers_no_content(api: Api) -> None:
    api.peer.faults.force("contact_204")
    answer = api.call("POST", "/contacts", {"data": {"type": "contacts", "attributes": {"name": "x", "tax_id": "B1"}}})
    assert answer.status_code == 204
    assert answer.content == b""
    (made,) = api.peer.contacts.values()
    assert made.attributes["tax_id"] == "B1"


def test_contact_pages_answers_a_listing_a_contact_a_page_on_every_page(api: Api) -> None:
    for n in range(3):
        api.contact(f"B{n:08d}", name=f"Supplier {n}")
    api.peer.faults.force("contact_pages")
    pages = [api.call("GET", "/contacts", params={"page[number]": str(n)}).json() for n in (1, 2, 3)]
    assert [[c["attributes"]["name"] for c in p["data"]] for p in pages] == [
        ["Supplier 0"],
        ["Supplier 1"],
        ["Supplier 2"],
    ]
    assert [p["meta"]["pagination_info"]["total_pages"] for p in pages] == [3, 3, 3]
    assert len(api.call("GET", "/contacts").json()["data"]) == 3  # the next listing: drawn again, not forced


def test_es_prefix_stores_a_spanish_tax_id_with_the_vat_prefix(api: Api) -> None:
    api.peer.faults.force("es_prefix")
    api.contact("B12345678")
    (made,) = api.peer.contacts.values()
    assert made.attributes["tax_id"] == "ESB12345678"
    assert api.call("GET", "/contacts", params={"filter[tax_id]": "B12345678"}).json()["data"] == []


def test_kinds_come_from_local_faults_seeded() -> None:
    # The same spec twice: the same contacts stored with the prefix, in the same order.
    stored = []
    for _ in range(2):
        peer = QuipuPeer(
            QuipuOptions(app_id=APP_ID, app_secret=APP_SECRET, limit=1000),
            faults=FaultSettings.parse("es_prefix=0.5,seed=3").plan("quipu"),
        )
        peer.start()
        try:
            api = Api(peer)
            api.login()
            for n in range(12):
                api.contact(f"B{n:08d}")
            stored.append([c.attributes["tax_id"] for c in peer.contacts.values()])
        finally:
            peer.stop()
    assert stored[0] == stored[1]
    assert 0 < sum(t.startswith("ES") for t in stored[0]) < 12


def test_a_query_parameter_given_twice_is_refused(api: Api) -> None:
    answer = requests.get(
        f"{api.url}/contacts?filter[tax_id]=B1&filter[tax_id]=B2",
        headers={"Authorization": f"Bearer {api.token}", "Accept": MEDIA_TYPE},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 400
    assert sources(answer, "parameter") == ["filter[tax_id]"]
