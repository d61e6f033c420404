"""The tuimprenta poller on moto with the sandbox tuimprenta on 127.0.0.1: batches, outcomes, crashes, cancels."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.models import SalesInvoice
from invoice_bridge.errors import ConfigurationError
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, Ledger, LedgerEntry, StateTable, SyncStatus
from invoice_bridge.store import StateStore
from invoice_bridge.tuimprenta.batches import BatchStore, CancelStore
from invoice_bridge.tuimprenta.events import TuimprentaEventItem, record_tuimprenta_event
from invoice_bridge.tuimprenta.mapping import batch_body, payload_text, submission_key
from invoice_bridge.tuimprenta.poller import LEASE_NAME, RunReport, TuimprentaPoller
from invoice_bridge.tuimprenta.settings import TuimprentaPollerSettings
from invoice_bridge.tuimprenta.webhook import TuimprentaEvent
from invoice_bridge.worker import DeadLetters
from sandbox.settings import LocalSettings
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import FakeClock, load_event
from tests.e2e.conftest import wait_for
from tests.integration.conftest import TUIMPRENTA_SECRET, Aws, poller_environment

API_KEY = LocalSettings.from_env({}).tuimprenta_api_key
CALLBACK = "http://127.0.0.1:9/webhooks/tuimprenta"
MINIMAL_SETTINGS = {
    "STATE_TABLE_NAME": "t",
    "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/d",
    "MAX_RECEIVE_COUNT": "10",
    "BUILDNEXION_API_URL": "https://api.buildnexion.com/v1",
    "BUILDNEXION_SECRET_ARN": "arn:bn",
    "TUIMPRENTA_API_URL": "https://api.tuimprenta.digital/v1",
    "TUIMPRENTA_SECRET_ARN": "arn:tui",
    "TUIMPRENTA_CALLBACK_URL": "https://api.example.com/webhooks/tuimprenta",
}


def envelope(object_id: str, event_type: str = "sales_invoice.created", **changes: Any) -> dict[str, Any]:
    source = "07_sales_invoice_canceled.json" if event_type.endswith("canceled") else "05_sales_invoice_created.json"
    event = copy.deepcopy(load_event(f"buildnexion/{source}"))
    event["id"] = f"evt_{event_type.split('.')[1]}_{object_id}"
    event["type"] = event_type
    event["data"]["object"].update({"id": object_id, **changes})
    return event


@dataclass
class Harness:
    aws: Aws
    peer: TuimprentaPeer
    environment: dict[str, str]

    def settings(self, **overrides: str) -> TuimprentaPollerSettings:
        return TuimprentaPollerSettings.from_env({**self.environment, **overrides})

    def poller(self, **overrides: str) -> TuimprentaPoller:
        return TuimprentaPoller.from_settings(self.settings(**overrides), AwsClients(self.aws.session))

    def run(self, **overrides: str) -> RunReport:
        return self.poller(**overrides).run(Deadline(60))

    def send(self, *events: dict[str, Any]) -> None:
        sqs = self.aws.session.client("sqs")
        url = self.aws.provisioned.queues["TuimprentaQueue"].url
        for start in range(0, len(events), 10):
            chunk = events[start : start + 10]
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": json.dumps(e)} for i, e in enumerate(chunk)],
            )

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self.aws.queue_messages("TuimprentaDeadLetterQueue")]

    def table(self) -> StateTable:
        return StateTable(self.aws.session.client("dynamodb"), self.environment["STATE_TABLE_NAME"])

    def ledger(self) -> Ledger:
        return Ledger(self.table())

    def issued(self, object_id: str) -> list[str]:
        return [i.status for i in self.peer.issued_for(object_id)]


@pytest.fixture
def harness(aws: Aws) -> Iterator[Harness]:
    peer = TuimprentaPeer(API_KEY, TUIMPRENTA_SECRET, processing_seconds=0.3, send_callbacks=False)
    peer.start()
    environment = poller_environment(aws, peer.base_url)
    try:
        yield Harness(aws, peer, environment)
    finally:
        peer.stop()


def test_the_callback_url_is_the_stacks_tuimprenta_webhook(harness: Harness) -> None:
    assert harness.settings().callback_url == CALLBACK


def test_a_drain_larger_than_two_batches_becomes_three_batches_each_issued_once(harness: Harness) -> None:
    # 2,500 invoices against the 1,000 limit, scaled down by 100 (25 against 10): moto costs ~15 ms per
    # DynamoDB write and its SQS receive is quadratic in the queue's depth, so 2,500 would take minutes.
    ids = [f"sin_{n:04d}" for n in range(25)]
    harness.send(*(envelope(i) for i in ids))
    report = harness.run(MAX_BATCH_SIZE="10")
    assert report.batches_submitted == 3
    assert sorted(len(b.payload) for b in harness.peer.batches.values()) == [5, 10, 10]
    assert report.issued == 25
    assert all(harness.issued(i) == ["issued"] for i in ids)
    assert len(harness.peer.invoices) == 25
    assert harness.aws.depth("TuimprentaQueue") == 0
    state = StateStore(harness.aws.session.client("dynamodb"), harness.environment["STATE_TABLE_NAME"])
    assert state.count_open_tuimprenta_batches() == 0
    # create + poll(s) + result per batch: far fewer calls than invoices
    assert sum(harness.peer.calls.values()) <= 3 * 5


def test_a_batch_never_holds_more_than_1000_invoices() -> None:
    with pytest.raises(ConfigurationError, match="MAX_BATCH_SIZE"):
        TuimprentaPollerSettings.from_env({**MINIMAL_SETTINGS, "MAX_BATCH_SIZE": "1001"})
    assert TuimprentaPollerSettings.from_env(MINIMAL_SETTINGS).max_batch_size == 1000


def test_a_partial_batch_dead_letters_exactly_its_two_invalid_invoices(harness: Harness) -> None:
    customer = {"name": "Sin RIF", "tax_id": " ", "email": None}
    valid = [envelope(f"sin_ok_{n}") for n in range(8)]
    invalid = [envelope("sin_bad_1", customer=customer), envelope("sin_bad_2", customer=customer)]
    harness.send(*valid[:4], invalid[0], *valid[4:], invalid[1])
    report = harness.run()
    (batch,) = harness.peer.batches.values()
    assert batch.status == "partial"
    assert (report.issued, report.failed) == (8, 2)
    messages = {json.loads(m["Body"])["object_id"]: m for m in harness.aws.queue_messages("TuimprentaDeadLetterQueue")}
    assert sorted(messages) == ["sin_bad_1", "sin_bad_2"]
    dead = json.loads(messages["sin_bad_1"]["Body"])
    assert all("tax_id" in json.loads(m["Body"])["error_message"] for m in messages.values())
    assert dead == {
        "destination": "tuimprenta",
        "object_id": "sin_bad_1",
        "event_id": "evt_created_sin_bad_1",
        "event_type": "sales_invoice.created",
        "batch_id": batch.id,
        "error_code": "E1001",
        "error_message": dead["error_message"],
    }
    attributes = {k: v["StringValue"] for k, v in messages["sin_bad_1"]["MessageAttributes"].items()}
    assert (attributes["event_id"], attributes["event_type"], attributes["attempts"]) == (
        "evt_created_sin_bad_1",
        "sales_invoice.created",
        "1",
    )
    entry = harness.ledger().get("tuimprenta", "sin_bad_1")
    assert entry is not None
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "E1001")
    assert entry.details == {"state": "failed", "batch_id": batch.id}
    issued = harness.ledger().get("tuimprenta", "sin_ok_3")
    assert issued is not None
    assert issued.status == SyncStatus.SYNCED
    assert issued.remote_id == harness.peer.issued_for("sin_ok_3")[0].id
    assert issued.details["number"] == str(harness.peer.issued_for("sin_ok_3")[0].number)
    # never re-sent: another run does nothing more
    harness.send(invalid[0])
    assert harness.run().batches_submitted == 0
    assert harness.aws.depth("TuimprentaDeadLetterQueue") == 2


def test_a_rejected_invoice_fixed_at_the_source_is_issued_when_replayed(harness: Harness) -> None:
    # Given an invoice tuimprenta rejected for its empty tax id
    harness.send(envelope("sin_fix", customer={"name": "Sin RIF", "tax_id": " ", "email": None}))
    assert harness.run().failed == 1
    # When the operator fixes it in BuildNexion and replays it (a newer version of the same invoice)
    fixed = envelope("sin_fix", updated_at="2026-11-08T09:00:00Z")
    harness.send(fixed)
    report = harness.run()
    # Then it is issued, once
    assert report.issued == 1
    assert len(harness.peer.issued_for("sin_fix")) == 1
    entry = harness.ledger().get("tuimprenta", "sin_fix")
    assert entry is not None
    assert entry.status == SyncStatus.SYNCED


def test_a_crash_after_the_post_and_before_the_ledger_write_gets_the_same_batch_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"sin_c{n}" for n in range(5)]
    harness.send(*(envelope(i) for i in ids))
    poller = harness.poller()
    real_put = BatchStore.put

    def crash_once(self: BatchStore, item: Any) -> None:
        if item.batch_id is not None:
            raise RuntimeError("the process died")
        real_put(self, item)

    monkeypatch.setattr(BatchStore, "put", crash_once)
    with pytest.raises(RuntimeError, match="died"):
        poller.run(Deadline(30))
    monkeypatch.setattr(BatchStore, "put", real_put)
    assert harness.aws.depth("TuimprentaQueue") == 0  # deleted: the claims were durable
    assert harness.peer.calls["POST /batches"] == 1

    report = harness.run()
    assert harness.peer.calls["POST /batches"] == 2  # the same key and body sent again...
    assert len(harness.peer.batches) == 1  # ...gave the same batch back
    assert report.issued == 5
    assert all(harness.issued(i) == ["issued"] for i in ids)


def die_before_the_batch_item(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A run that claims what the queue holds and dies before writing its batch item; the messages it received."""
    received: list[Any] = []
    real_receive = TuimprentaPoller._receive

    def receive(self: TuimprentaPoller, work: Deadline) -> Any:
        received.extend(real_receive(self, work))
        return received

    def crash(self: BatchStore, item: Any) -> None:
        raise RuntimeError("the process died")

    monkeypatch.setattr(TuimprentaPoller, "_receive", receive)
    monkeypatch.setattr(BatchStore, "put", crash)
    with pytest.raises(RuntimeError):
        harness.run()
    monkeypatch.undo()
    return received


