"""The product's tuimprenta client against the sandbox peer's result-download faults: a redirect on the API's
origin is followed with the key, a presigned URL elsewhere is fetched without it, a file that is not UTF-8 is
ResultUnreadable (not a crash: the poller then looks the invoices up), and a wrong header is refused by the parser."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.buildnexion.models import SalesInvoice
from invoice_bridge.http import Deadline
from invoice_bridge.tuimprenta.client import Batch, ResultUnreadable, TuimprentaClient
from invoice_bridge.tuimprenta.mapping import batch_body, payload_text
from invoice_bridge.tuimprenta.results import ResultFormatError, parse_results
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import FakeClock, load_event

KEY = "tui_client_key"


def sales_invoice(object_id: str, **line: Any) -> SalesInvoice:
    """BuildNexion's sample sales invoice, its line changed as given."""
    obj = copy.deepcopy(load_event("buildnexion/05_sales_invoice_created.json")["data"]["object"])
    obj["id"] = object_id
    obj["lines"][0].update(line)
    return SalesInvoice.model_validate(obj)


# The product's own mapping: a plain line, a sub-cent unit price and a fractional quantity.
BODY = batch_body(
    [
        payload_text(sales_invoice("sin_1")),
        payload_text(sales_invoice("sin_2", unit_amount=904, unit_amount_decimal="903.8")),
        payload_text(sales_invoice("sin_3", quantity="2.50", tax_rate="0.080")),
    ],
    "http://127.0.0.1:9/webhooks/tuimprenta",
)


@pytest.fixture
def peer() -> Iterator[TuimprentaPeer]:
    clock = FakeClock(1000.0)
    sandbox = TuimprentaPeer(KEY, "secret", processing_seconds=1, send_callbacks=False, clock=clock)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def finished(peer: TuimprentaPeer, client: TuimprentaClient) -> Batch:
    created = client.create_batch(BODY, "k-1", Deadline(10))
    peer._clock.now += 5  # type: ignore[attr-defined]  # the FakeClock the fixture gave it
    batch = client.batch(created.id, Deadline(10))
    assert batch.finished
    return batch


def client_of(peer: TuimprentaPeer, **kwargs: Any) -> TuimprentaClient:
    return TuimprentaClient(peer.base_url, SecretStr(KEY), sleep=lambda _s: None, **kwargs)


def test_a_result_behind_a_redirect_on_the_apis_origin_is_followed_with_the_key(peer: TuimprentaPeer) -> None:
    client = client_of(peer)
    batch = finished(peer, client)
    peer.faults.force("result_redirect")
    rows = parse_results(client.batch_result(batch, Deadline(10)))
    assert {r.status for r in rows.values()} == {"issued"}
    assert peer.faults.injected["result_redirect"] == 1
    assert peer.calls["GET /downloads/{token}"] == 1


def test_a_presigned_result_elsewhere_is_fetched_without_the_key(peer: TuimprentaPeer) -> None:
    client = client_of(peer)
    peer.faults.force("result_elsewhere")
    batch = finished(peer, client)
    assert batch.result_url is not None
    assert batch.result_url.startswith(peer.files_url)
    rows = parse_results(client.batch_result(batch, Deadline(10)))
    assert {r.status for r in rows.values()} == {"issued"}
    assert peer.presigned_downloads == 1
    assert peer.presigned_with_authorization == 0


def test_a_redirect_to_another_origin_drops_the_key(peer: TuimprentaPeer) -> None:
    # A redirect is followed with credentials only while it stays on the API's origin.
    peer.faults.force("result_elsewhere")
    client = client_of(peer)
    batch = finished(peer, client)
    sent: list[dict[str, str]] = []

    class Recording(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            sent.append({"url": str(url), **{k.lower(): v for k, v in (kwargs.get("headers") or {}).items()}})
            return super().request(method, url, *args, **kwargs)

    session = Recording()
    client = client_of(peer, session=session)
    own = batch.model_copy(update={"result_url": f"{peer.base_url}/batches/{batch.id}/result.csv"})
    peer.faults.force("result_redirect")
    client.batch_result(own, Deadline(10))
    assert [("authorization" in s) for s in sent] == [True, True]
    sent.clear()
    client.batch_result(batch, Deadline(10))
    assert [("authorization" in s) for s in sent] == [False]


def test_a_result_file_that_is_not_utf8_is_a_result_format_error(peer: TuimprentaPeer) -> None:
    client = client_of(peer)
    batch = finished(peer, client)
    peer.faults.force("result_malformed")  # the first one: bytes that are not UTF-8
    with pytest.raises(ResultUnreadable):
        client.batch_result(batch, Deadline(10))
    peer.faults.force("result_malformed")  # the second: a header that is not the documented one
    with pytest.raises(ResultFormatError):
        parse_results(client.batch_result(batch, Deadline(10)))
    assert parse_results(client.batch_result(batch, Deadline(10)))[0].status == "issued"


def test_the_products_batch_body_passes_the_strict_peer_with_its_exact_amounts(peer: TuimprentaPeer) -> None:
    client = client_of(peer)
    batch = finished(peer, client)
    assert (batch.status, batch.counts.processed) == ("completed", 3)
    assert peer.unkeyed_writes == {}
    prices = {i.buildnexion_id: i.document["items"][0]["unit_price"] for i in peer.invoices.values()}
    assert prices == {"sin_1": Decimal("12000.00"), "sin_2": Decimal("9.038"), "sin_3": Decimal("12000.00")}
    (fractional,) = peer.issued_for("sin_3")
    assert (fractional.document["items"][0]["qty"], fractional.document["items"][0]["tax_rate"]) == (
        Decimal("2.5"),
        Decimal("0.08"),
    )


class Redirecting(requests.Session):
    """Answers every request with a redirect (to `location`, when given)."""

    def __init__(self, location: str | None) -> None:
        super().__init__()
        self.location = location
        self.urls: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.urls.append(str(url))
        answer = requests.Response()
        answer.status_code = 302
        answer._content = b""
        if self.location is not None:
            answer.headers["Location"] = self.location
        return answer


@pytest.mark.parametrize(
    ("location", "message", "tries"),
    [(None, "without Location", 1), ("/v1/again.csv", "more than 5 redirects", 6)],
    ids=["no location", "a loop"],
)
def test_a_redirect_that_leads_nowhere_is_an_unreadable_result(location: str | None, message: str, tries: int) -> None:
    session = Redirecting(location)
    client = TuimprentaClient("https://api.tuimprenta.test/v1", SecretStr(KEY), session=session, sleep=lambda _s: None)
    batch = Batch.model_validate({"id": "batch_1", "status": "completed", "result_url": None})
    with pytest.raises(ResultUnreadable) as caught:
        client.batch_result(batch, Deadline(10))
    assert message in caught.value.message
    assert not caught.value.retryable  # the poller settles it by looking the invoices up, never by resubmitting
    assert len(session.urls) == tries
    assert set(session.urls[1:]) <= {"https://api.tuimprenta.test/v1/again.csv"}
