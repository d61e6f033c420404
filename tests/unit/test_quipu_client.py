"""The Quipu client's pure parts: Basic credentials, both expires_in forms, error typing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter

from invoice_bridge.errors import PlatformError, RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, StateTable
from invoice_bridge.observability import metrics
from invoice_bridge.quipu.client import (
    DUPLICATE_NUMBER,
    AccessToken,
    QuipuClient,
    RemoteInvoice,
    RemoteItem,
    TokenStore,
    basic_credentials,
    normalize_tax_id,
    token_from_response,
)


def test_basic_credentials_are_url_safe_base64_as_the_reference_shows() -> None:
    app_id = "PtNxfCsGklimErQqVTeAFDUTUjdMVCrjNFIlrReIimSHKMoOaWxAxwHPNevbIwFV"
    app_secret = "HRcqlIcHjYUWunjgVmAQiWYjbYFAGSoLhpXkHoGPhjdwQmXmRIxDQOQJOANpfnbD"
    assert basic_credentials(app_id, app_secret) == (
        "Basic UHROeGZDc0drbGltRXJRcVZUZUFGRFVUVWpkTVZDcmpORklsclJlSWltU0hLTW9PYVd4QXh3SFBOZXZiSXdGVjpIUmNx"
        "bEljSGpZVVd1bmpnVm1BUWlXWWpiWUZBR1NvTGhwWGtIb0dQaGpkd1FtWG1SSXhEUU9RSk9BTnBmbmJE"
    )
    # URL-safe: '-' and '_' where standard base64 has '+' and '/'.
    assert basic_credentials("\xfb\xff", "?") == "Basic w7vDvzo_"


def test_expires_in_as_seconds() -> None:
    token = token_from_response({"access_token": "t", "expires_in": 7200}, requested_at=1_000.0)
    assert token.expires_at == 8_200.0


def test_expires_in_as_an_epoch_with_created_at_uses_the_lifetime_on_our_clock() -> None:
    # The reference's own example: created 1456339025, expires_in 1456346225 (two hours later).
    document = {"access_token": "t", "created_at": 1456339025, "expires_in": 1456346225}
    token = token_from_response(document, requested_at=1_800_000_000.0)
    assert token.expires_at == 1_800_000_000.0 + 7200


def test_expires_in_as_an_epoch_without_created_at() -> None:
    token = token_from_response({"access_token": "t", "expires_in": 1_800_003_600}, requested_at=1_800_000_000.0)
    assert token.expires_at == 1_800_003_600


def test_a_token_is_renewed_ahead_of_expiry_and_never_used_after_it() -> None:
    long = AccessToken(SecretStr("t"), 0.0, 7200.0)
    assert not long.due_for_renewal(6800.0)
    assert long.due_for_renewal(6900.0)
    assert long.usable(7180.0)
    assert not long.usable(7190.0)
    assert not long.usable(7300.0)
    short = AccessToken(long.value, 0.0, 10.0)  # whatever the lifetime: renewal comes before expiry
    assert short.due_for_renewal(8.0)
    assert short.usable(9.0)
    assert not short.usable(10.0)


def test_a_malformed_token_response_is_a_retryable_platform_error() -> None:
    with pytest.raises(PlatformError) as caught:
        token_from_response({"token_type": "bearer"}, requested_at=0.0)
    assert caught.value.retryable


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/vnd.quipu.v1+json"
    response.reason = "reason"
    return response


def _client() -> QuipuClient:
    return QuipuClient.__new__(QuipuClient)


def _error(status: int, body: Any) -> PlatformError:
    client = _client()
    client._clock = lambda: 0.0
    client.limiter = None
    return client.error_from(_response(status, body))


def test_a_duplicate_number_is_a_permanent_422_with_its_own_code() -> None:
    body = {"errors": [{"detail": "has already been taken", "source": {"pointer": "/data/attributes/number"}}]}
    error = _error(422, body)
    assert (error.status, error.code, error.field, error.retryable) == (422, DUPLICATE_NUMBER, "number", False)
    assert "/data/attributes/number: has already been taken" in error.message


def test_other_422s_are_permanent_validation_errors_with_every_detail() -> None:
    body = {
        "errors": [
            {"detail": "Can not be blank.", "source": {"pointer": "/data/attributes/name"}},
            {"detail": "This Iban is not valid", "source": {"pointer": "/data/attributes/bank_account_number"}},
        ]
    }
    error = _error(422, body)
    assert (error.code, error.field, error.retryable) == ("validation", "name", False)
    assert "bank_account_number: This Iban is not valid" in error.message


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(401, True), (404, False), (406, False), (415, False), (429, True), (500, True), (503, True)],
)
def test_statuses_are_typed_retryable_or_permanent(status: int, retryable: bool) -> None:
    assert _error(status, {"errors": [{"detail": "x"}]}).retryable is retryable


def test_tax_ids_compare_without_the_es_prefix_and_separators() -> None:
    assert normalize_tax_id("ESB85033470") == normalize_tax_id("b-85033470") == "B85033470"
    assert normalize_tax_id("43456628J") == "43456628J"


# -- requests, against a scripted Quipu --------------------------------------------------------------

NOW = 1_800_000_000.0
Scripted = tuple[int, bytes]


class ScriptedQuipu(BaseAdapter):
    """Answers each request with the next scripted (status, JSON-API body), and keeps what was sent."""

    def __init__(self, script: list[Scripted]) -> None:
        super().__init__()
        self.script = list(script)
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.timeouts.append(kwargs.get("timeout"))
        status, body = self.script.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = "application/vnd.quipu.v1+json"
        response._content = body
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None

    def query(self, index: int = 0) -> dict[str, list[str]]:
        return parse_qs(urlsplit(str(self.sent[index].url)).query)


class MemoryTable:
    """The state table's token item in memory: what TokenStore reads, writes and conditionally deletes."""

    table_name = "state"

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, item: dict[str, Any]) -> None:
        self.items[(item["pk"]["S"], item["sk"]["S"])] = item

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.items.get((pk, sk))

    def delete_if(self, pk: str, sk: str, condition: str, values: dict[str, Any]) -> bool:
        assert condition == "access_token = :t"
        item = self.items.get((pk, sk))
        if item is None or item["access_token"] != values[":t"]:
            return False
        del self.items[(pk, sk)]
        return True