def test_a_crash_before_the_batch_item_leaves_the_messages_to_be_claimed_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.send(envelope("sin_x1"), envelope("sin_x2"))
    received = die_before_the_batch_item(harness, monkeypatch)
    assert harness.peer.calls["POST /batches"] == 0
    assert harness.aws.depth("TuimprentaQueue") == 2  # not deleted: the claim never became a batch item
    # Once their visibility timeout ends (played here at once), they are claimed again and issued once.
    sqs = harness.aws.session.client("sqs")
    url = harness.aws.provisioned.queues["TuimprentaQueue"].url
    for message in received:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert harness.run().issued == 2
    assert harness.issued("sin_x1") == harness.issued("sin_x2") == ["issued"]


def test_409_for_a_key_used_with_another_body_is_looked_up_then_submitted_under_a_new_key(harness: Harness) -> None:
    events = [envelope("sin_k1"), envelope("sin_k2")]
    members = [
        (e["data"]["object"]["id"], payload_text(SalesInvoice.model_validate(e["data"]["object"]))) for e in events
    ]
    key = submission_key(members, 1)
    # Someone used the key the poller will derive with another body.
    other = batch_body([members[0][1]], None)
    answer = requests.post(
        f"{harness.peer.base_url}/batches",
        data=other,
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key, "Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 201
    harness.peer.invoices.clear()
    harness.peer.batches.clear()
    harness.send(*events)
    # The poller posts the same key again while it may pass (MAX_BATCH_ATTEMPTS), then, whether the invoices
    # were issued being unknown, looks them up: shown absent, they are submitted under a new key, once.
    for _ in range(6):
        harness.run()
    # the other's post, our MAX_BATCH_ATTEMPTS (3) tries with the key, no more, and ours anew under a new key
    assert harness.peer.calls["POST /batches"] == 1 + 3 + 1
    assert harness.issued("sin_k1") == ["issued"]
    assert harness.issued("sin_k2") == ["issued"]
    assert harness.dead_letters() == []


def test_429_and_5xx_on_create_are_retried_and_nothing_is_lost(harness: Harness) -> None:
    harness.peer.fail_next("POST /batches", 429, 503)
    harness.send(envelope("sin_r1"))
    report = harness.run()
    assert harness.peer.calls["POST /batches"] == 3
    assert report.issued == 1
    assert harness.issued("sin_r1") == ["issued"]
    assert harness.dead_letters() == []


def test_a_409_on_create_is_tried_again_with_the_same_key_never_dead_lettered(harness: Harness) -> None:
    # Given tuimprenta answering the batch create 409 once (its key conflicts: a create whose answer was lost,
    # or one still under way), as make chaos seed 3 showed dead-lettering 58 invoices at once
    harness.peer.fail_next("POST /batches", 409)
    harness.send(envelope("sin_409"))
    # When the poller runs, Then the same batch is posted again later and its invoice issued once
    harness.run(RUN_SECONDS="0")
    assert harness.dead_letters() == []
    harness.run()
    assert harness.peer.calls["POST /batches"] == 2
    assert harness.issued("sin_409") == ["issued"]
    assert harness.dead_letters() == []


def test_a_long_rate_limit_leaves_the_batch_claimed_for_the_next_run(harness: Harness) -> None:
    harness.peer.fail_next("POST /batches", 429, 429, 429)
    harness.send(envelope("sin_r2"))
    first = harness.run(RUN_SECONDS="0")
    assert first.batches_submitted == 0
    assert harness.aws.depth("TuimprentaQueue") == 0  # claimed: no longer on the queue, not lost either
    assert BatchStore(harness.table()).open()[0].batch_id is None
    assert harness.run().issued == 1
    assert harness.issued("sin_r2") == ["issued"]


def test_the_peer_rate_limit_answers_with_x_ratelimit_headers() -> None:
    peer = TuimprentaPeer("k", "s", rate_limit=2, rate_window_seconds=60)
    peer.start()
    try:
        answers = [
            requests.get(f"{peer.base_url}/batches/nope", headers={"Authorization": "Bearer k"}, timeout=5)
            for _ in range(3)
        ]
    finally:
        peer.stop()
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "2"
    assert answers[1].headers["X-RateLimit-Remaining"] == "0"
    assert answers[2].json()["error"]["code"] == "E4290"


def test_a_cancel_before_submission_drops_the_invoice(harness: Harness) -> None:
    harness.send(
        envelope("sin_d1"),
        envelope("sin_d1", "sales_invoice.canceled"),
        envelope("sin_d2"),
        envelope("sin_d3", "sales_invoice.canceled"),
    )
    report = harness.run()
    assert report.dropped == 2
    assert harness.issued("sin_d1") == harness.issued("sin_d3") == []
    assert harness.issued("sin_d2") == ["issued"]
    entry = harness.ledger().get("tuimprenta", "sin_d1")
    assert entry is not None
    cancel = envelope("sin_d1", "sales_invoice.canceled")
    assert (entry.closed, entry.status, entry.intent_id) == (True, SyncStatus.SYNCED, None)
    assert entry.details == {"state": "dropped"}
    assert (entry.last_event_id, entry.last_event_type) == (cancel["id"], "sales_invoice.canceled")
    assert entry.source_updated_at == datetime.fromisoformat(cancel["data"]["object"]["updated_at"])
    # a late redelivery of the create with a second cancel changes nothing: one duplicate per cancel
    harness.send(envelope("sin_d1"), cancel, envelope("sin_d3", "sales_invoice.canceled"))
    again = harness.run()
    assert (again.batches_submitted, again.dropped, again.duplicates) == (0, 0, 2)
    assert harness.issued("sin_d1") == harness.issued("sin_d3") == []


def test_a_cancel_of_an_invoice_claimed_but_never_batched_drops_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two invoices claimed by a run that died before their batch item was written
    harness.send(envelope("sin_y1"), envelope("sin_y2"))
    die_before_the_batch_item(harness, monkeypatch)
    claimed = harness.ledger().get("tuimprenta", "sin_y1")
    assert claimed is not None
    assert claimed.details["state"] == "batched"
    # When a cancel of the first arrives
    harness.send(envelope("sin_y1", "sales_invoice.canceled"))
    report = harness.run(RUN_SECONDS="0")
    # Then it is dropped at once (no batch holds it), and nothing waits to be canceled at tuimprenta
    assert report.dropped == 1
    entry = harness.ledger().get("tuimprenta", "sin_y1")
    assert entry is not None
    assert (entry.closed, entry.details) == (True, {"state": "dropped"})
    assert list(CancelStore(harness.table()).waiting()) == []
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 0


def test_a_cancel_while_the_batch_is_open_waits_for_the_outcome(harness: Harness) -> None:
    harness.peer.processing_seconds = 4.0
    harness.send(envelope("sin_w1"))
    assert harness.run(RUN_SECONDS="0").batches_submitted == 1
    harness.send(envelope("sin_w1", "sales_invoice.canceled"))
    waiting = harness.run(RUN_SECONDS="0")
    assert waiting.canceled == 0
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 0
    done = harness.run()
    assert (done.issued, done.canceled) == (1, 1)
    assert harness.issued("sin_w1") == ["canceled"]
    assert harness.peer.issued_for("sin_w1")[0].cancel_reason == "canceled in BuildNexion"


def test_a_cancel_after_issue_cancels_at_tuimprenta_once(harness: Harness) -> None:
    harness.send(envelope("sin_a1"))
    assert harness.run().issued == 1
    harness.send(envelope("sin_a1", "sales_invoice.canceled"))
    assert harness.run().canceled == 1
    harness.send(envelope("sin_a1", "sales_invoice.canceled"))  # a duplicate cancel
    assert harness.run().canceled == 0
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 1
    assert harness.issued("sin_a1") == ["canceled"]


def test_a_run_never_overlaps_another(harness: Harness) -> None:
    harness.send(*(envelope(f"sin_o{n}") for n in range(20)))
    Leases(harness.table()).acquire(LEASE_NAME, "another-run", 30)
    skipped = harness.run()
    assert skipped.skipped
    assert harness.peer.calls.total() == 0
    Leases(harness.table()).release(LEASE_NAME, "another-run")

    harness.peer.processing_seconds = 1.0
    reports: list[RunReport] = []
    first = threading.Thread(target=lambda: reports.append(harness.run()))
    first.start()
    wait_for(lambda: harness.peer.calls["POST /batches"], 20, "the first run to submit")
    second = harness.run()
    first.join(30)
    assert second.skipped
    assert reports[0].issued == 20
    assert all(harness.issued(f"sin_o{n}") == ["issued"] for n in range(20))


def test_a_recorded_callback_makes_the_run_look_at_its_batch_at_once(harness: Harness) -> None:
    harness.send(envelope("sin_h1"))
    slow = {"POLL_BASE_SECONDS": "300", "POLL_MAX_SECONDS": "300"}
    assert harness.run(RUN_SECONDS="0", **slow).batches_submitted == 1
    (batch,) = harness.peer.batches.values()
    wait_for(lambda: harness.peer.clock_reached(batch.done_at), 10, "the sandbox to finish the batch")
    # Without a callback the next poll is five minutes away: a short run does nothing.
    assert harness.run(RUN_SECONDS="1", **slow).issued == 0
    event = TuimprentaEvent.model_validate(
        {
            "id": "evt_h1",
            "type": "batch.completed",
            "data": {"batch_id": batch.id},
            "created_at": "2026-11-07T12:00:00Z",
        }
    )
    store = StateStore(harness.aws.session.client("dynamodb"), harness.environment["STATE_TABLE_NAME"])
    record_tuimprenta_event(store, TuimprentaEventItem.from_event(event, datetime.now(UTC)))
    report = harness.run(RUN_SECONDS="1", **slow)
    assert (report.polls, report.issued) == (1, 1)


def clocked_poller(harness: Harness, clock: FakeClock, sleep: Any = None) -> TuimprentaPoller:
    """The harness's poller on a clock that moves only when the poller sleeps (no real time passes)."""
    settings = harness.settings()
    sqs = harness.aws.session.client("sqs")

    def no_client() -> Any:
        raise AssertionError("waiting calls no platform")

    def nap(seconds: float) -> None:
        assert seconds > 0, "a nap of no time is a busy loop"
        (sleep or clock.sleep)(seconds)

    return TuimprentaPoller(
        settings=settings,
        client_factory=no_client,
        sqs=sqs,
        table=harness.table(),
        dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, "tuimprenta"),
        clock=clock,
        sleep=nap,
    )


