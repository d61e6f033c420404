"""A batch that leaves an invoice's outcome unknown never makes the poller issue it again blindly.

The real poller on moto, tuimprenta's answers scripted one by one on a FakeClock: a redirected result download,
a batch that 404s, a result CSV that leaves a member out or gives an issued row no id, a file that cannot be
read. Each ends in a lookup of `GET /invoices` by our marker (`metadata.buildnexion_id`); only an invoice the
listing shows absent is submitted again, and one the listing cannot decide on is dead-lettered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from invoice_bridge.ledger import SyncStatus
from invoice_bridge.store import StateStore
from invoice_bridge.tuimprenta.events import TuimprentaEventItem, record_tuimprenta_event
from invoice_bridge.tuimprenta.webhook import TuimprentaEvent
from tests.integration.test_tuimprenta_poller import API_KEY, Harness, envelope, harness  # noqa: F401 - a fixture
from tests.integration.test_tuimprenta_poller_scripted import HEADER, KEY, T0, Scripted, batch_answer
from tests.unit.test_tuimprenta_client import response

SERIES = "TD-2025"


def claim(rig: Scripted, *object_ids: str, key: str = KEY) -> None:
    """Claim each invoice into `key`, its payload in SERIES and naming it, as the poller's claim leaves it."""
    for object_id in object_ids:
        payload = json.dumps({"series": SERIES, "metadata": {"buildnexion_id": object_id}})
        rig.claimed(object_id, details={"state": "batched", "submission": key, "attempt": "1", "payload": payload})


def listed(object_id: str, invoice_id: str, total: float = 13.92) -> dict[str, Any]:
    """An invoice as `GET /invoices` lists it (the reference's schema)."""
    return {
        "id": invoice_id,
        "series": SERIES,
        "number": 7,
        "status": "issued",
        "totals": {"subtotal": 12.0, "tax": 1.92, "total": total},
        "metadata": {"buildnexion_id": object_id},
        "created_at": "2027-01-15T08:00:00Z",
    }


def page(*invoices: dict[str, Any], next_cursor: str | None = None) -> requests.Response:
    return response(200, {"data": list(invoices), "next_cursor": next_cursor, "prev_cursor": None})


def completed(rows: str, result_url: str | None = None) -> list[requests.Response]:
    batch: dict[str, Any] = {"id": "batch_1", "type": "invoice.create", "status": "completed"}
    if result_url:
        batch["result_url"] = result_url
    return [response(200, batch), response(200, (HEADER + rows).encode())]


def sent_to(rig: Scripted, path: str) -> list[dict[str, Any]]:
    """The requests the poller sent whose URL path ends with `path`."""
    return [r for r in rig.session.sent if urlsplit(str(r["url"])).path.endswith(path)]


def query(request: dict[str, Any]) -> dict[str, str]:
    params = dict(request.get("params") or {})
    params.update({k: v[0] for k, v in parse_qs(urlsplit(str(request["url"])).query).items()})
    return {k: str(v) for k, v in params.items()}


def redirect(location: str, status: int = 302) -> requests.Response:
    return response(status, b"", {"Location": location})


# -- the result download ----------------------------------------------------------------------------------------