class FreeLeases:
    def acquire(self, name: str, owner: str, seconds: float) -> bool:
        return True

    def release(self, name: str, owner: str) -> None:
        return None


def token(value: str) -> AccessToken:
    return AccessToken(SecretStr(value), NOW, NOW + 3600)


def scripted_client(script: list[Scripted]) -> tuple[QuipuClient, ScriptedQuipu, TokenStore]:
    """A client whose shared token is `tok-1` (no token request) talking to a scripted Quipu."""
    adapter = ScriptedQuipu(script)
    session = requests.Session()
    session.mount("https://", adapter)
    tokens = TokenStore(cast(StateTable, MemoryTable()), "app")
    tokens.put(token("tok-1"))
    client = QuipuClient(
        "https://quipu.test",
        SecretStr("app"),
        SecretStr("secret"),
        tokens=tokens,
        leases=cast(Leases, FreeLeases()),
        session=session,
        clock=lambda: NOW,
        sleep=lambda _: None,
    )
    return client, adapter, tokens


def invoice_resource(invoice_id: str, number: str, contact_id: str | None, total: str = "12.10") -> dict[str, Any]:
    relationships: dict[str, Any] = {"items": {"data": [{"id": f"{invoice_id}-1", "type": "book_entry_items"}]}}
    if contact_id is not None:
        relationships["contact"] = {"data": {"id": contact_id, "type": "contacts"}}
    return {
        "id": invoice_id,
        "type": "invoices",
        "attributes": {"kind": "expenses", "number": number, "total_amount": total},
        "relationships": relationships,
    }


def body(data: Any, **extra: Any) -> bytes:
    return json.dumps({"data": data, **extra}).encode()


NOT_FOUND: Scripted = (404, body(None, errors=[{"detail": "Not found"}]))