def test_waiting_for_the_next_poll_sleeps_until_it_is_due_looking_for_callbacks_meanwhile(harness: Harness) -> None:
    # Given nothing that would wake the poller early (HINT_CHECK_SECONDS is 0.05)
    clock = FakeClock()
    # When it waits 0.2 s for its next poll within a run that could go on for 10 s
    clocked_poller(harness, clock)._wait(0.2, Deadline(10, clock=clock))
    # Then it slept until the poll is due, and no longer than a hint check at a time
    assert sum(clock.slept) == pytest.approx(0.2, abs=1e-6)  # an epoch clock: float steps of ~2e-7
    assert max(clock.slept) == pytest.approx(0.05, abs=1e-6)
    assert len(clock.slept) >= 4


def test_waiting_ends_with_the_run(harness: Harness) -> None:
    clock = FakeClock()
    clocked_poller(harness, clock)._wait(1.0, Deadline(0.2, clock=clock))
    assert sum(clock.slept) == pytest.approx(0.2, abs=0.06)


@pytest.mark.parametrize("wake", ["callback", "new work"])
def test_waiting_ends_at_once_when_a_callback_or_new_work_arrives(harness: Harness, wake: str) -> None:
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 2:  # something arrives during the second nap
            if wake == "new work":
                harness.send(envelope("sin_wake"))
            else:
                store = StateStore(harness.aws.session.client("dynamodb"), harness.environment["STATE_TABLE_NAME"])
                event = TuimprentaEvent.model_validate(
                    {
                        "id": "evt_wake",
                        "type": "batch.completed",
                        "data": {"batch_id": "batch_wake"},
                        "created_at": "2026-11-07T12:00:00Z",
                    }
                )
                record_tuimprenta_event(store, TuimprentaEventItem.from_event(event, datetime.now(UTC)))

    clocked_poller(harness, clock, sleep)._wait(300, Deadline(600, clock=clock))
    assert clock.slept == pytest.approx([0.05, 0.05])


