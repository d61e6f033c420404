"""The poller on moto against tuimprenta answers scripted one by one: outcomes the sandbox peer never gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from pydantic import SecretStr

from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Ledger, LedgerEntry, SyncStatus
from invoice_bridge.tuimprenta.batches import BatchItem, BatchStore
from invoice_bridge.tuimprenta.client import TuimprentaClient
from invoice_bridge.tuimprenta.poller import RunReport, TuimprentaPoller
from invoice_bridge.worker import DeadLetters
from tests.conftest import FakeClock
from tests.integration.test_tuimprenta_poller import API_KEY, Harness, harness  # noqa: F401 - a fixture
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

    def __post_init__(self) -> None:
        self.session = FakeSession(self.answers)
        self.ledger = Ledger(self.harness.table())
        self.batches = BatchStore(self.harness.table())

    def poller(self) -> TuimprentaPoller:
        settings = self.harness.settings(**self.overrides)
        sqs = self.harness.aws.session.client("sqs")
        return TuimprentaPoller(
            settings=settings,
            client_factory=lambda: TuimprentaClient(
                settings.tuimprenta_api_url, SecretStr(API_KEY), session=self.session, sleep=lambda _s: None
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

    def submitted(self, *members: str) -> None:
        """The batch item of `members`, posted and due for its poll."""
        self.batches.put(BatchItem(key=KEY, members=list(members), batch_id="batch_1", created_at=0, next_poll_at=0))

    def unsubmitted(self, key: str, *members: str, polls: int) -> None:
        """A claimed batch item not (known to be) posted yet, after `polls` failed tries, due now."""
        self.batches.put(
            BatchItem(key=key, members=list(members), created_at=0, next_poll_at=self.clock(), polls=polls)
        )

    def item(self, key: str) -> BatchItem:
        (found,) = [i for i in self.batches.open() if i.key == key]
        return found

    def entry(self, object_id: str) -> LedgerEntry:
        found = self.ledger.get("tuimprenta", object_id)
        assert found is not None
        return found

    def run(self) -> RunReport:
        return self.poller().run(Deadline(30))


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
