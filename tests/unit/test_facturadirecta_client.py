"""FacturaDirecta's XML client in process (a fake transport): auth, base URL, error mapping, retries."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter

from invoice_bridge.errors import ConfigurationError, PlatformError
from invoice_bridge.facturadirecta import xml
from invoice_bridge.facturadirecta.client import FacturaDirectaXmlClient, default_base_url
from invoice_bridge.facturadirecta.models import ProviderDocument
from invoice_bridge.facturadirecta.settings import FacturaDirectaSettings
from invoice_bridge.http import Deadline

TOKEN = "03334b0a261a2c355ae2db022a963d8e"


class Canned(BaseAdapter):
    """Answers each request with the next canned (status, body) or raises the canned exception."""

    def __init__(self, answers: list[tuple[int, bytes] | Exception]) -> None:
        super().__init__()
        self.answers = answers
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        response = requests.Response()
        response.status_code, response._content = answer
        response.headers["Content-Type"] = "application/xml"
        response.reason = "Reason"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def client(answers: list[tuple[int, bytes] | Exception]) -> tuple[FacturaDirectaXmlClient, Canned]:
    adapter = Canned(answers)
    session = requests.Session()
    session.mount("https://", adapter)
    api = FacturaDirectaXmlClient(
        default_base_url("miempresa"), lambda: SecretStr(TOKEN), session=session, sleep=lambda _s: None
    )
    return api, adapter


ORDER = b"<purchaseOrder><id>5</id><netTotal>1.00</netTotal><grossTotal>1.21</grossTotal></purchaseOrder>"


def test_basic_auth_with_the_token_and_x_on_the_account_url() -> None:
    api, adapter = client([(200, ORDER)])
    api.get_purchase_order("5", Deadline.unlimited())
    (sent,) = adapter.requests
    assert sent.url == "https://miempresa.facturadirecta.com/api/purchaseOrders/5.xml"
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{TOKEN}:x".encode()).decode()
    assert sent.headers["Accept"] == "application/xml"


def test_invalid_input_data_is_permanent_with_the_platform_message() -> None:
    api, _ = client([(400, xml.build_error(400, "INVALID_INPUT_DATA", "No existe el proveedor 9"))])
    with pytest.raises(PlatformError) as caught:
        api.get_purchase_order("5", Deadline.unlimited())
    assert caught.value.retryable is False
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "INVALID_INPUT_DATA",
        "No existe el proveedor 9",
    )
    assert TOKEN not in str(caught.value)


def test_invalid_input_data_is_permanent_even_under_a_retryable_status() -> None:
    api, _ = client([(503, xml.build_error(503, "INVALID_INPUT_DATA", "x"))])
    with pytest.raises(PlatformError) as caught:
        api.request("POST", "/api/purchaseOrders.xml", deadline=Deadline.unlimited())
    assert caught.value.retryable is False


def test_5xx_is_retryable_and_a_write_is_not_repeated_after_it() -> None:
    api, adapter = client([(503, xml.build_error(503, "INTERNAL_ERROR", "caído")), (201, ORDER)])
    with pytest.raises(PlatformError) as caught:
        api.request("POST", "/api/purchaseOrders.xml", deadline=Deadline.unlimited(), data=b"<purchaseOrder/>")
    assert caught.value.retryable is True
    assert len(adapter.requests) == 1


def test_reads_are_retried_after_5xx_with_a_non_xml_body() -> None:
    api, adapter = client([(502, b"<html>Bad gateway</html>"), (200, ORDER)])
    assert api.get_purchase_order("5", Deadline.unlimited()).id == "5"
    assert len(adapter.requests) == 2


@pytest.mark.parametrize(
    ("exception", "code"), [(requests.ReadTimeout("slow"), "timeout"), (requests.ConnectionError("down"), "network")]
)
def test_timeouts_and_network_errors_are_retryable(exception: Exception, code: str) -> None:
    api, _ = client([exception])
    with pytest.raises(PlatformError) as caught:
        api.request("POST", "/api/purchaseOrders.xml", deadline=Deadline.unlimited(), data=b"x")
    assert (caught.value.retryable, caught.value.code) == (True, code)


def test_unreadable_success_answer_is_retryable() -> None:
    api, _ = client([(200, b"<purchaseOrder><id>")])
    with pytest.raises(PlatformError) as caught:
        api.get_purchase_order("5", Deadline.unlimited())
    assert (caught.value.retryable, caught.value.code) == (True, "bad_response")


def test_provider_lookup_keeps_only_an_exact_tax_code() -> None:
    body = (
        b"<providers><provider><id>9</id><taxCode>B123456789</taxCode></provider>"
        b"<provider><id>4</id><taxCode><![CDATA[b-12345678]]></taxCode></provider></providers>"
    )
    api, adapter = client([(200, body)])
    found = api.find_provider("B12345678", Deadline.unlimited())
    assert found is not None
    assert found.id == "4"
    assert "taxCode=B12345678" in (adapter.requests[0].url or "")


def test_the_provider_lookup_asks_for_the_largest_page() -> None:
    api, adapter = client([(200, b"<providers></providers>")])
    assert api.find_provider("B12345678", Deadline.unlimited()) is None
    assert "limit=250" in (adapter.requests[0].url or "")


def providers_page(*providers: tuple[str, str]) -> bytes:
    """A `<providers>` answer: (id, taxCode) each."""
    items = b"".join(
        b"<provider><id>%s</id><taxCode>%s</taxCode></provider>" % (i.encode(), t.encode()) for i, t in providers
    )
    return b"<providers>" + items + b"</providers>"


def query_of(request: requests.PreparedRequest) -> dict[str, str]:
    return dict(part.split("=", 1) for part in (request.path_url or "").split("?", 1)[1].split("&"))


def test_a_provider_on_the_second_page_is_found_by_paging_with_start() -> None:
    # Given a platform that answers one provider a page, the first a near match only
    api, adapter = client([(200, providers_page(("9", "B123456789"))), (200, providers_page(("12", "B12345678")))])
    # When the provider is looked up
    found = api.find_provider("B12345678", Deadline.unlimited())
    # Then the second page, asked from where the first ended, holds it
    assert found is not None
    assert found.id == "12"
    assert [query_of(r)["start"] for r in adapter.requests] == ["0", "1"]
    assert {query_of(r)["taxCode"] for r in adapter.requests} == {"B12345678"}


def test_the_provider_search_ends_on_an_empty_page() -> None:
    page = providers_page(("9", "B123456789"), ("10", "B123456780"))
    api, adapter = client([(200, page), (200, b"<providers></providers>")])
    assert api.find_provider("B12345678", Deadline.unlimited()) is None
    assert [query_of(r)["start"] for r in adapter.requests] == ["0", "2"]


def test_a_found_provider_costs_one_request() -> None:
    api, adapter = client([(200, providers_page(("4", "B12345678")))])
    found = api.find_provider("B12345678", Deadline.unlimited())
    assert found is not None
    assert found.id == "4"
    assert len(adapter.requests) == 1


def test_a_listing_that_ignores_start_is_an_error_not_a_missing_provider() -> None:
    # A platform that answers the same page whatever `start` says would make "not found" a guess
    page = providers_page(("9", "B123456789"))
    api, adapter = client([(200, page), (200, page)])
    with pytest.raises(PlatformError) as caught:
        api.find_provider("B12345678", Deadline.unlimited())
    assert (caught.value.retryable, caught.value.code) == (False, "bad_response")
    assert "start=1" in caught.value.message
    assert len(adapter.requests) == 2


def test_unreadable_provider_answers_name_what_was_read_and_the_status() -> None:
    api, _ = client([(200, b"<providers>"), (201, b"<provider>")])
    with pytest.raises(PlatformError) as caught:
        api.find_provider("B12345678", Deadline.unlimited())
    assert caught.value.message.startswith("providers: unreadable answer")
    assert (caught.value.status, caught.value.code) == (200, "bad_response")
    with pytest.raises(PlatformError) as caught:
        api.create_provider(ProviderDocument(name="A", tax_code="B12345678"), Deadline.unlimited())
    assert caught.value.message.startswith("provider: unreadable answer")
    assert caught.value.status == 201


def test_create_reads_the_order_again_when_the_answer_lacks_totals() -> None:
    from tests.unit.test_facturadirecta_xml import document_with

    api, adapter = client([(201, b"<purchaseOrder><id>5</id></purchaseOrder>"), (200, ORDER)])
    record = api.create_purchase_order(document_with("x"), Deadline.unlimited())
    assert str(record.gross_total) == "1.21"
    assert [r.method for r in adapter.requests] == ["POST", "GET"]


def test_every_write_says_its_body_is_utf_8_xml() -> None:
    from tests.unit.test_facturadirecta_xml import document_with

    api, adapter = client([(201, ORDER), (200, ORDER), (201, b"<provider><id>9</id><name>A</name></provider>")])
    api.create_purchase_order(document_with("x"), Deadline.unlimited())
    api.update_purchase_order("5", document_with("x"), Deadline.unlimited())
    api.create_provider(ProviderDocument(name="A", tax_code="B12345678"), Deadline.unlimited())
    assert [(r.method, r.headers["Content-Type"]) for r in adapter.requests] == [
        ("POST", "application/xml; charset=utf-8"),
        ("PUT", "application/xml; charset=utf-8"),
        ("POST", "application/xml; charset=utf-8"),
    ]


BASE: Mapping[str, str] = {
    "STATE_TABLE_NAME": "t",
    "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q.fifo",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/d.fifo",
    "MAX_RECEIVE_COUNT": "10",
    "BUILDNEXION_API_URL": "https://api.buildnexion.com/v1",
    "BUILDNEXION_SECRET_ARN": "bn",
    "FACTURADIRECTA_SECRET_ARN": "fd",
}


def test_settings_empty_api_url_means_the_account_url() -> None:
    assert FacturaDirectaSettings.from_env({**BASE, "FACTURADIRECTA_API_URL": ""}).facturadirecta_api_url is None
    url = FacturaDirectaSettings.from_env(
        {**BASE, "FACTURADIRECTA_API_URL": "http://127.0.0.1:9"}
    ).facturadirecta_api_url
    assert url == "http://127.0.0.1:9"


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="FACTURADIRECTA_SECRET_ARN"):
        FacturaDirectaSettings.from_env({k: v for k, v in BASE.items() if k != "FACTURADIRECTA_SECRET_ARN"})
    with pytest.raises(ConfigurationError, match="FACTURADIRECTA_API_URL"):
        FacturaDirectaSettings.from_env({**BASE, "FACTURADIRECTA_API_URL": "not a url"})


@pytest.mark.parametrize("value", [None, "0", "five"])
def test_the_last_receive_must_be_set_and_be_a_positive_count(value: str | None) -> None:
    environ = {k: v for k, v in BASE.items() if k != "MAX_RECEIVE_COUNT"}
    if value is not None:
        environ["MAX_RECEIVE_COUNT"] = value
    with pytest.raises(ConfigurationError, match="MAX_RECEIVE_COUNT"):
        FacturaDirectaSettings.from_env(environ)


def orders_tagged(*orders: tuple[str, str]) -> bytes:
    """A `<purchaseOrders>` answer: (id, tag) each."""
    items = b"".join(
        b"<purchaseOrder><id>%s</id><tags><tag>%s</tag></tags></purchaseOrder>" % (i.encode(), t.encode())
        for i, t in orders
    )
    return b"<purchaseOrders>" + items + b"</purchaseOrders>"


def test_order_lookup_asks_for_the_tag_and_keeps_only_orders_that_carry_it() -> None:
    # Given an answer where the platform's search also matched an order tagged otherwise
    api, adapter = client([(200, orders_tagged(("3", "bn:po_550"), ("7", "bn:po_55")))])
    # When the order of bn:po_55 is looked up
    found = api.find_purchase_order_by_tag("bn:po_55", Deadline.unlimited())
    # Then the query names the tag and the largest page, and only the exact tag counts
    assert found is not None
    assert found.id == "7"
    (sent,) = adapter.requests
    assert sent.method == "GET"
    assert (sent.path_url or "").split("?")[1].split("&") == ["tag=bn%3Apo_55", "limit=250"]


def test_order_lookup_without_a_match_is_none() -> None:
    api, _ = client([(200, orders_tagged(("3", "bn:po_550")))])
    assert api.find_purchase_order_by_tag("bn:po_55", Deadline.unlimited()) is None


@pytest.mark.parametrize(
    ("ids", "oldest"),
    [
        (["10", "9"], "9"),  # numbers compare as numbers, not as text
        (["abc", "1000"], "1000"),  # a non-numeric id comes after every numeric one
        (["abc", "9223372036854775809"], "9223372036854775809"),  # however long the number
        (["b", "a"], "a"),
    ],
)
def test_several_orders_with_the_tag_resolve_to_the_oldest(ids: list[str], oldest: str) -> None:
    api, _ = client([(200, orders_tagged(*((i, "bn:po_55") for i in ids)))])
    found = api.find_purchase_order_by_tag("bn:po_55", Deadline.unlimited())
    assert found is not None
    assert found.id == oldest


def test_an_unreadable_list_of_orders_names_what_was_read() -> None:
    api, _ = client([(200, b"<purchaseOrders>")])
    with pytest.raises(PlatformError) as caught:
        api.find_purchase_order_by_tag("bn:po_55", Deadline.unlimited())
    assert caught.value.message.startswith("purchase orders: unreadable answer")


def test_an_unreadable_order_names_what_was_read_on_get_create_and_update() -> None:
    from tests.unit.test_facturadirecta_xml import document_with

    api, _ = client([(200, b"<purchaseOrder>"), (201, b"<purchaseOrder>"), (200, b"<purchaseOrder>")])
    calls: list[Callable[[], object]] = [
        lambda: api.get_purchase_order("5", Deadline.unlimited()),
        lambda: api.create_purchase_order(document_with("x"), Deadline.unlimited()),
        lambda: api.update_purchase_order("5", document_with("x"), Deadline.unlimited()),
    ]
    for call in calls:
        with pytest.raises(PlatformError) as caught:
            call()
        assert caught.value.message.startswith("purchase order: unreadable answer")


def test_update_puts_the_order_with_its_id() -> None:
    from tests.unit.test_facturadirecta_xml import document_with

    api, adapter = client([(200, ORDER)])
    api.update_purchase_order("5", document_with("x"), Deadline.unlimited())
    (sent,) = adapter.requests
    assert (sent.method, sent.url) == ("PUT", "https://miempresa.facturadirecta.com/api/purchaseOrders/5.xml")
    assert isinstance(sent.body, bytes)
    assert xml.parse_purchase_order(sent.body).id == "5"


def test_an_error_without_a_message_says_the_status_text() -> None:
    # An error document without <errorMessage>, then a body that is no error document at all
    api, _ = client([(404, xml.build_error(404, "NOT_FOUND", None)), (404, b"<html>Not found</html>")])
    for _ in range(2):
        with pytest.raises(PlatformError) as caught:
            api.get_purchase_order("5", Deadline.unlimited())
        assert caught.value.message == "Reason"


def many_providers(first_id: int, count: int, tax_code: str) -> bytes:
    rows = b"".join(
        b"<provider><id>%d</id><taxCode>%s</taxCode></provider>" % (first_id + n, tax_code.encode())
        for n in range(count)
    )
    return b"<providers>" + rows + b"</providers>"


def test_a_provider_after_a_full_first_page_is_asked_from_start_250() -> None:
    # Given a taxCode filter that answers a full first page of other providers (250, the reference's maximum)
    api, adapter = client([(200, many_providers(1, 250, "B1234567")), (200, many_providers(900, 1, "B12345678"))])
    # When the provider is looked up, Then the second page is asked from position 250 and ours is found on it
    found = api.find_provider("B12345678", Deadline.unlimited())
    assert found is not None
    assert found.id == "900"
    assert ["start=0" in (r.url or "") for r in adapter.requests] == [True, False]
    assert "start=250" in (adapter.requests[1].url or "")


def order_row(order_id: str, serial: str, number: str, provider: str, *tags: str) -> bytes:
    tag_xml = b"".join(b"<tag><![CDATA[%s]]></tag>" % t.encode() for t in tags)
    return (
        b"<purchaseOrder><id>%s</id><provider><id>%s</id></provider><documentSerial>%s</documentSerial>"
        b"<documentNumber>%s</documentNumber><tags>%s</tags></purchaseOrder>"
    ) % (order_id.encode(), provider.encode(), serial.encode(), number.encode(), tag_xml)


def test_orders_by_number_ask_the_documented_filters_and_keep_exact_matches_only() -> None:
    body = (
        b"<purchaseOrders>"
        + order_row("1", "PO-2026-", "7", "52")
        + order_row("2", "PO-2026-", "17", "52")
        + order_row("3", "PO-2025-", "7", "52")
        + order_row("4", "PO-2026-", "7", "53")
        + b"</purchaseOrders>"
    )
    # A page may be shorter than asked (the platform picks its page size): only an empty one ends the listing.
    api, adapter = client([(200, body), (200, b"<purchaseOrders></purchaseOrders>")])
    found = api.find_purchase_orders_by_number("PO-2026-", 7, "52", Deadline.unlimited())
    assert [o.id for o in found] == ["1"]
    url = adapter.requests[0].url or ""
    assert all(p in url for p in ("documentSerial=PO-2026-", "documentNumber=7", "provider=52", "limit=250"))
    assert "start=4" in (adapter.requests[1].url or "")