def test_get_invoice_asks_for_its_items_and_a_404_means_quipu_no_longer_has_it() -> None:
    client, quipu, _ = scripted_client([(200, body(invoice_resource("7", "F-1", "c1"))), NOT_FOUND])
    found = client.get_invoice("7", Deadline.unlimited())
    assert found is not None
    assert (found.id, found.number, found.contact_id, found.total_amount) == ("7", "F-1", "c1", Decimal("12.10"))
    assert [item.id for item in found.items] == ["7-1"]
    assert (quipu.sent[0].method, urlsplit(str(quipu.sent[0].url)).path) == ("GET", "/invoices/7")
    assert quipu.query(0) == {"include": ["items"]}
    assert client.get_invoice("8", Deadline.unlimited()) is None


def test_deleting_an_invoice_already_gone_is_fine() -> None:
    client, quipu, _ = scripted_client([(204, b""), NOT_FOUND])
    client.delete_invoice("7", Deadline.unlimited())
    client.delete_invoice("7", Deadline.unlimited())  # no error: the invoice is gone either way
    assert [(r.method, urlsplit(str(r.url)).path) for r in quipu.sent] == [("DELETE", "/invoices/7")] * 2


def test_other_errors_of_get_and_delete_are_raised() -> None:
    client, _, _ = scripted_client([(403, body(None, errors=[{"detail": "no"}]))] * 2)
    with pytest.raises(PlatformError) as caught:
        client.get_invoice("7", Deadline.unlimited())
    assert caught.value.status == 403
    with pytest.raises(PlatformError):
        client.delete_invoice("7", Deadline.unlimited())


def test_find_expense_invoice_filters_by_supplier_and_year_and_matches_number_and_contact() -> None:
    # Given a page where the number matches another supplier's invoice first, then this supplier's other invoice
    page = [
        invoice_resource("1", "F-1", "someone-else"),
        invoice_resource("2", "F-2", "c1"),
        invoice_resource("3", "F-1", "c1"),
    ]
    client, quipu, _ = scripted_client([(200, body(page))])
    found = client.find_expense_invoice("c1", "F-1", 2026, Deadline.unlimited())
    assert found is not None
    assert found.id == "3"
    assert quipu.query(0) == {
        "filter[kind]": ["expenses"],
        "filter[contact_id]": ["c1"],
        "filter[period]": ["2026"],
        "include": ["items"],
        "page[number]": ["1"],
    }


def test_find_expense_invoice_accepts_an_answer_without_contact_and_finds_nothing_else() -> None:
    client, _, _ = scripted_client([(200, body([invoice_resource("4", "F-1", None)])), (200, body([]))])
    found = client.find_expense_invoice("c1", "F-1", 2026, Deadline.unlimited())
    assert found is not None
    assert found.id == "4"
    assert client.find_expense_invoice("c1", "F-1", 2026, Deadline.unlimited()) is None


def test_attach_sends_the_pdf_as_multipart_with_a_longer_read_timeout() -> None:
    client, quipu, _ = scripted_client([(201, body({"id": "att-1", "type": "attachments"}))])
    assert client.attach("7", "F-1.pdf", b"%PDF-1.4", Deadline.unlimited()) == "att-1"
    (sent,) = quipu.sent
    assert (sent.method, urlsplit(str(sent.url)).path) == ("POST", "/attachments")
    assert quipu.timeouts == [(3.05, 20.0)]
    multipart = cast(bytes, sent.body)
    assert b'name="file"; filename="F-1.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4' in multipart
    assert b'name="book_entry_id"\r\n\r\n7' in multipart


def test_an_attachment_answer_without_data_is_a_retryable_quipu_error() -> None:
    client, _, _ = scripted_client([(201, b"")])
    with pytest.raises(PlatformError) as caught:
        client.attach("7", "F-1.pdf", b"%PDF", Deadline.unlimited())
    error = caught.value
    assert (error.platform, error.status, error.retryable) == ("quipu", 201, True)
    assert error.message == "attachment response without data"


def test_dropping_a_refused_token_keeps_one_another_worker_already_shared() -> None:
    store = TokenStore(cast(StateTable, MemoryTable()), "app")
    store.put(token("new"))
    store.drop(token("old"))  # another worker replaced it: kept
    assert store.get() == token("new")
    store.drop(token("new"))
    assert store.get() is None


