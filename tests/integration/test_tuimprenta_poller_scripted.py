"""The poller on moto against tuimprenta answers scripted one by one: outcomes the sandbox peer never gives."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Ledger, LedgerEntry, SyncStatus
from invoice_bridge.tuimprenta.batches import BatchItem, BatchStore, CancelStore
from invoice_bridge.tuimprenta.client import TuimprentaClient
from invoice_bridge.tuimprenta.poller import RunReport, TuimprentaPoller
from invoice_bridge.worker import DeadLetters
from tests.conftest import FakeClock
from tests.integration.test_tuimprenta_poller import API_KEY, Harness, envelope, harness  # noqa: F401 - a fixture
from tests.unit.test_tuimprenta_client import FakeSession, response

T0 = datetime(2026, 11, 3, 10, 15, tzinfo=UTC)
KEY = "ib-batch-scripted"
HEADER = "index,invoice_id,status,series,number,error_code,error_message\r\n"


@dataclass
class Scripted:
    """A poller whose tuimprenta answers come from a list, on a clock that moves only when it sleeps."""

    harness: Harness
    answers: list[requests.Response]
    clock: FakeClock = field(default_factory=FakeClock)
    overrides: dict[str, str] = field(default_factory=dict)
    # Whether the client's own retry waits pass on the poller's clock (else they take no time at all).
    client_waits_on_clock: bool = False

    def __post_init__(self) -> None:
        self.session = FakeSession(self.answers)
        self.sqs: Any = AwsSqs(self.harness.aws.session.client("sqs"))
        self.ledger = Ledger(self.harness.table())
        self.batches = BatchStore(self.harness.table())

    def poller(self) -> TuimprentaPoller:
        settings = self.harness.settings(**self.overrides)
        sqs = self.sqs
        return TuimprentaPoller(
            settings=settings,
            client_factory=lambda: TuimprentaClient(
                settings.tuimprenta_api_url,
                SecretStr(API_KEY),
                session=self.session,
                sleep=self.clock.sleep if self.client_waits_on_clock else lambda _s: None,
            ),
            sqs=sqs,
            table=self.harness.table(),
            dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, "tuimprenta"),
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def claimed(self, object_id: str, *, submission: str = KEY, state: str = "batched", **changes: Any) -> None:
        """A ledger entry as the poller's claim leaves it (or as a later step left it)."""
        entry = LedgerEntry(
            destination="tuimprenta",
            object_id=object_id,
            source_updated_at=T0,
            last_event_id=f"evt_{object_id}",
            last_event_type="sales_invoice.created",
            details={"state": state, "submission": submission, "attempt": "1", "payload": "{}"},
        )
        self.ledger.save(entry.model_copy(update=changes))

    def submitted(
        self, *members: str, key: str = KEY, batch_id: str = "batch_1", created_at: float = 0, due_in: float = 0
    ) -> None:
        """The batch item of `members`, posted and due for its poll in `due_in` seconds."""
        self.batches.put(
            BatchItem(
                key=key,
                members=list(members),
                batch_id=batch_id,
                created_at=created_at,
                next_poll_at=self.clock() + due_in,
            )
        )

    def unsubmitted(self, key: str, *members: str, polls: int) -> None:
        """A claimed batch item not (known to be) posted yet, after `polls` failed tries, due a second ago."""
        self.batches.put(
            BatchItem(key=key, members=list(members), created_at=0, next_poll_at=self.clock() - 1, polls=polls)
        )

    def item(self, key: str) -> BatchItem:
        (found,) = [i for i in self.batches.open() if i.key == key]
        return found

    def cancels_waiting(self, *object_ids: str) -> CancelStore:
        """Cancels asked for `object_ids` (the store lists them by id)."""
        cancels = CancelStore(self.harness.table())
        for object_id in object_ids:
            cancels.put(object_id, f"evt_cancel_{object_id}")
        return cancels

    def entry(self, object_id: str) -> LedgerEntry:
        found = self.ledger.get("tuimprenta", object_id)
        assert found is not None
        return found

    def run(self) -> RunReport:
        return self.poller().run(Deadline(30))