def test_a_redirected_result_download_is_followed_on_the_apis_own_origin_with_its_key(harness: Harness) -> None:
    base = harness.settings().tuimprenta_api_url
    rig = Scripted(harness, [])
    status, csv = completed("0,inv_r,issued,TD-2025,1,,\r\n")
    rig.answers.extend([status, redirect(f"{base}/files/batch_1.csv", 307), csv])
    claim(rig, "sin_r")
    rig.submitted("sin_r", created_at=rig.clock())
    report = rig.run()
    # The invoice is issued from the file the redirect pointed to, with no lookup and nothing submitted again
    assert (report.issued, report.lookups, report.resubmitted) == (1, 0, 0)
    assert rig.entry("sin_r").remote_id == "inv_r"
    (followed,) = sent_to(rig, "/files/batch_1.csv")
    assert followed["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_a_result_redirected_to_another_host_is_fetched_without_the_api_key(harness: Harness) -> None:
    rig = Scripted(harness, [])
    status, csv = completed("0,inv_p,issued,TD-2025,1,,\r\n")
    presigned = "https://files.tuimprenta-cdn.test/results/batch_1.csv?X-Signature=abc"
    rig.answers.extend([status, redirect(presigned), csv])
    claim(rig, "sin_p")
    rig.submitted("sin_p", created_at=rig.clock())
    report = rig.run()
    assert report.issued == 1
    (fetched,) = [r for r in rig.session.sent if str(r["url"]) == presigned]
    assert "Authorization" not in fetched["headers"]


# -- outcomes left unknown ----------------------------------------------------------------------------------------


def test_a_member_the_result_leaves_out_is_looked_up_page_by_page_and_found_not_issued_again(
    harness: Harness,
) -> None:
    # Given a completed batch of two whose result has a row for the first only
    rig = Scripted(harness, completed("0,inv_a,issued,TD-2025,1,,\r\n"))
    rig.answers.extend(
        [
            page(listed("sin_other", "inv_x"), listed("sin_a", "inv_a"), next_cursor="inv_a"),
            page(listed("sin_b", "inv_b", total=27.84)),
        ]
    )
    claim(rig, "sin_a", "sin_b")
    rig.submitted("sin_a", "sin_b", created_at=rig.clock())
    # When a run reads the result
    report = rig.run()
    # Then the second is found on the listing's second page, by our marker, and recorded as issued
    assert (report.issued, report.found, report.lookups, report.resubmitted) == (2, 1, 2, 0)
    second = rig.entry("sin_b")
    assert (second.status, second.remote_id) == (SyncStatus.SYNCED, "inv_b")
    # with the total tuimprenta computed, for reconcile
    assert second.remote_total_cents == 2784
    # The listing asked for the series since the day before the claim, the second page after the first's cursor
    first, following = sent_to(rig, "/invoices")
    claimed_day = datetime.fromtimestamp(rig.clock(), UTC).date()
    assert query(first)["series"] == SERIES
    assert query(first)["created_from"] == (claimed_day - timedelta(days=1)).isoformat()
    assert "starting_after" not in query(first)
    assert query(following)["starting_after"] == "inv_a"
    # and nothing was posted again
    assert sent_to(rig, "/batches") == []
    assert harness.dead_letters() == []


def test_an_issued_row_without_an_invoice_id_is_looked_up_and_takes_the_listed_id(harness: Harness) -> None:
    rig = Scripted(harness, completed("0,,issued,TD-2025,9,,\r\n"))
    rig.answers.append(page(listed("sin_n", "inv_n")))
    claim(rig, "sin_n")
    rig.submitted("sin_n", created_at=rig.clock())
    report = rig.run()
    assert (report.issued, report.found, report.resubmitted) == (1, 1, 0)
    assert rig.entry("sin_n").remote_id == "inv_n"


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe not text", b"<html>Service temporarily moved</html>\n", HEADER.encode() + b"0,inv,shipped,,,,\r\n"],
    ids=["not utf-8", "not the csv header", "a row that breaks the schema"],
)
def test_an_unreadable_result_is_looked_up_and_only_an_invoice_shown_absent_is_submitted_again(
    harness: Harness, content: bytes
) -> None:
    # Given a completed batch of two whose result file is not the documented CSV
    rig = Scripted(harness, [batch_answer("batch_1", "completed"), response(200, content)])
    # and a listing, read to its end, that holds the first and not the second
    rig.answers.append(page(listed("sin_u1", "inv_u1")))
    claim(rig, "sin_u1", "sin_u2")
    rig.submitted("sin_u1", "sin_u2", created_at=rig.clock())
    report = _run_once(rig)
    # Then the first is recorded as issued, and only the second goes into a new attempt
    assert rig.entry("sin_u1").remote_id == "inv_u1"
    assert (report.found, report.resubmitted) == (1, 1)
    (again,) = [i for i in rig.batches.open() if i.key != KEY]
    assert (again.members, again.attempt) == (["sin_u2"], 2)
    assert rig.batches.get(KEY) is not None
    assert rig.batches.open() == [again]
    assert harness.dead_letters() == []