def test_a_refused_token_is_dropped_counted_and_the_request_sent_again_with_a_new_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Quipu refusing the shared token once
    client, quipu, tokens = scripted_client(
        [(401, body(None, errors=[{"detail": "expired"}])), (200, body(invoice_resource("7", "F-1", "c1")))]
    )
    original_get = tokens.get
    renewed: list[AccessToken] = []

    def get_then_renewed() -> AccessToken | None:
        shared = original_get()
        if shared is None:  # dropped: another worker already shares a new one
            renewed.append(token("tok-2"))
            tokens.put(renewed[0])
            return renewed[0]
        return shared

    tokens.get = get_then_renewed  # type: ignore[method-assign]
    metrics.clear_metrics()

    # When a request meets the 401
    assert client.get_invoice("7", Deadline.unlimited()) is not None

    # Then the token was dropped everywhere, the request sent again with the new one, and the refusal counted
    assert [r.headers["Authorization"] for r in quipu.sent] == ["Bearer tok-1", "Bearer tok-2"]
    assert renewed
    assert "QuipuTokenRefused" in metrics.metric_set
    metrics.clear_metrics()


class HeldLeases(FreeLeases):
    """Another worker holds the renewal lease."""

    def acquire(self, name: str, owner: str, seconds: float) -> bool:
        return False


def test_a_worker_waiting_for_another_renewer_stops_polling_when_the_deadline_is_reached() -> None:
    # Given no shared token and the renewal lease held elsewhere
    polls: list[float] = []
    client = QuipuClient(
        "https://quipu.test",
        SecretStr("app"),
        SecretStr("secret"),
        tokens=TokenStore(cast(StateTable, MemoryTable()), "app"),
        leases=cast(Leases, HeldLeases()),
        clock=lambda: NOW,
        sleep=polls.append,
    )
    # When only two polls fit before the deadline, Then it hands the work back after exactly those two
    with pytest.raises(RetryLater) as raised:
        client.access_token(Deadline(0.4, clock=lambda: 0.0))
    assert polls == [0.2, 0.2]
    assert raised.value.retry_after == 2


def test_a_token_another_worker_shared_is_kept_for_the_next_calls() -> None:
    # Given the renewal lease held elsewhere, and the other worker sharing its token during our second poll
    tokens = TokenStore(cast(StateTable, MemoryTable()), "app")
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            tokens.put(token("shared-elsewhere"))

    client = QuipuClient(
        "https://quipu.test",
        SecretStr("app"),
        SecretStr("secret"),
        tokens=tokens,
        leases=cast(Leases, HeldLeases()),
        clock=lambda: NOW,
        sleep=sleep,
    )
    assert client.access_token(Deadline.unlimited()).value.get_secret_value() == "shared-elsewhere"
    # When the shared item is gone (another worker dropped it) before the next call
    tokens.drop(token("shared-elsewhere"))
    # Then this worker still holds the token it waited for, and waits no more
    assert client.access_token(Deadline.unlimited()).value.get_secret_value() == "shared-elsewhere"
    assert polls == [0.2, 0.2]


def test_waiting_for_another_renewer_in_vain_says_why_the_work_is_handed_back() -> None:
    client = QuipuClient(
        "https://quipu.test",
        SecretStr("app"),
        SecretStr("secret"),
        tokens=TokenStore(cast(StateTable, MemoryTable()), "app"),
        leases=cast(Leases, HeldLeases()),
        clock=lambda: NOW,
        sleep=lambda _: None,
    )
    with pytest.raises(RetryLater) as raised:
        client.access_token(Deadline(1.0, clock=lambda: 0.0))
    assert raised.value.message == "quipu: another worker is renewing the access token"


def test_an_answer_that_is_not_a_json_api_document_is_a_retryable_quipu_error() -> None:
    client, _, _ = scripted_client([(200, b'{"data": "not a resource"}')])
    with pytest.raises(PlatformError) as caught:
        client.get_invoice("7", Deadline.unlimited())
    error = caught.value
    assert (error.platform, error.status, error.retryable) == ("quipu", 200, True)
    assert error.message == "response is not a JSON-API document"