class AwsSqs:
    """moto's SQS with the request limits AWS enforces and moto does not, recording receives and deletes.

    ReceiveMessage takes 1 to 10 messages and waits 0 to 20 s; DeleteMessageBatch takes at most 10 entries with
    distinct ids. Receipt handles in `failing` are reported Failed, as for a message whose visibility lapsed.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.receives: list[tuple[int | None, int | None]] = []
        self.deletes: list[int] = []
        self.failing: set[str] = set()

    def receive_message(self, **kwargs: Any) -> Any:
        wanted, wait = kwargs.get("MaxNumberOfMessages"), kwargs.get("WaitTimeSeconds")
        self.receives.append((wanted, wait))
        if wanted is not None and not 1 <= wanted <= 10:
            raise ValueError(f"MaxNumberOfMessages {wanted} is outside 1..10")
        if wait is not None and not 0 <= wait <= 20:
            raise ValueError(f"WaitTimeSeconds {wait} is outside 0..20")
        return self._client.receive_message(**kwargs)

    def delete_message_batch(self, **kwargs: Any) -> Any:
        entries = kwargs["Entries"]
        self.deletes.append(len(entries))
        if len(entries) > 10:
            raise ValueError("TooManyEntriesInBatchRequest")
        if len({e["Id"] for e in entries}) != len(entries):
            raise ValueError("BatchEntryIdsNotDistinct")
        kept = [e for e in entries if e["ReceiptHandle"] not in self.failing]
        answer = dict(self._client.delete_message_batch(**{**kwargs, "Entries": kept})) if kept else {}
        failed = [
            {"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "expired"}
            for e in entries
            if e["ReceiptHandle"] in self.failing
        ]
        return {**answer, "Failed": [*answer.get("Failed", []), *failed]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def finished(csv_rows: str) -> list[requests.Response]:
    """tuimprenta's answers for a completed batch: its status, then its result CSV."""
    batch = {"id": "batch_1", "type": "invoice.create", "status": "completed"}
    return [response(200, batch), response(200, (HEADER + csv_rows).encode())]


def test_results_skip_invoices_recorded_already_or_moved_to_a_newer_batch_and_record_the_rest(
    harness: Harness,
) -> None:
    # Given a batch of four: the first recorded already by a run that stopped half-way through the results,
    # the second claimed since into a newer batch, the third and fourth still waiting for this batch's outcome
    rig = Scripted(
        harness,
        finished("0,inv_a,issued,A,1,,\r\n1,inv_b,issued,A,2,,\r\n2,inv_c,issued,,,,\r\n3,inv_d,issued,A,4,,\r\n"),
    )
    rig.claimed("sin_a", state="issued", status=SyncStatus.SYNCED, remote_id="inv_a")
    rig.claimed("sin_b", submission="ib-batch-newer")
    rig.claimed("sin_c")
    rig.claimed("sin_d", source_updated_at=None)
    rig.submitted("sin_a", "sin_b", "sin_c", "sin_d")
    before = {object_id: rig.entry(object_id) for object_id in ("sin_a", "sin_b")}
    # When the run reads the results
    report = rig.run()
    # Then only the third and fourth are recorded; the first two are left as they were
    assert report.issued == 2
    assert {object_id: rig.entry(object_id) for object_id in ("sin_a", "sin_b")} == before
    third = rig.entry("sin_c")
    assert (third.status, third.remote_id) == (SyncStatus.SYNCED, "inv_c")
    # A row without series or number records them empty, not as a placeholder
    assert third.details == {"state": "issued", "batch_id": "batch_1", "series": "", "number": ""}
    # and an entry claimed without a version is recorded with the (time-zoned) time of its issue
    fourth = rig.entry("sin_d")
    assert fourth.remote_id == "inv_d"
    assert fourth.source_updated_at is not None
    assert fourth.source_updated_at.tzinfo is not None


def test_a_failed_row_without_code_or_message_is_dead_lettered_with_a_generic_reason(harness: Harness) -> None:
    rig = Scripted(harness, finished("0,,failed,,,,\r\n"))
    rig.claimed("sin_f")
    rig.submitted("sin_f")
    report = rig.run()
    assert report.failed == 1
    (dead,) = harness.dead_letters()
    assert (dead["object_id"], dead["error_code"]) == ("sin_f", "failed")
    assert dead["error_message"] == "tuimprenta did not issue the invoice"
    entry = rig.entry("sin_f")
    assert (entry.status, entry.error_code) == (SyncStatus.FAILED, "failed")
    assert entry.error_message == "tuimprenta did not issue the invoice"