def test_a_batch_that_404s_is_polled_again_then_looked_up_never_resubmitted_while_found(harness: Harness) -> None:
    # Given a batch tuimprenta answers 404 for three polls in a row, and a listing that holds its invoice
    missing = {"error": {"type": "not_found", "message": "no existe el lote", "code": "E4040"}}
    rig = Scripted(harness, [response(404, missing) for _ in range(3)])
    rig.answers.append(page(listed("sin_l", "inv_l")))
    claim(rig, "sin_l")
    rig.submitted("sin_l", created_at=rig.clock())
    # When runs poll it (the first two 404s are taken as "not yet")
    first = _run_once(rig)
    assert (first.found, first.resubmitted) == (0, 0)
    assert rig.item(KEY).misses == 1
    _run_once(rig, later=True)
    last = _run_once(rig, later=True)
    # Then the third 404 sends it to the lookup, which finds it issued
    assert (last.found, last.resubmitted) == (1, 0)
    assert rig.entry("sin_l").remote_id == "inv_l"
    closed = rig.batches.get(KEY)
    assert closed is not None
    assert (closed.status, closed.outcome) == ("closed", "lost")
    assert sent_to(rig, "/batches") == []


def test_a_lookup_that_cannot_decide_dead_letters_the_invoice_as_outcome_unknown_and_never_resubmits(
    harness: Harness,
) -> None:
    # Given a result that leaves the invoice out, and a listing tuimprenta refuses (a permanent error)
    rig = Scripted(harness, completed(""))
    rig.answers.append(response(400, {"error": {"type": "validation_error", "message": "created_from inválido"}}))
    claim(rig, "sin_q")
    rig.submitted("sin_q", created_at=rig.clock())
    report = rig.run()
    # Then it is dead-lettered as "outcome unknown", with what was tried, and never submitted again
    assert report.resubmitted == 0
    (dead,) = harness.dead_letters()
    assert (dead["object_id"], dead["error_code"]) == ("sin_q", "outcome_unknown")
    assert "no result row for index 0" in dead["error_message"]
    assert f"GET /invoices series={SERIES}" in dead["error_message"]
    assert "created_from inválido" in dead["error_message"]
    assert rig.entry("sin_q").status == SyncStatus.FAILED
    assert rig.batches.open() == []


def _left_unknown(harness: Harness, object_id: str) -> Scripted:
    """An invoice dead-lettered as "outcome unknown": its result row missing, the listing refused."""
    rig = Scripted(harness, completed(""))
    rig.answers.append(response(400, {"error": {"type": "validation_error", "message": "created_from inválido"}}))
    claim(rig, object_id)
    rig.submitted(object_id, created_at=rig.clock())
    rig.run()
    (dead,) = harness.dead_letters()
    assert dead["error_code"] == "outcome_unknown"
    return rig


def test_a_replay_after_an_unknown_outcome_is_looked_up_and_an_invoice_found_is_recorded_not_issued_again(
    harness: Harness,
) -> None:
    # Given an invoice whose outcome was left unknown, and tuimprenta does hold it
    rig = _left_unknown(harness, "sin_r")
    claimed_version = rig.entry("sin_r").source_updated_at
    assert claimed_version is not None
    rig.answers.append(page(listed("sin_r", "inv_r")))
    rig.answers.append(batch_answer("batch_2", "queued"))
    # When an operator replays it (or BuildNexion sends a newer version), with a new invoice received after it
    harness.send(envelope("sin_r", updated_at="2026-11-08T09:00:00Z"), envelope("sin_new"))
    listings_before = len(sent_to(rig, "/invoices"))
    report = _run_once(rig, later=True)
    # Then the listing is read again, from a day before the claimed version (the filter's time zone is unsaid)
    (listing,) = sent_to(rig, "/invoices")[listings_before:]
    assert query(listing)["created_from"] == (claimed_version - timedelta(days=1)).date().isoformat()
    assert query(listing)["series"] == SERIES
    # the invoice recorded issued with what tuimprenta holds, and no batch is posted
    assert report.found == 1
    entry = rig.entry("sin_r")
    assert (entry.status, entry.remote_id, entry.remote_total_cents) == (SyncStatus.SYNCED, "inv_r", 1392)
    assert (entry.details["state"], entry.details["series"], entry.details["number"]) == ("issued", SERIES, "7")
    # and only the new invoice is posted, in the same run
    (posted,) = [r for r in sent_to(rig, "/batches") if r["method"] == "POST"]
    body = json.dumps(json.loads(posted["data"]))
    assert '"buildnexion_id": "sin_new"' in body
    assert "sin_r" not in body
    assert harness.dead_letters() == []