@pytest.mark.parametrize(
    ("status", "body", "message", "code", "field"),
    [
        # every error is kept, in order: a detail, a title when there is no detail, "invalid" when neither
        (
            422,
            {
                "errors": [
                    "not an object",
                    {"title": "Invalid attribute", "source": {"pointer": "/data/attributes/vat_percent"}},
                    {"source": "not an object"},
                    {"detail": "Can not be blank.", "source": {"pointer": "/data/relationships/contact/x"}},
                ]
            },
            "/data/attributes/vat_percent: Invalid attribute; invalid; "
            "/data/relationships/contact/x: Can not be blank.",
            "validation",
            "vat_percent",
        ),
        (409, {"errors": [{"detail": "conflict"}]}, "conflict", None, None),
        (422, {"errors": [{}]}, "invalid", "validation", None),
        # an errors list holding no object at all still names the failure
        (400, {"errors": ["not an object"]}, "invalid", None, None),
        # not Quipu's error document: the base reading, then the reason
        (400, {"error": {"message": "plain", "code": "E1"}}, "plain", "E1", None),
        (400, {"errors": []}, "reason", None, None),
        (400, ["not", "an", "object"], "reason", None, None),
    ],
)
def test_error_documents_are_read_detail_by_detail(
    status: int, body: Any, message: str, code: str | None, field: str | None
) -> None:
    error = _error(status, body)
    assert (error.message, error.code, error.field) == (message, code, field)


def test_an_error_body_that_is_not_json_names_the_status_when_there_is_no_reason() -> None:
    response = _response(503, {})
    response._content = b"<html>gateway</html>"
    response.reason = ""
    client = _client()
    client._clock = lambda: 0.0
    client.limiter = None
    assert client.error_from(response).message == "HTTP 503"


def test_an_invoice_answer_is_read_field_by_field_with_its_sideloaded_items_and_credit_notes() -> None:
    # Given Quipu's answer to a PATCH: two items (one not sideloaded), a credit note, a number sent as a number
    resource = {
        "id": "7",
        "type": "invoices",
        "attributes": {"kind": "expenses", "number": 123, "total_amount": "-12.10"},
        "relationships": {
            "contact": {"data": {"id": "c1", "type": "contacts"}},
            "items": {"data": [{"id": "i1", "type": "book_entry_items"}, {"id": "i2", "type": "book_entry_items"}]},
            "amending_invoices": {"data": [{"id": "9", "type": "invoices"}]},
        },
    }
    included = [
        {"id": "i1", "type": "book_entry_items", "attributes": {"concept": "Hormigón"}},
        {"id": "i2", "type": "contacts", "attributes": {"concept": "not an item"}},
    ]
    client, quipu, _ = scripted_client([(200, body(resource, included=included))])
    # When
    found = client.update_invoice("7", {"data": {}}, Deadline.unlimited())
    # Then
    assert found == RemoteInvoice(
        id="7",
        number="123",
        kind="expenses",
        contact_id="c1",
        total_amount=Decimal("-12.10"),
        items=(RemoteItem("i1", "Hormigón"), RemoteItem("i2", "")),
        amending_invoice_ids=("9",),
    )
    assert (quipu.sent[0].method, urlsplit(str(quipu.sent[0].url)).path) == ("PATCH", "/invoices/7")


def test_an_invoice_answer_without_number_contact_or_relations_reads_as_none_and_empty() -> None:
    resource = {"id": "8", "type": "invoices", "attributes": {"total_amount": 1.5}}
    client, _, _ = scripted_client([(201, body(resource))])
    created = client.create_invoice({"data": {}}, Deadline.unlimited())
    assert created == RemoteInvoice("8", None, None, None, None, (), ())


def test_an_invoice_answer_without_data_is_a_retryable_quipu_error_with_its_status() -> None:
    client, _, _ = scripted_client([(201, body(None))])
    with pytest.raises(PlatformError) as caught:
        client.create_invoice({"data": {}}, Deadline.unlimited())
    error = caught.value
    assert (error.platform, error.status, error.retryable) == ("quipu", 201, True)
    assert error.message == "invoice response without data"