def test_invoices_a_failed_batch_left_without_a_result_are_submitted_again(harness: Harness) -> None:
    harness.peer.flaky_ids.add("sin_f2")
    harness.send(envelope("sin_f1"), envelope("sin_f2"))
    report = harness.run(MAX_BATCH_ATTEMPTS="2")  # the second attempt is the last one allowed
    assert (report.issued, report.resubmitted, report.batches_submitted) == (2, 1, 2)
    assert harness.issued("sin_f2") == ["issued"]
    assert harness.dead_letters() == []


class Always(set[str]):
    """Invoice ids tuimprenta never gives a result for (the sandbox forgets a flaky id once used)."""

    def discard(self, element: object) -> None:
        pass


def test_an_invoice_never_given_a_result_is_dead_lettered_after_the_last_attempt(harness: Harness) -> None:
    # Given an invoice tuimprenta's batches never give a result for, and three attempts allowed
    harness.peer.flaky_ids = Always({"sin_g1"})
    harness.send(envelope("sin_g1"))
    # When the poller runs
    report = harness.run(MAX_BATCH_ATTEMPTS="3")
    # Then it was submitted again twice, then given up and dead-lettered with why
    assert (report.batches_submitted, report.resubmitted, report.failed) == (3, 2, 1)
    (message,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    dead = json.loads(message["Body"])
    assert dead["error_code"] == "batch_failed"
    assert dead["error_message"].endswith("; gave up after 3 attempts")
    assert message["MessageAttributes"]["attempts"]["StringValue"] == "3"
    # the batch named is the last one that left it without a result
    last = max(harness.peer.batches.values(), key=lambda b: b.created)  # the monotonic clock: no ties
    assert dead["batch_id"] == last.id
    entry = harness.ledger().get("tuimprenta", "sin_g1")
    assert entry is not None
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "batch_failed")
    assert entry.details == {"state": "failed", "batch_id": last.id}


