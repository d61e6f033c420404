"""The BuildNexion client against the sandbox BuildNexion: latest state, the event's copy on 404, lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import Invoice, PurchaseOrder, SalesInvoice, WebhookEvent
from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.http import Deadline
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from tests.conftest import emitted_metrics, load_event


@pytest.fixture
def peer() -> Iterator[BuildNexionPeer]:
    running = BuildNexionPeer(DEFAULT_API_KEY, ["whsec_x"])
    running.start()
    yield running
    running.stop()


def client(peer: BuildNexionPeer, key: str = DEFAULT_API_KEY) -> BuildNexionClient:
    return BuildNexionClient(peer.base_url, SecretStr(key), max_attempts=1)


def test_latest_is_what_buildnexion_serves_now(peer: BuildNexionPeer) -> None:
    event = WebhookEvent.model_validate(load_event("buildnexion/01_invoice_created.json"))
    newer = {**load_event("buildnexion/02_invoice_updated.json")["data"]["object"]}
    peer.put_objects([newer])
    latest = client(peer).latest(Invoice, event, Deadline(10))
    assert latest.updated_at.isoformat() == newer["updated_at"].replace("Z", "+00:00")


def test_latest_falls_back_to_the_event_s_copy_when_buildnexion_answers_404(
    peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    event = WebhookEvent.model_validate(load_event("buildnexion/08_purchase_order_created.json"))
    order = client(peer).latest(PurchaseOrder, event, Deadline(10))
    assert order.id == "po_55"
    assert order.model_dump(mode="json") == PurchaseOrder.model_validate(event.data.object.model_dump()).model_dump(
        mode="json"
    )
    # counted, by kind of object, for the dashboard's "source from event" widget
    assert ("SourceFromEvent", {"object": "purchase_order", "service": "webhook-receiver"}) in emitted_metrics(
        capsys.readouterr().out
    )


def test_an_incomplete_event_copy_of_a_missing_object_is_permanent(peer: BuildNexionPeer) -> None:
    envelope = load_event("buildnexion/08_purchase_order_created.json")
    del envelope["data"]["object"]["lines"]
    event = WebhookEvent.model_validate(envelope)
    with pytest.raises(PermanentSyncError, match=r"not found in BuildNexion .*lines") as caught:
        client(peer).latest(PurchaseOrder, event, Deadline(10))
    assert caught.value.code == "invalid_source"


def test_other_errors_are_not_hidden_by_the_fallback(peer: BuildNexionPeer) -> None:
    event = WebhookEvent.model_validate(load_event("buildnexion/01_invoice_created.json"))
    with pytest.raises(PlatformError) as caught:
        client(peer, key="wrong").latest(Invoice, event, Deadline(10))
    assert caught.value.status == 401
    assert "wrong" not in str(caught.value)


def test_list_pages_follow_the_cursor(peer: BuildNexionPeer) -> None:
    base = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    peer.put_objects([{**base, "id": f"inv_l{i}", "updated_at": f"2026-11-0{i + 1}T00:00:00Z"} for i in range(5)])
    api = client(peer)
    first, more = api.list_page("invoices", Deadline(10), updated_since=1_700_000_000, limit=2)
    assert ([o["id"] for o in first], more) == (["inv_l0", "inv_l1"], True)
    rest, more = api.list_page("invoices", Deadline(10), starting_after="inv_l1", limit=100, updated_since=0)
    assert [o["id"] for o in rest][:3] == ["inv_l2", "inv_l3", "inv_l4"]
    assert more is False
    with pytest.raises(PlatformError) as caught:
        api.list_page("invoices", Deadline(10), limit=101)
    assert (caught.value.status, caught.value.field) == (400, "limit")
    # by default a page is as large as BuildNexion allows
    everything, more = api.list_page("invoices", Deadline(10))
    assert (len(everything), more) == (5, False)


@pytest.mark.parametrize(
    ("sample", "model"),
    [("08_purchase_order_created.json", PurchaseOrder), ("05_sales_invoice_created.json", SalesInvoice)],
)
def test_latest_reads_each_kind_from_its_own_collection(
    peer: BuildNexionPeer, sample: str, model: type[PurchaseOrder] | type[SalesInvoice]
) -> None:
    # A wrong path would 404 and fall back to the event's copy: the newer served version proves the read.
    envelope = load_event(f"buildnexion/{sample}")
    event = WebhookEvent.model_validate(envelope)
    peer.put_objects([{**envelope["data"]["object"], "updated_at": "2026-12-01T00:00:00Z"}])
    api = client(peer)
    latest = (
        api.latest(PurchaseOrder, event, Deadline(10))
        if model is PurchaseOrder
        else api.latest(SalesInvoice, event, Deadline(10))
    )
    assert latest.updated_at.isoformat() == "2026-12-01T00:00:00+00:00"
    assert peer.calls[f"GET /{'purchase_orders' if model is PurchaseOrder else 'sales_invoices'}/{{id}}"] == 1


def test_an_object_buildnexion_serves_malformed_is_a_permanent_error(peer: BuildNexionPeer) -> None:
    envelope = load_event("buildnexion/01_invoice_created.json")
    served = {**envelope["data"]["object"]}
    del served["lines"]
    peer._objects[("invoice", served["id"])] = served  # stored as a broken BuildNexion would serve it
    with pytest.raises(PermanentSyncError, match=r"BuildNexion /invoices/inv_8f3k2: lines: Field required") as caught:
        client(peer).latest(Invoice, WebhookEvent.model_validate(envelope), Deadline(10))
    assert caught.value.code == "invalid_source"
    assert caught.value.retryable is False


def test_register_webhook_answers_the_id_and_secret(peer: BuildNexionPeer) -> None:
    registered = client(peer).register_webhook("https://example.test/hook", ["invoice.created"], Deadline(10))
    assert registered["url"] == "https://example.test/hook"
    assert registered["events"] == ["invoice.created"]
    assert registered["id"].startswith("we_")
    assert registered["secret"] == "whsec_x"
    with pytest.raises(PlatformError) as caught:
        client(peer).register_webhook("ftp://nope", ["invoice.created"], Deadline(10))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("getter", "collection", "event_file"),
    [
        ("invoice", "invoices", "01_invoice_created.json"),
        ("sales_invoice", "sales_invoices", "05_sales_invoice_created.json"),
        ("purchase_order", "purchase_orders", "08_purchase_order_created.json"),
    ],
)
def test_each_getter_reads_its_own_collection(
    peer: BuildNexionPeer, getter: str, collection: str, event_file: str
) -> None:
    served = {**load_event(f"buildnexion/{event_file}")["data"]["object"], "updated_at": "2026-12-01T00:00:00Z"}
    peer.put_objects([served])
    fetched = getattr(client(peer), getter)(served["id"], Deadline(10))
    assert (fetched.id, fetched.updated_at.isoformat()) == (served["id"], "2026-12-01T00:00:00+00:00")
    assert peer.calls[f"GET /{collection}/{{id}}"] == 1


def test_the_pdf_is_asked_for_as_a_pdf_with_a_longer_read_timeout(peer: BuildNexionPeer) -> None:
    # Given an invoice BuildNexion serves
    served = load_event("buildnexion/01_invoice_created.json")["data"]["object"]
    peer.put_objects([served])
    api = client(peer)
    sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []
    send = api.session.send

    def spy(prepared: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append((prepared, kwargs))
        return send(prepared, **kwargs)

    api.session.send = spy  # type: ignore[method-assign,assignment]
    # When its PDF is fetched
    content = api.invoice_pdf(served["id"], Deadline(60))
    # Then the bytes are the PDF, asked for as a PDF (not the JSON every other call accepts), and a slow
    # rendering gets 20 s to arrive
    assert content.startswith(b"%PDF")
    assert peer.calls["GET /invoices/{id}/pdf"] == 1
    ((prepared, options),) = sent
    assert prepared.headers["Accept"] == "application/pdf"
    assert options["timeout"] == (3.05, 20.0)