def test_a_create_failing_without_retry_after_waits_a_capped_backoff_that_doubles_with_each_try(
    harness: Harness,
) -> None:
    # Given two claimed batches tuimprenta answers 503 without Retry-After (each three times: the client's retries),
    # one after two failed tries, the other after ten
    unavailable = [response(503, {"error": {"message": "unavailable"}}) for _ in range(6)]
    rig = Scripted(harness, unavailable, overrides={"POLL_MAX_SECONDS": "100", "RUN_SECONDS": "0"})
    rig.claimed("sin_x", submission="ib-batch-x")
    rig.claimed("sin_y", submission="ib-batch-y")
    rig.unsubmitted("ib-batch-x", "sin_x", polls=2)
    rig.unsubmitted("ib-batch-y", "sin_y", polls=10)
    start = rig.clock()
    # When the run tries to post them
    report = rig.run()
    # Then neither is lost: each waits 2^polls seconds from a one-second base (±20 %), at most POLL_MAX_SECONDS
    assert report.batches_submitted == 0
    assert len(rig.session.sent) == 6
    third = rig.item("ib-batch-x")
    assert third.polls == 3
    assert 3.2 <= third.next_poll_at - start <= 4.8
    eleventh = rig.item("ib-batch-y")
    assert eleventh.polls == 11
    assert 80 <= eleventh.next_poll_at - start <= 120


def test_a_batch_refused_without_an_error_code_dead_letters_its_invoices_under_the_http_status(
    harness: Harness,
) -> None:
    rig = Scripted(harness, [response(422, {"error": {"message": "payload rechazado"}})])
    rig.claimed("sin_r", submission="ib-batch-r")
    rig.unsubmitted("ib-batch-r", "sin_r", polls=0)
    report = rig.run()
    assert report.failed == 1
    (dead,) = harness.dead_letters()
    assert (dead["object_id"], dead["error_code"], dead["error_message"]) == ("sin_r", "http_422", "payload rechazado")
    assert rig.entry("sin_r").error_code == "http_422"
    assert rig.batches.open() == []


def test_posted_batches_count_all_their_invoices_and_start_polling_afresh_after_failed_tries(harness: Harness) -> None:
    # Given two claimed batches, one of two invoices after three failed tries to post it, one of one invoice
    created = [response(201, {"id": f"batch_{n}", "type": "invoice.create", "status": "queued"}) for n in ("x", "y")]
    rig = Scripted(harness, created, overrides={"RUN_SECONDS": "0", "POLL_BASE_SECONDS": "5"})
    for object_id, key in (("sin_x1", "ib-batch-x"), ("sin_x2", "ib-batch-x"), ("sin_y", "ib-batch-y")):
        rig.claimed(object_id, submission=key)
    rig.unsubmitted("ib-batch-x", "sin_x1", "sin_x2", polls=3)
    rig.unsubmitted("ib-batch-y", "sin_y", polls=0)
    # When the run posts both
    report = rig.run()
    # Then the run counts both batches and all three invoices
    assert (report.batches_submitted, report.invoices_submitted) == (2, 3)
    # and the batch posted after failed tries is first polled one base wait on, its count of polls back at zero
    posted = rig.item("ib-batch-x")
    assert (posted.batch_id, posted.polls, posted.next_poll_at) == ("batch_x", 0, rig.clock() + 5)


def batch_answer(batch_id: str, status: str) -> requests.Response:
    return response(200, {"id": batch_id, "type": "invoice.create", "status": status})


TROUBLES: dict[str, list[requests.Response]] = {
    "still processing": [batch_answer("batch_a", "processing")],
    "unavailable": [response(503, {"error": {"message": "unavailable"}}) for _ in range(3)],
    # an unreadable result leaves the outcome unknown: the listing of invoices (read to its end) decides
    "unreadable result": [
        batch_answer("batch_a", "completed"),
        response(200, b"nonsense\r\n"),
        response(200, {"data": [], "next_cursor": None}),
    ],
    "lost": [response(404, {"error": {"message": "no such batch"}})],
}


@pytest.mark.parametrize("trouble", TROUBLES)
def test_whatever_befalls_one_batchs_poll_the_next_batch_due_is_polled_in_the_same_pass(
    harness: Harness, trouble: str
) -> None:
    # Given two batches due now, the older one in trouble
    answers = [
        *TROUBLES[trouble],
        batch_answer("batch_b", "completed"),
        response(200, (HEADER + "0,inv_b,issued,B,1,,\r\n").encode()),
    ]
    rig = Scripted(harness, answers, overrides={"RUN_SECONDS": "0"})
    rig.claimed("sin_a", submission="ib-batch-a")
    rig.claimed("sin_b", submission="ib-batch-b")
    rig.submitted("sin_a", key="ib-batch-a", batch_id="batch_a", created_at=1)
    rig.submitted("sin_b", key="ib-batch-b", batch_id="batch_b", created_at=2)
    # When a run polls them
    report = rig.run()
    # Then the younger one's invoice is issued all the same, in the run's first pass
    assert rig.entry("sin_b").remote_id == "inv_b"
    assert report.iterations == 1
    assert report.issued == 1
    assert report.polls == (1 if trouble in {"unavailable", "lost"} else 2)
    if trouble == "unreadable result":
        assert report.problems == [
            "result CSV lacks column(s) index, invoice_id, status, series, number, error_code, error_message"
        ]
        # the listing shows the invoice absent: only then is it claimed into a new attempt
        assert report.resubmitted == 1
    if trouble == "lost":
        # a first 404 concludes nothing: the batch is polled again later, its invoice not submitted again
        assert rig.item("ib-batch-a").misses == 1
        assert report.resubmitted == 0