def test_a_submission_again_waits_its_backoff(harness: Harness) -> None:
    # Given a first batch that left an invoice without a result
    harness.peer.flaky_ids.add("sin_b1")
    harness.send(envelope("sin_b1"))
    assert harness.run(RUN_SECONDS="0").batches_submitted == 1
    (batch,) = harness.peer.batches.values()
    wait_for(lambda: harness.peer.clock_reached(batch.done_at), 10, "the sandbox to finish the batch")
    # When its result is read with a 300 s backoff base
    report = harness.run(RUN_SECONDS="0", POLL_BASE_SECONDS="300", POLL_MAX_SECONDS="300")
    # Then the invoice waits in a second attempt about 300 s (jitter ±20 %) before it is posted again
    assert (report.resubmitted, report.batches_submitted) == (1, 0)
    (item,) = BatchStore(harness.table()).open()
    assert (item.attempt, item.members, item.batch_id) == (2, ["sin_b1"], None)
    assert 240 <= item.next_poll_at - item.created_at <= 360


def test_a_create_delivered_again_while_its_batch_is_open_is_a_duplicate(harness: Harness) -> None:
    harness.peer.processing_seconds = 4.0
    harness.send(envelope("sin_u1"))
    assert harness.run(RUN_SECONDS="0").batches_submitted == 1
    harness.send(envelope("sin_u1"))
    again = harness.run(RUN_SECONDS="0")
    assert (again.duplicates, again.batches_submitted) == (1, 0)
    assert len(BatchStore(harness.table()).open()) == 1