def test_a_replay_after_an_unknown_outcome_is_submitted_once_the_listing_shows_it_absent(harness: Harness) -> None:
    # Given an invoice whose outcome was left unknown, and tuimprenta does not hold it
    rig = _left_unknown(harness, "sin_s")
    rig.answers.append(page())
    rig.answers.append(batch_answer("batch_2", "queued"))
    # When an operator replays it: the same version (BuildNexion's object has not changed)
    harness.send(envelope("sin_s", updated_at=T0.isoformat()))
    _run_once(rig, later=True)
    # Then, shown absent by a listing read to its end, it is submitted again: once
    (posted,) = [r for r in sent_to(rig, "/batches") if r["method"] == "POST"]
    body = json.dumps(json.loads(posted["data"]))
    assert body.count('"buildnexion_id": "sin_s"') == 1


def test_a_replay_whose_lookup_fails_for_now_waits_on_the_queue_and_is_looked_up_again(harness: Harness) -> None:
    # Given an invoice whose outcome was left unknown, replayed while tuimprenta's listing answers 503
    rig = _left_unknown(harness, "sin_u")
    received: list[Any] = []
    receive = rig.sqs.receive_message

    def recording(**kwargs: Any) -> Any:
        answer = receive(**kwargs)
        received.extend(answer.get("Messages", []))
        return answer

    rig.sqs.receive_message = recording
    rig.answers.extend(response(503, {"error": {"message": "unavailable"}}) for _ in range(3))
    rig.answers.append(batch_answer("batch_2", "queued"))
    # (with a new invoice received after it)
    harness.send(envelope("sin_u"), envelope("sin_new"))
    _run_once(rig, later=True)
    # Then the replay is neither posted nor dead-lettered: it stays on the queue, not deleted; the new invoice
    # received with it is posted in the same run
    (posted,) = [r for r in sent_to(rig, "/batches") if r["method"] == "POST"]
    assert "sin_u" not in json.dumps(json.loads(posted["data"]))
    assert '"buildnexion_id": "sin_new"' in json.dumps(json.loads(posted["data"]))
    assert harness.dead_letters() == []
    assert rig.entry("sin_u").status == SyncStatus.FAILED
    (replay,) = [m for m in received if json.loads(m["Body"])["data"]["object"]["id"] == "sin_u"]
    # and when its visibility lapses and the listing answers, it is found and recorded issued
    url = harness.aws.provisioned.queues["TuimprentaQueue"].url
    rig.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=replay["ReceiptHandle"], VisibilityTimeout=0)
    rig.answers.append(batch_answer("batch_2", "queued"))  # the new invoice's batch, polled first
    rig.answers.append(page(listed("sin_u", "inv_u")))
    report = _run_once(rig, later=True)
    assert report.found == 1
    assert rig.entry("sin_u").remote_id == "inv_u"
    assert [r for r in sent_to(rig, "/batches") if r["method"] == "POST"] == [posted]
    assert harness.aws.depth("TuimprentaQueue") == 0