@pytest.mark.parametrize("first_state", ["failed", "batched"])
def test_a_cancel_that_needs_no_call_or_must_wait_does_not_hold_up_the_cancels_after_it(
    harness: Harness, first_state: str
) -> None:
    # Given two cancels waiting: the first for an invoice tuimprenta refused (nothing to cancel) or one whose
    # batch is still open (its cancel waits for the outcome), the second for an issued invoice
    rig = Scripted(harness, [response(200, {"id": "inv_2", "status": "canceled"})], overrides={"RUN_SECONDS": "0"})
    rig.claimed("sin_c1", state=first_state)
    rig.claimed("sin_c2", state="issued", status=SyncStatus.SYNCED, remote_id="inv_2")
    cancels = rig.cancels_waiting("sin_c1", "sin_c2")
    # When a run sends what it can
    report = rig.run()
    # Then the issued invoice is canceled in this run all the same
    assert report.canceled == 1
    assert rig.entry("sin_c2").details["state"] == "canceled"
    assert [str(r["url"]) for r in rig.session.sent] == [
        f"{harness.settings().tuimprenta_api_url}/invoices/inv_2/cancel"
    ]
    assert list(cancels.waiting()) == ([] if first_state == "failed" else ["sin_c1"])


def test_a_refused_invoice_fixed_at_the_source_is_claimed_again_at_its_new_version(harness: Harness) -> None:
    # Given an invoice tuimprenta refused at version T0, and its fixed version arriving from BuildNexion
    rig = Scripted(
        harness,
        [response(201, {"id": "batch_v", "type": "invoice.create", "status": "queued"})],
        overrides={"RUN_SECONDS": "0"},
    )
    rig.claimed("sin_v", state="failed", status=SyncStatus.FAILED, error_code="E4220")
    harness.send(envelope("sin_v", updated_at="2026-11-07T12:00:00Z"))
    # When a run claims and posts it
    report = rig.run()
    # Then its entry records the version now submitted, not the refused one
    assert report.batches_submitted == 1
    entry = rig.entry("sin_v")
    assert entry.source_updated_at == datetime(2026, 11, 7, 12, tzinfo=UTC)
    assert (entry.status, entry.details["state"]) == (SyncStatus.PENDING, "batched")


def test_a_batch_that_fell_due_while_the_run_was_busy_is_polled_at_once(harness: Harness) -> None:
    # Given a posted batch due in 0.3 s, and a claimed one whose post meets a 503 (the client's retry waits ~0.5 s)
    answers = [
        response(503, {"error": {"message": "unavailable"}}),
        response(201, {"id": "batch_b", "type": "invoice.create", "status": "queued"}),
        *finished("0,inv_a,issued,A,1,,\r\n"),
    ]
    rig = Scripted(harness, answers, overrides={"RUN_SECONDS": "0"}, client_waits_on_clock=True)
    rig.claimed("sin_a")
    rig.claimed("sin_b", submission="ib-batch-b")
    rig.submitted("sin_a", due_in=0.3)
    rig.unsubmitted("ib-batch-b", "sin_b", polls=0)
    # When a run with no time to wait posts the second, by when the first is overdue
    report = rig.run()
    # Then the first is polled (and its invoice issued) without a wait, in the run's second pass
    assert (report.batches_submitted, report.polls, report.issued, report.iterations) == (1, 1, 1, 2)


def created(batch_id: str) -> requests.Response:
    return response(201, {"id": batch_id, "type": "invoice.create", "status": "queued"})


def test_a_drain_asks_sqs_only_what_aws_allows_and_fills_a_batch_exactly_to_its_size(harness: Harness) -> None:
    # Given 30 sales invoices queued, batches of at most 25, and a one-second window to gather a batch
    harness.send(*(envelope(f"sin_{n:02d}") for n in range(30)))
    rig = Scripted(
        harness,
        [created("batch_1"), created("batch_2")],
        overrides={"MAX_BATCH_SIZE": "25", "BATCH_WINDOW_SECONDS": "1", "POLL_BASE_SECONDS": "300"},
    )
    # When a run drains the queue
    report = rig.run()
    # Then it posts a batch of 25, then one of the 5 left
    posted = [json.loads(r["data"]) for r in rig.session.sent]
    assert [len(b["payload"]) for b in posted] == [25, 5]
    assert report.invoices_submitted == 30
    # asking for at most 10 a time and no more than the batch lacks, waiting the window only once it has some
    assert rig.sqs.receives == [(10, 0), (10, 1), (5, 1), (10, 0), (10, 1), (10, 0)]
    # and deleting what it claimed ten at a time, each message once
    assert rig.sqs.deletes == [10, 10, 5, 5]
    assert harness.aws.depth("TuimprentaQueue") == 0