def test_an_entry_no_longer_pending_is_never_claimed_again(harness: Harness) -> None:
    # Given a synced entry whose details still name a claim (whatever wrote them)
    harness.ledger().save(
        LedgerEntry(
            destination="tuimprenta",
            object_id="sin_n1",
            status=SyncStatus.SYNCED,
            remote_id="inv_1",
            source_updated_at=datetime(2026, 11, 7, tzinfo=UTC),
            details={"state": "batched", "submission": "no-such-item"},
        )
    )
    harness.send(envelope("sin_n1"))
    report = harness.run()
    assert (report.duplicates, report.batches_submitted) == (1, 0)
    assert harness.issued("sin_n1") == []


def test_messages_that_are_not_sales_invoice_events_are_dead_lettered_with_the_reason(harness: Harness) -> None:
    # Given a message whose invoice lacks its id, a purchase-order event, and one good invoice
    broken = envelope("sin_broken")
    del broken["data"]["object"]["id"]
    wrong_type = envelope("sin_wrong", event_type="purchase_order.created")
    harness.send(broken, wrong_type, envelope("sin_fine"))
    sqs = harness.aws.session.client("sqs")
    sqs.send_message(
        QueueUrl=harness.aws.provisioned.queues["TuimprentaQueue"].url,
        MessageBody="{not json",
        MessageAttributes={"event_id": {"DataType": "String", "StringValue": "evt_garbled"}},
    )

    # When the poller runs
    report = harness.run()

    # Then the good invoice is issued and each other message is dead-lettered once, with why, and gone
    assert report.issued == 1
    assert harness.issued("sin_fine") == ["issued"]
    dead = {m["Body"]: m for m in harness.aws.queue_messages("TuimprentaDeadLetterQueue")}
    assert len(dead) == 3
    reasons = {
        body: {k: v["StringValue"] for k, v in m["MessageAttributes"].items() if k != "failed_at"}
        for body, m in dead.items()
    }
    assert reasons[json.dumps(broken)]["error_code"] == "malformed_message"
    assert reasons[json.dumps(broken)]["error_message"].startswith("message body: data.object.id:")
    assert reasons[json.dumps(wrong_type)]["error_code"] == "unexpected_event"
    assert "purchase_order.created" in reasons[json.dumps(wrong_type)]["error_message"]
    garbled = reasons["{not json"]
    assert (garbled["error_code"], garbled["event_id"], garbled["destination"]) == (
        "malformed_message",
        "evt_garbled",
        "tuimprenta",
    )
    assert all(r["attempts"] == "1" for r in reasons.values())
    assert harness.aws.depth("TuimprentaQueue") == 0


