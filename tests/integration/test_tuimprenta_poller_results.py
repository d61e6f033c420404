"""What the poller records: an issued invoice's ledger details, the batch item's polls and waits, its outcome."""

from __future__ import annotations

import time

from invoice_bridge.keys import TUIMPRENTA_BATCHES_PK, TUIMPRENTA_OPEN_BATCHES_PK
from invoice_bridge.observability import metrics
from invoice_bridge.tuimprenta.batches import BatchItem, BatchStore
from tests.integration.test_tuimprenta_poller import Harness, envelope, harness  # noqa: F401 - a fixture


def batch_items(harness: Harness) -> list[BatchItem]:
    """Every batch item, open or closed."""
    table = harness.table()
    found = []
    for pk in (TUIMPRENTA_OPEN_BATCHES_PK, TUIMPRENTA_BATCHES_PK):
        found += table.client.query(
            TableName=table.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :batch)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":batch": {"S": "batch#"}},
        )["Items"]
    return [BatchItem.from_item(item) for item in found]


def test_an_issued_invoice_records_its_batch_series_and_number_and_the_batch_closes_completed(
    harness: Harness,
) -> None:
    metrics.clear_metrics()
    harness.send(envelope("sin_i1"), envelope("sin_i2"))
    report = harness.run()
    assert report.issued == 2
    (batch,) = harness.peer.batches.values()
    assert batch.callback_url == harness.settings().callback_url  # tuimprenta is asked to call back
    for object_id in ("sin_i1", "sin_i2"):
        (invoice,) = harness.peer.issued_for(object_id)
        entry = harness.ledger().get("tuimprenta", object_id)
        assert entry is not None
        assert entry.remote_id == invoice.id
        assert entry.details == {
            "state": "issued",
            "batch_id": batch.id,
            "series": invoice.series,
            "number": str(invoice.number),
        }
    assert [(i.batch_id, i.status, i.outcome) for i in batch_items(harness)] == [(batch.id, "closed", "completed")]


def test_a_submitted_batch_is_first_polled_after_the_base_wait_then_ever_later(harness: Harness) -> None:
    # Given a batch tuimprenta takes long to process
    harness.peer.processing_seconds = 600.0
    harness.send(envelope("sin_p1"))
    slow = {"RUN_SECONDS": "0", "POLL_BASE_SECONDS": "10", "POLL_MAX_SECONDS": "100"}
    before = time.time()
    assert harness.run(**slow).batches_submitted == 1
    store = BatchStore(harness.table())
    (item,) = store.open()
    # Then it is first looked at one base wait after its submission
    assert item.polls == 0
    assert before + 10 <= item.next_poll_at <= time.time() + 10
    # When each poll finds it still processing, the next one waits twice as long as the one before
    for polls, wait in [(1, 10), (2, 20), (3, 40)]:
        store.put(item.model_copy(update={"next_poll_at": time.time()}))  # due now
        before = time.time()
        assert harness.run(**slow).polls == 1
        (item,) = store.open()
        assert item.polls == polls
        assert before + wait <= item.next_poll_at <= time.time() + wait


def test_a_create_that_is_rate_limited_or_fails_waits_its_backoff_and_counts_the_try(harness: Harness) -> None:
    harness.peer.fail_next("POST /batches", 503, 503, 503)  # more than the client's own retries
    harness.send(envelope("sin_b1"))
    before = time.time()
    report = harness.run(RUN_SECONDS="0")
    assert report.batches_submitted == 0
    (item,) = BatchStore(harness.table()).open()
    assert (item.batch_id, item.polls) == (None, 1)
    # one second, give or take the jitter, before it is posted again
    assert before + 0.8 <= item.next_poll_at <= time.time() + 1.2


def test_a_batch_tuimprenta_refuses_is_closed_as_refused(harness: Harness) -> None:
    harness.peer.fail_next("POST /batches", 422)
    harness.send(envelope("sin_q1"))
    assert harness.run().failed == 1
    assert [(i.status, i.outcome) for i in batch_items(harness)] == [("closed", "refused")]


def test_cancels_after_issue_close_each_invoice_as_canceled_and_count_them(harness: Harness) -> None:
    harness.send(envelope("sin_x1"), envelope("sin_x2"))
    assert harness.run().issued == 2
    metrics.clear_metrics()
    harness.send(envelope("sin_x1", "sales_invoice.canceled"), envelope("sin_x2", "sales_invoice.canceled"))
    assert harness.run().canceled == 2
    for object_id in ("sin_x1", "sin_x2"):
        entry = harness.ledger().get("tuimprenta", object_id)
        assert entry is not None
        assert (entry.closed, entry.details["state"]) == (True, "canceled")


def test_a_cancel_of_an_invoice_tuimprenta_refused_closes_it_without_a_call(harness: Harness) -> None:
    # Given an invoice tuimprenta refused (failed in the ledger, not closed)
    harness.send(envelope("sin_z1", customer={"name": "Sin RIF", "tax_id": " ", "email": None}))
    assert harness.run().failed == 1
    failed = harness.ledger().get("tuimprenta", "sin_z1")
    assert failed is not None
    assert failed.closed is False
    # When its cancel comes, Then it is closed and nothing is sent to tuimprenta
    harness.send(envelope("sin_z1", "sales_invoice.canceled"))
    harness.run()
    entry = harness.ledger().get("tuimprenta", "sin_z1")
    assert entry is not None
    assert entry.closed is True
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 0