def test_duplicates_in_a_drain_are_all_counted_and_do_not_hold_up_the_new_invoices_after_them(
    harness: Harness,
) -> None:
    # Given two invoices already canceled and done (closed), delivered again, then a new one
    rig = Scripted(harness, [created("batch_n")], overrides={"RUN_SECONDS": "0"})
    for object_id in ("sin_d1", "sin_d2"):
        rig.claimed(object_id, state="canceled", closed=True)
    harness.send(envelope("sin_d1"), envelope("sin_d1"), envelope("sin_d2"), envelope("sin_new"))
    # When a run drains them
    report = rig.run()
    # Then all three deliveries of closed invoices are duplicates, and the new invoice is posted all the same
    assert report.duplicates == 3
    assert (report.batches_submitted, report.invoices_submitted) == (1, 1)
    assert harness.aws.depth("TuimprentaQueue") == 0


def test_messages_sqs_failed_to_delete_are_reported_in_a_warning(harness: Harness, log_stream: io.StringIO) -> None:
    # Given a claimed message whose receipt handle has lapsed by the time it is deleted
    rig = Scripted(harness, [created("batch_l")], overrides={"RUN_SECONDS": "0"})
    harness.send(envelope("sin_l1"), envelope("sin_l2"))
    original = rig.sqs.receive_message

    def receive_and_lapse(**kwargs: Any) -> Any:
        answer = original(**kwargs)
        rig.sqs.failing.update(m["ReceiptHandle"] for m in answer.get("Messages", [])[:1])
        return answer

    rig.sqs.receive_message = receive_and_lapse
    # When a run claims and deletes them
    rig.run()
    # Then the one not deleted is told (it comes back later and is recognised as a duplicate)
    warnings = [json.loads(line) for line in log_stream.getvalue().splitlines() if "not deleted" in line]
    assert [(w["message"], w["failed"]) for w in warnings] == [("some messages were not deleted", 1)]


def test_an_unposted_batch_behind_a_posted_one_is_posted_and_a_claim_without_payload_is_a_bug_named(
    harness: Harness,
) -> None:
    # Given an older batch posted and not yet due, and a claimed batch not posted yet
    rig = Scripted(harness, [created("batch_u")], overrides={"RUN_SECONDS": "0"})
    rig.claimed("sin_p")
    rig.claimed("sin_u", submission="ib-batch-u")
    rig.submitted("sin_p", created_at=0, due_in=600)
    rig.unsubmitted("ib-batch-u", "sin_u", polls=0)
    # When a run looks at them, Then the unposted one is posted
    assert rig.run().batches_submitted == 1
    # and a claimed batch whose invoice lost its payload stops the run, naming both
    rig.claimed("sin_z", submission="ib-batch-z", details={"state": "batched", "submission": "ib-batch-z"})
    rig.unsubmitted("ib-batch-z", "sin_z", polls=0)
    with pytest.raises(RuntimeError, match=r"^batch item ib-batch-z: sin_z has no claimed payload$"):
        rig.run()


def test_a_cancel_refused_without_a_code_is_dead_lettered_once_and_the_next_cancel_is_sent(harness: Harness) -> None:
    rig = Scripted(
        harness,
        [response(422, {"error": {"message": "ya declarada"}}), response(200, {"id": "inv_2", "status": "canceled"})],
        overrides={"RUN_SECONDS": "0"},
    )
    rig.claimed("sin_k1", state="issued", status=SyncStatus.SYNCED, remote_id="inv_1")
    rig.claimed("sin_k2", state="issued", status=SyncStatus.SYNCED, remote_id="inv_2")
    cancels = rig.cancels_waiting("sin_k1", "sin_k2")
    report = rig.run()
    assert report.canceled == 1
    (message,) = harness.aws.queue_messages("TuimprentaDeadLetterQueue")
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert (attributes["error_code"], attributes["error_message"], attributes["attempts"]) == (
        "cancel_refused",
        "ya declarada",
        "1",
    )
    assert list(cancels.waiting()) == []