def test_a_malformed_message_received_before_says_how_often_in_the_dead_letter(harness: Harness) -> None:
    # Given a garbled message a crashed run already received once
    sqs = harness.aws.session.client("sqs")
    url = harness.aws.provisioned.queues["TuimprentaQueue"].url
    sqs.send_message(QueueUrl=url, MessageBody="{not json")
    (first,) = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    # When the poller runs
    harness.run()
    # Then its dead letter counts both receives
    (dead,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    assert dead["MessageAttributes"]["attempts"]["StringValue"] == "2"
    assert harness.aws.depth("TuimprentaQueue") == 0


def test_a_batch_tuimprenta_no_longer_knows_is_submitted_again_only_once_the_listing_shows_it_absent(
    harness: Harness,
) -> None:
    # Given a submitted batch tuimprenta then lost (its GET answers 404, poll after poll)
    harness.peer.processing_seconds = 30.0  # still processing when it is lost
    harness.send(envelope("sin_l1"))
    assert harness.run(RUN_SECONDS="0").batches_submitted == 1
    harness.peer.batches.clear()
    harness.peer.invoices.clear()
    harness.peer.processing_seconds = 0.0
    # When the poller looks at it
    report = harness.run()
    # Then its invoice is not submitted again on the 404s alone: it is looked up in `GET /invoices` first, and
    # only because the listing, read to its end, shows it absent is it submitted again, once.
    assert (report.lookups, report.found, report.resubmitted, report.batches_submitted) == (1, 0, 1, 1)
    harness.run()
    assert harness.issued("sin_l1") == ["issued"]
    assert harness.dead_letters() == []


def test_a_cancel_tuimprenta_refuses_is_dead_lettered_once(harness: Harness) -> None:
    # Given an issued invoice whose cancel tuimprenta refuses for good
    harness.send(envelope("sin_c9"))
    assert harness.run().issued == 1
    harness.peer.fail_next("POST /invoices/{id}/cancel", 422)
    harness.send(envelope("sin_c9", "sales_invoice.canceled"))
    # When the poller sends the cancel
    report = harness.run()
    # Then it is dead-lettered with the reason, not retried, and the invoice stays issued
    assert report.canceled == 0
    (message,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    assert json.loads(message["Body"]) == {"destination": "tuimprenta", "object_id": "sin_c9", "action": "cancel"}
    assert message["MessageAttributes"]["error_code"]["StringValue"] == "E4220"  # tuimprenta's code
    assert harness.run().canceled == 0
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 1
    assert harness.issued("sin_c9") == ["issued"]


def test_a_cancel_answered_409_is_sent_again_with_its_key_until_the_invoice_is_canceled(harness: Harness) -> None:
    # Given an issued invoice whose cancel tuimprenta answers 409 once (its key still held), without effect
    harness.send(envelope("sin_c10"))
    assert harness.run().issued == 1
    harness.peer.faults.force("status_409")
    harness.send(envelope("sin_c10", "sales_invoice.canceled"))
    # When the poller runs twice
    first, second = harness.run(), harness.run()
    # Then the second run cancels it with the same key, and nothing is dead-lettered
    assert (first.canceled, second.canceled) == (0, 1)
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 2
    assert harness.peer.calls["GET /invoices/{id}"] == 1
    assert harness.issued("sin_c10") == ["canceled"]
    assert harness.aws.queue_messages("TuimprentaDeadLetterQueue") == []


def test_a_cancel_answered_409_for_an_invoice_canceled_already_is_done(harness: Harness) -> None:
    # Given an issued invoice someone canceled at tuimprenta by hand before BuildNexion's cancel arrived
    harness.send(envelope("sin_c11"))
    assert harness.run().issued == 1
    (remote,) = harness.peer.issued_for("sin_c11")
    remote.status = "canceled"
    harness.send(envelope("sin_c11", "sales_invoice.canceled"))
    # When the poller sends the cancel and tuimprenta answers 409 (not in a state to cancel)
    report = harness.run()
    # Then the invoice is recorded canceled, nothing is dead-lettered, and no cancel is sent again
    assert report.canceled == 1
    assert harness.aws.queue_messages("TuimprentaDeadLetterQueue") == []
    assert harness.run().canceled == 0
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 1


def test_a_cancel_answered_409_every_time_is_dead_lettered_after_three_tries(harness: Harness) -> None:
    harness.send(envelope("sin_c12"))
    assert harness.run().issued == 1
    harness.peer.faults.force("status_409", 5)
    harness.send(envelope("sin_c12", "sales_invoice.canceled"))
    reports = [harness.run() for _ in range(4)]
    assert [r.canceled for r in reports] == [0, 0, 0, 0]
    assert harness.peer.calls["POST /invoices/{id}/cancel"] == 3
    (message,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    assert json.loads(message["Body"])["object_id"] == "sin_c12"
    assert message["MessageAttributes"]["error_code"]["StringValue"] == "E4090"
    assert harness.issued("sin_c12") == ["issued"]


class ReadUnits:
    """DynamoDB read units billed to a session's clients, by the rules the cost bench prices them with."""

    def __init__(self) -> None:
        self.units = 0.0
        self.items_read = 0

    def remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["read_units_params"] = params

    def count(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        from sandbox.usage import request_units

        units = request_units("dynamodb", model.name, context.get("read_units_params") or {}, parsed)
        self.units += units.get("dynamodb:read", 0.0)
        if model.name in {"Query", "Scan"}:
            self.items_read += int(parsed.get("ScannedCount") or 0)
        elif model.name == "GetItem":
            self.items_read += 1


def seed_closed_batches(harness: Harness, count: int) -> None:
    from invoice_bridge.tuimprenta.batches import BATCH_CLOSED, BatchItem

    client = harness.aws.session.client("dynamodb")
    items = [
        BatchItem(
            key=f"ib-old-{n:05d}",
            members=[f"sin_old_{n}_{m}" for m in range(9)],
            status=BATCH_CLOSED,
            batch_id=f"batch_old_{n}",
            created_at=float(n),
            next_poll_at=float(n),
            outcome="completed",
        ).to_item()
        for n in range(count)
    ]
    table = harness.environment["STATE_TABLE_NAME"]
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={table: chunk})  # type: ignore[dict-item]


def test_a_poller_run_reads_as_much_with_10_as_with_10000_closed_batches(harness: Harness) -> None:
    def read_per_run(closed: int) -> tuple[float, int]:
        seed_closed_batches(harness, closed)
        poller = harness.poller()
        poller.run(Deadline(60))  # the container's first run (it looks once for batches left by old versions)
        meter = ReadUnits()
        harness.aws.session.events.register("before-parameter-build.dynamodb", meter.remember)
        harness.aws.session.events.register("after-call.dynamodb", meter.count)
        try:
            poller = harness.poller()  # clients made now carry the meter
            poller.run(Deadline(60))
        finally:
            harness.aws.session.events.unregister("before-parameter-build.dynamodb", meter.remember)
            harness.aws.session.events.unregister("after-call.dynamodb", meter.count)
        return meter.units, meter.items_read

    few = read_per_run(10)
    many = read_per_run(10_000 - 10)  # 10,000 closed batches in all
    assert few == many
    assert few[0] > 0


def test_a_run_ends_with_its_invocation_even_when_run_seconds_is_longer(harness: Harness) -> None:
    # Given a batch tuimprenta keeps processing for a minute, and RUN_SECONDS longer than the invocation has left
    harness.peer.processing_seconds = 60.0
    harness.send(envelope("sin_short"))
    poller = harness.poller(RUN_SECONDS="30")
    # When a run gets an invocation with 2 s left
    started = time.monotonic()
    report = poller.run(Deadline(2))
    elapsed = time.monotonic() - started
    # Then it submits the invoice and stops waiting for the batch when the invocation must end, not 30 s later
    # (Lambda would kill it mid-write); the batch stays open for the next run
    assert report.batches_submitted == 1
    assert elapsed < 12
    assert len(BatchStore(harness.table()).open()) == 1