def test_a_replay_after_an_unknown_outcome_the_lookup_still_cannot_decide_is_dead_lettered_again(
    harness: Harness,
) -> None:
    rig = _left_unknown(harness, "sin_t")
    rig.answers.append(response(400, {"error": {"type": "validation_error", "message": "created_from inválido"}}))
    rig.answers.append(batch_answer("batch_2", "queued"))
    # (a new invoice received after the replay goes on as usual, in the same run)
    harness.send(envelope("sin_t", updated_at="2026-11-08T09:00:00Z"), envelope("sin_new"))
    _run_once(rig, later=True)
    (posted,) = [r for r in sent_to(rig, "/batches") if r["method"] == "POST"]
    assert '"buildnexion_id": "sin_new"' in json.dumps(json.loads(posted["data"]))
    assert "sin_t" not in json.dumps(json.loads(posted["data"]))
    (dead,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    assert json.loads(dead["Body"])["data"]["object"]["id"] == "sin_t"  # the replayed event itself
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["error_code"] == "outcome_unknown"
    assert attributes["error_message"].startswith("an earlier version's outcome is unknown; GET /invoices")


def test_a_lookup_failing_for_now_is_tried_again_and_dead_lettered_only_after_the_last_try(
    harness: Harness,
) -> None:
    # Given a result that leaves the invoice out, and a listing answering 503 (each time the client's three tries)
    unavailable = [response(503, {"error": {"message": "unavailable"}}) for _ in range(3)]
    rig = Scripted(harness, completed(""), overrides={"MAX_BATCH_ATTEMPTS": "2"})
    rig.answers.extend(unavailable)
    claim(rig, "sin_w")
    rig.submitted("sin_w", created_at=rig.clock())
    # When a run reads it: the batch stays open, its lookup to be tried again
    first = _run_once(rig)
    assert (first.failed, first.resubmitted) == (0, 0)
    assert rig.item(KEY).lookups == 1
    assert harness.dead_letters() == []
    # and when the last lookup allowed fails too, the invoice is dead-lettered as outcome unknown
    rig.answers.extend([*completed(""), *unavailable])
    last = _run_once(rig, later=True)
    assert (last.failed, last.resubmitted) == (1, 0)
    (dead,) = harness.dead_letters()
    assert dead["error_code"] == "outcome_unknown"
    assert rig.batches.open() == []


def _run_once(rig: Scripted, *, later: bool = False) -> Any:
    """One pass of a run with no time to wait; `later` moves the clock past every backoff first."""
    if later:
        rig.clock.sleep(3600)
    rig.overrides["RUN_SECONDS"] = "0"
    return rig.run()


def test_404s_broken_by_a_readable_poll_start_counting_again_and_the_result_still_decides(harness: Harness) -> None:
    # Given a batch that answers 404 now and then while tuimprenta spreads it (two misses, a readable poll,
    # two more misses: never BATCH_MISSING_POLLS in a row), then completes
    missing = response(404, {"error": {"type": "not_found", "message": "no existe el lote", "code": "E4040"}})
    rig = Scripted(
        harness,
        [
            missing,
            missing,
            batch_answer("batch_1", "processing"),
            missing,
            missing,
            *completed("0,inv_m,issued,TD-2025,3,,\r\n"),
        ],
    )
    claim(rig, "sin_m")
    rig.submitted("sin_m", created_at=rig.clock())
    # When runs poll it each time it is due
    reports = [_run_once(rig, later=n > 0) for n in range(6)]
    # Then it is never taken as lost: no lookup, nothing submitted again, and the result issues the invoice
    assert sum(r.lookups for r in reports) == 0
    assert sum(r.resubmitted for r in reports) == 0
    entry = rig.entry("sin_m")
    assert (entry.status, entry.remote_id) == (SyncStatus.SYNCED, "inv_m")
    assert sent_to(rig, "/invoices") == []


def test_a_batch_named_by_a_callback_is_read_before_batches_merely_due(harness: Harness) -> None:
    # Given a batch due for its poll now, and another not due for five minutes whose completion tuimprenta
    # has just announced (a recorded callback)
    rig = Scripted(harness, [*completed("0,inv_cb,issued,TD-2025,4,,\r\n"), batch_answer("batch_due", "processing")])
    claim(rig, "sin_due", key="key-due")
    rig.submitted("sin_due", key="key-due", batch_id="batch_due", created_at=rig.clock())
    claim(rig, "sin_cb", key="key-cb")
    rig.submitted("sin_cb", key="key-cb", batch_id="batch_1", created_at=rig.clock(), due_in=300)
    callback = TuimprentaEvent.model_validate(
        {
            "id": "evt_cb",
            "type": "batch.completed",
            "data": {"batch_id": "batch_1"},
            "created_at": "2027-01-15T08:00:00Z",
        }
    )
    store = StateStore(harness.aws.session.client("dynamodb"), harness.environment["STATE_TABLE_NAME"])
    record_tuimprenta_event(store, TuimprentaEventItem.from_event(callback, datetime.now(UTC)))
    # When a run starts
    _run_once(rig)
    # Then the announced batch is read first (its result is what a run may not have time for after the others)
    first = next(r for r in rig.session.sent if "/batches/" in str(r["url"]))
    assert urlsplit(str(first["url"])).path.endswith("/batches/batch_1")
    assert rig.entry("sin_cb").remote_id == "inv_cb"
    assert rig.entry("sin_due").status is SyncStatus.PENDING
