"""The tuimprenta poller: sales invoices issued in asynchronous batches, none lost, none twice.

One run (never two at once: a lease in the state table) loops, bounded well under the function's timeout:

1. recorded callbacks name batches to look at first; every open batch is polled when its backoff is due;
   a finished batch's result CSV gives each invoice its outcome in the ledger (issued, or failed and
   dead-lettered with the reason). An invoice whose outcome the batch leaves unknown (the batch 404s, its
   row is missing or issued without an id, the file cannot be read) is looked up in `GET /invoices` by
   `metadata.buildnexion_id`: found → issued; shown absent → submitted again; undecided → dead-lettered
   as "outcome unknown". A fiscal invoice is never issued twice on a guess;
2. cancels waiting on an issued invoice are sent;
3. the queue is drained: each sales invoice is claimed in the ledger, the claimed set is written as a
   batch item, only then are its messages deleted, and the batch is posted with an Idempotency-Key derived
   from the set, so a re-send after a crash gets the same batch back.
"""

from __future__ import annotations

import csv
import decimal
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.models import SalesInvoice, WebhookEvent
from invoice_bridge.errors import PermanentSyncError, SyncError
from invoice_bridge.http import Deadline, backoff
from invoice_bridge.ledger import Leases, Ledger, LedgerEntry, StateTable, SyncStatus
from invoice_bridge.limiter import DynamoRateLimiter, limiter_key
from invoice_bridge.money import decimal_to_cents
from invoice_bridge.observability import gauge, logger
from invoice_bridge.secrets import SecretReader, TuimprentaSecret
from invoice_bridge.sync.contract import OUTCOME_UNKNOWN, Absent, Found, Lookup, Undecided
from invoice_bridge.tuimprenta.batches import BATCH_CLOSED, BatchItem, BatchStore, CancelStore
from invoice_bridge.tuimprenta.client import Batch, IdempotencyConflict, Invoice, NotFound, TuimprentaClient
from invoice_bridge.tuimprenta.events import Hints, consume_hints, read_hints
from invoice_bridge.tuimprenta.lookup import find_ours
from invoice_bridge.tuimprenta.mapping import batch_body, cancel_key, payload_text, submission_key
from invoice_bridge.tuimprenta.results import ResultFormatError, ResultRow, parse_results
from invoice_bridge.tuimprenta.settings import TuimprentaPollerSettings
from invoice_bridge.worker import DeadLetters, Failure, parse_body, parse_object

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

DESTINATION = "tuimprenta"
LEASE_NAME = "tuimprenta-poller"
CREATED = "sales_invoice.created"
CANCELED = "sales_invoice.canceled"
EVENT_TYPES = frozenset({CREATED, CANCELED})
# A row failed with one of these codes is a platform hiccup, not a verdict on the invoice: submitted again.
RETRYABLE_ROW_CODES = frozenset({"internal_error", "server_error", "timeout", "rate_limited", "E5000"})
# A batch that 404s this many polls in a row is taken as gone: its invoices are looked up.
BATCH_MISSING_POLLS = 3
# A cancel answered 409 while the invoice is still issued is sent again (same key) on later runs this many times.
MAX_CANCEL_CONFLICTS = 3
CANCELED_STATUS = "canceled"  # the reference's invoice status

# Ledger `details["state"]` of a tuimprenta entry.
BATCHED = "batched"  # claimed into a batch item (posted or about to be)
ISSUED = "issued"
FAILED = "failed"
DROPPED = "dropped"  # canceled before it was ever submitted
CANCELED_STATE = "canceled"


@dataclass
class RunReport:
    """What one run did (the handler's answer, and the figures tests and benches read)."""

    skipped: bool = False
    iterations: int = 0
    batches_submitted: int = 0
    invoices_submitted: int = 0
    polls: int = 0
    issued: int = 0
    failed: int = 0
    resubmitted: int = 0
    lookups: int = 0  # GET /invoices pages read to settle unknown outcomes
    found: int = 0  # invoices an unknown outcome turned out to have issued
    canceled: int = 0
    dropped: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class Drained:
    """A received message and the sales invoice event it carries."""

    message: MessageTypeDef
    event: WebhookEvent
    invoice: SalesInvoice


ClientFactory = Callable[[], TuimprentaClient]


class TuimprentaPoller:
    """One scheduled run of the poller."""

    def __init__(
        self,
        *,
        settings: TuimprentaPollerSettings,
        client_factory: ClientFactory,
        sqs: SQSClient,
        table: StateTable,
        dead_letters: DeadLetters,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._sqs = sqs
        self._table = table
        self._dead_letters = dead_letters
        self._clock = clock
        self._sleep = sleep
        self.ledger = Ledger(table)
        self.leases = Leases(table, clock)
        self.batches = BatchStore(table)
        self.cancels = CancelStore(table)

    @classmethod
    def from_settings(cls, settings: TuimprentaPollerSettings, clients: AwsClients | None = None) -> TuimprentaPoller:
        """The poller wired to AWS: the secret read through its cache at each run, one shared limiter."""
        clients = clients or AwsClients(boto3.session.Session())
        dynamodb = clients.dynamodb()
        secrets = SecretReader(SecretsProvider(boto3_client=clients.secretsmanager()), settings.secrets_max_age_seconds)
        session = requests.Session()

        def client() -> TuimprentaClient:
            secret = secrets.read(settings.tuimprenta_secret_id, TuimprentaSecret, "tuimprenta")
            limiter = DynamoRateLimiter(
                dynamodb,
                settings.state_table_name,
                limiter_key("tuimprenta", secret.api_key.get_secret_value()),
                limit=settings.rate_limit_per_minute,
                window_seconds=60,
                platform="tuimprenta",
            )
            return TuimprentaClient(settings.tuimprenta_api_url, secret.api_key, session=session, limiter=limiter)

        sqs = clients.sqs()
        return cls(
            settings=settings,
            client_factory=client,
            sqs=sqs,
            table=StateTable(dynamodb, settings.state_table_name),
            dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, DESTINATION),
        )

    # -- the run -----------------------------------------------------------------------------------

    def run(self, deadline: Deadline) -> RunReport:
        """One run: skipped at once while another run holds the lease."""
        report = RunReport()
        owner = uuid.uuid4().hex
        if not self.leases.acquire(LEASE_NAME, owner, self.settings.lease_seconds):
            logger.info("another poller run is under way; this one stops")
            report.skipped = True
            return report
        try:
            client = self._client_factory()
            work = Deadline(min(deadline.remaining(), self.settings.run_seconds))
            self._loop(client, work, deadline, report)
        finally:
            self.leases.release(LEASE_NAME, owner)
        still_open = self.batches.open()
        gauge("TuimprentaOpenBatches", len(still_open))
        # From the claim on: a batch open past its expected time (a stuck poll, a lost batch) is alarmed on this.
        now = self._clock()
        gauge("TuimprentaOldestOpenBatchSeconds", max((now - i.created_at for i in still_open), default=0.0))
        logger.info("poller run done", extra={"report": report.as_dict()})
        return report

    def _loop(self, client: TuimprentaClient, work: Deadline, calls: Deadline, report: RunReport) -> None:
        while True:
            report.iterations += 1
            hints = read_hints(self._table)
            self._poll_open(client, hints, calls, report)
            if hints:
                consume_hints(self._table, hints)
            self._send_cancels(client, calls, report)
            self._post_unsubmitted(client, calls, report)
            drained = self._drain(client, work, calls, report)
            if drained:
                continue
            open_items = self.batches.open()
            if not open_items:
                return
            wait = max(0.0, min(i.next_poll_at for i in open_items) - self._clock())
            if not work.allows(wait):
                return
            self._wait(wait, work)

    def _wait(self, seconds: float, work: Deadline) -> None:
        """Sleep until the next poll is due, looking for recorded callbacks (and new work) meanwhile."""
        end = self._clock() + seconds
        while True:
            left = end - self._clock()
            if left <= 0 or not work.allows(0.001):
                return
            self._sleep(min(left, self.settings.hint_check_seconds))
            if read_hints(self._table) or self._queue_has_messages():
                return

    def _queue_has_messages(self) -> bool:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.settings.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0")) > 0

    # -- polling and results -----------------------------------------------------------------------

    def _poll_open(self, client: TuimprentaClient, hints: Hints, calls: Deadline, report: RunReport) -> None:
        now = self._clock()
        items = [i for i in self.batches.open() if i.submitted]
        hinted = [i for i in items if hints.any_batch or i.batch_id in hints.batch_ids]
        due = [i for i in items if i not in hinted and i.next_poll_at <= now]
        for item in [*hinted, *due]:
            # One batch's trouble is settled (or deferred) on that batch alone: the next one is polled all the same.
            if not self._poll_one(client, item, calls, report):
                return  # rate limited: the rest waits too

    def _poll_one(self, client: TuimprentaClient, item: BatchItem, calls: Deadline, report: RunReport) -> bool:
        """Poll one batch and settle what it says; False when tuimprenta asked every call to wait."""
        assert item.batch_id is not None
        try:
            batch = client.batch(item.batch_id, calls)
        except NotFound as exc:
            misses = item.misses + 1
            if misses < BATCH_MISSING_POLLS:
                # A batch just created may not be readable everywhere yet: asked again before anything is concluded.
                logger.warning("batch not found; polled again later", extra={"batch": item.key, "misses": misses})
                self._poll_later(item.model_copy(update={"misses": misses}))
                return True
            why = f"batch {item.batch_id} not found {misses} times ({exc.message})"
            self._settle_unknown(client, item, None, {}, why, calls, report)
            return True
        except SyncError as exc:
            return self._deferred_or_unknown(client, item, None, exc, calls, report)
        report.polls += 1
        if not batch.finished:
            self._poll_later(item.model_copy(update={"misses": 0}))
            return True
        try:
            rows = parse_results(client.batch_result(batch, calls))
        except SyncError as exc:
            return self._deferred_or_unknown(client, item, batch, exc, calls, report)
        except (ResultFormatError, csv.Error, UnicodeDecodeError) as exc:
            # One batch's unreadable file (a field over csv's 128 KiB, bytes that are not UTF-8, another header)
            # stops neither the other batches nor the drain; its invoices' outcome is unknown, so each is looked up.
            problem = str(exc) if isinstance(exc, ResultFormatError) else f"result CSV unreadable: {exc!s:.300}"
            logger.error(
                "unreadable result CSV; its invoices are looked up", extra={"batch": item.key, "detail": problem}
            )
            report.problems.append(problem)
            self._settle_unknown(
                client, item, batch, {}, f"batch {batch.id}: unreadable result: {problem}", calls, report
            )
            return True
        self._record_results(client, item, batch, rows, calls, report)
        return True

    def _deferred_or_unknown(
        self,
        client: TuimprentaClient,
        item: BatchItem,
        batch: Batch | None,
        exc: SyncError,
        calls: Deadline,
        report: RunReport,
    ) -> bool:
        """A poll or download that failed: a retryable error is tried later; a permanent one leaves every
        invoice's outcome unknown (never "not issued"), so each is looked up."""
        if exc.retryable:
            logger.warning("batch poll failed; polled again later", extra={"reason": exc.code, "batch": item.key})
            self._poll_later(item)
            return not exc.retry_after
        where = f"batch {item.batch_id}" + (f" ({batch.status})" if batch else "")
        report.problems.append(f"{where}: {exc.message}"[:300])
        self._settle_unknown(client, item, batch, {}, f"{where}: {exc.message}", calls, report)
        return True

    def _poll_later(self, item: BatchItem) -> None:
        polls = item.polls + 1
        delay = min(self.settings.poll_max_seconds, self.settings.poll_base_seconds * 2 ** (polls - 1))
        self.batches.put(item.model_copy(update={"polls": polls, "next_poll_at": self._clock() + delay}))

    def _waiting(self, item: BatchItem) -> list[tuple[int, LedgerEntry]]:
        """The members (with their payload index) whose outcome this batch has still to give."""
        waiting: list[tuple[int, LedgerEntry]] = []
        for index, object_id in enumerate(item.members):
            entry = self.ledger.get(DESTINATION, object_id)
            if entry is None or entry.details.get("state") != BATCHED or entry.details.get("submission") != item.key:
                continue  # recorded already (a run that stopped half-way through these results)
            waiting.append((index, entry))
        return waiting

    def _record_results(
        self,
        client: TuimprentaClient,
        item: BatchItem,
        batch: Batch,
        rows: dict[int, ResultRow],
        calls: Deadline,
        report: RunReport,
    ) -> None:
        retry: list[str] = []
        unknown: dict[str, str] = {}
        for index, entry in self._waiting(item):
            row = rows.get(index)
            if row is None:
                unknown[entry.object_id] = f"batch {batch.id} ({batch.status}): no result row for index {index}"
            elif row.status == "issued" and not row.invoice_id:
                unknown[entry.object_id] = f"batch {batch.id}: row {index} issued without an invoice_id"
            elif row.status == "failed" and (row.error_code or "") in RETRYABLE_ROW_CODES:
                # tuimprenta itself says this one was not issued: it may be submitted again.
                retry.append(entry.object_id)
            elif row.status == "issued" and row.invoice_id:
                self._issued(entry, row.invoice_id, row.series, row.number, None, batch.id, report)
            else:
                code = row.error_code or "failed"
                message = row.error_message or "tuimprenta did not issue the invoice"
                self._fail(entry, code, message, batch.id, report)
        if retry:
            self._resubmit(item, retry, report, f"batch {batch.id} ({batch.status}) failed them with a retryable code")
        if unknown and not self._settle_unknown(client, item, batch, unknown, "", calls, report):
            return  # the lookup will decide on a later poll; the batch stays open until it has
        self.batches.put(item.model_copy(update={"status": BATCH_CLOSED, "outcome": batch.status}))
        logger.info(
            "batch results recorded",
            extra={"batch": batch.id, "status": batch.status, "invoices": len(item.members), "retried": len(retry)},
        )

    def _issued(
        self,
        entry: LedgerEntry,
        invoice_id: str,
        series: str | None,
        number: int | None,
        total_cents: int | None,
        batch_id: str | None,
        report: RunReport,
    ) -> None:
        details = {
            "state": ISSUED,
            "batch_id": batch_id or "",
            "series": series or "",
            "number": "" if number is None else str(number),
        }
        updated_at = entry.source_updated_at or datetime.now(UTC)
        changes: dict[str, Any] = {"details": details}
        if total_cents is not None:
            changes["remote_total_cents"] = total_cents
        self.ledger.save(entry.synced(invoice_id, updated_at, **changes))
        report.issued += 1

    def _settle_unknown(
        self,
        client: TuimprentaClient,
        item: BatchItem,
        batch: Batch | None,
        unknown: dict[str, str],
        why_all: str,
        calls: Deadline,
        report: RunReport,
    ) -> bool:
        """Invoices whose outcome a batch left unknown are looked up by our marker, never simply sent again.

        `unknown` maps object ids to why; empty with `why_all` means every member still waiting. Found → issued;
        shown absent by a listing read to its end → submitted again; undecided → looked up again later while
        the error may pass, else dead-lettered as "outcome unknown" with what was tried. True once the batch
        is settled (and closed), False while it waits for a later lookup.
        """
        waiting = {e.object_id: e for _, e in self._waiting(item)}
        if not unknown:
            unknown = dict.fromkeys(waiting, why_all)
        entries = {o: waiting[o] for o in unknown if o in waiting}
        if entries:
            created_from = self._created_from(item, entries.values())
            wanted = {o: _series(e) for o, e in entries.items()}
            listing = find_ours(client, wanted, created_from, calls)
            report.lookups += listing.calls
            verdicts = listing.verdicts()
            undecided = {o: v for o, v in verdicts.items() if isinstance(v, Undecided)}
            for object_id, verdict in verdicts.items():
                if isinstance(verdict, Found):
                    entry, invoice = entries[object_id], verdict.remote
                    total = _cents(invoice)
                    self._issued(entry, invoice.id, invoice.series, invoice.number, total, item.batch_id, report)
                    report.found += 1
            if any(v.retryable for v in undecided.values()) and item.lookups + 1 < self.settings.max_attempts:
                logger.warning("lookup undecided; tried again later", extra={"batch": item.key, "tried": listing.tried})
                self._poll_later(item.model_copy(update={"lookups": item.lookups + 1}))
                return False
            for object_id, verdict in undecided.items():
                tried = "; ".join([unknown[object_id], *verdict.tried])
                self._fail(entries[object_id], OUTCOME_UNKNOWN, tried, item.batch_id, report)
            absent = sorted(o for o, v in verdicts.items() if isinstance(v, Absent))
            if absent:
                self._resubmit(item, absent, report, f"{'; '.join(unknown[o] for o in absent)}; shown absent")
        outcome = batch.status if batch is not None else "lost"
        self.batches.put(item.model_copy(update={"status": BATCH_CLOSED, "outcome": outcome}))
        return True

    def _created_from(self, item: BatchItem, entries: Iterable[LedgerEntry]) -> date:
        """The day to list from: the first claim of these invoices, a day early (the filter's time zone is unsaid)."""
        first = min([datetime.fromtimestamp(item.created_at, UTC), *(e.intent_at for e in entries if e.intent_at)])
        return (first - timedelta(days=1)).date()

    def _fail(self, entry: LedgerEntry, code: str, message: str, batch_id: str | None, report: RunReport) -> None:
        """Report an invoice tuimprenta refused: dead-lettered with the reason first, then the ledger says so."""
        body = json.dumps(
            {
                "destination": DESTINATION,
                "object_id": entry.object_id,
                "event_id": entry.last_event_id,
                "event_type": entry.last_event_type,
                "batch_id": batch_id,
                "error_code": code,
                "error_message": message,
            }
        )
        attributes = {"event_id": entry.last_event_id or "", "event_type": entry.last_event_type or ""}
        self._dead_letters.send(
            body,
            attributes,
            Failure(code, message),
            group_id=entry.object_id,
            dedupe_id=f"{entry.object_id}-{code}",
            receive_count=int(entry.details.get("attempt", "1")),
        )
        details = {"state": FAILED, "batch_id": batch_id or ""}
        self.ledger.save(entry.failed(code, message, details=details))
        report.failed += 1
        logger.error("invoice not issued", extra={"object_id": entry.object_id, "reason": code})

    def _resubmit(self, item: BatchItem, members: Sequence[str], report: RunReport, why: str) -> None:
        """Invoices a batch left without an outcome go into a new batch item (a new attempt, a new key)."""
        attempt = item.attempt + 1
        entries = [e for m in members if (e := self.ledger.get(DESTINATION, m)) is not None]
        if attempt > self.settings.max_attempts:
            for entry in entries:
                self._fail(
                    entry, "batch_failed", f"{why}; gave up after {item.attempt} attempts", item.batch_id, report
                )
            return
        ordered = sorted(entries, key=lambda e: e.object_id)
        key = submission_key([(e.object_id, e.details["payload"]) for e in ordered], attempt)
        now = self._clock()
        retry_at = now + backoff(attempt, base=self.settings.poll_base_seconds, cap=self.settings.poll_max_seconds)
        self.batches.put(
            BatchItem(
                key=key,
                members=[e.object_id for e in ordered],
                attempt=attempt,
                created_at=now,
                next_poll_at=retry_at,
            )
        )
        for entry in ordered:
            details = {**entry.details, "submission": key, "attempt": str(attempt)}
            self.ledger.save(entry.model_copy(update={"details": details}))
        report.resubmitted += len(ordered)
        logger.warning("invoices submitted again", extra={"count": len(ordered), "reason": why[:300]})

    # -- cancels -----------------------------------------------------------------------------------

    def _send_cancels(self, client: TuimprentaClient, calls: Deadline, report: RunReport) -> None:
        for object_id in list(self.cancels.waiting()):
            entry = self.ledger.get(DESTINATION, object_id)
            state = entry.details.get("state") if entry else None
            if entry is None or entry.closed or state in {FAILED, DROPPED, CANCELED_STATE}:
                if entry is not None and not entry.closed:
                    self.ledger.save(entry.model_copy(update={"closed": True}))
                self.cancels.done(object_id)
                continue
            if state != ISSUED or not entry.remote_id:
                continue  # its batch is still open: the cancel waits for the outcome
            try:
                try:
                    client.cancel_invoice(
                        entry.remote_id, self.settings.cancel_reason, cancel_key(entry.remote_id), calls
                    )
                except IdempotencyConflict as conflict:
                    # 409: the invoice is canceled already, or its key is held by a request still in flight. The
                    # invoice decides; while it is not canceled the same key and body are sent again later.
                    if not self._canceled_meanwhile(client, entry, conflict, calls):
                        return
            except SyncError as exc:
                if exc.retryable:
                    logger.warning("cancel failed; tried again later", extra={"reason": exc.code})
                    return
                self._dead_letters.send(
                    json.dumps({"destination": DESTINATION, "object_id": object_id, "action": "cancel"}),
                    {},
                    Failure(exc.code or "cancel_refused", exc.message),
                    group_id=object_id,
                    dedupe_id=f"{object_id}-cancel",
                    receive_count=1,
                )
                self.cancels.done(object_id)
                continue
            details = {**entry.details, "state": CANCELED_STATE}
            self.ledger.save(entry.model_copy(update={"closed": True, "details": details}))
            self.cancels.done(object_id)
            report.canceled += 1

    def _canceled_meanwhile(
        self, client: TuimprentaClient, entry: LedgerEntry, conflict: IdempotencyConflict, calls: Deadline
    ) -> bool:
        """After a 409 on a cancel: True when the invoice is canceled; else the conflict is counted and, after
        MAX_CANCEL_CONFLICTS, raised (the caller dead-letters it with the platform's reason)."""
        assert entry.remote_id is not None
        if client.invoice(entry.remote_id, calls).status == CANCELED_STATUS:
            return True
        conflicts = int(entry.details.get("cancel_conflicts", "0")) + 1
        if conflicts >= MAX_CANCEL_CONFLICTS:
            raise conflict
        self.ledger.save(entry.model_copy(update={"details": {**entry.details, "cancel_conflicts": str(conflicts)}}))
        logger.warning("cancel answered 409; tried again later", extra={"reason": conflict.code})
        return False

    def _request_cancel(self, entry: LedgerEntry | None, drained: Drained, report: RunReport) -> None:
        object_id = drained.invoice.id
        state = entry.details.get("state") if entry else None
        if entry is not None and entry.closed:
            report.duplicates += 1
            return
        if entry is None or (state == BATCHED and self.batches.get(entry.details.get("submission", "")) is None):
            # Never submitted: it is dropped here and a later (or redelivered) create is dropped too.
            base = entry or LedgerEntry(destination=DESTINATION, object_id=object_id)
            dropped = base.model_copy(
                update={
                    "status": SyncStatus.SYNCED,
                    "closed": True,
                    "source_updated_at": drained.invoice.updated_at,
                    "last_event_id": drained.event.id,
                    "last_event_type": drained.event.type,
                    "intent_id": None,
                    "details": {"state": DROPPED},
                }
            )
            self.ledger.save(dropped)
            report.dropped += 1
            return
        self.cancels.put(object_id, drained.event.id)

    # -- draining and submitting -------------------------------------------------------------------

    def _receive(self, work: Deadline) -> list[MessageTypeDef]:
        messages: list[MessageTypeDef] = []
        quiet = min(20, math.ceil(self.settings.batch_window_seconds))
        while len(messages) < self.settings.max_batch_size and work.allows(quiet):
            got = self._sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=min(10, self.settings.max_batch_size - len(messages)),
                WaitTimeSeconds=quiet if messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
        return messages

    def _parse(self, message: MessageTypeDef) -> Drained | None:
        try:
            event = parse_body(message.get("Body", ""))
            invoice = parse_object(event, SalesInvoice, EVENT_TYPES)
        except PermanentSyncError as exc:
            self._dead_letter_message(message, Failure(exc.code or "malformed_message", exc.message))
            return None
        return Drained(message, event, invoice)

    def _dead_letter_message(self, message: MessageTypeDef, failure: Failure) -> None:
        attributes = {n: v.get("StringValue", "") for n, v in message.get("MessageAttributes", {}).items()}
        self._dead_letters.send(
            message.get("Body", ""),
            attributes,
            failure,
            group_id=None,
            dedupe_id=None,
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
        )
        self._delete([message])

    def _drain(self, client: TuimprentaClient, work: Deadline, calls: Deadline, report: RunReport) -> bool:
        """Receive up to one batch of sales invoices, claim them, submit them; False when the queue was empty."""
        messages = self._receive(work)
        if not messages:
            return False
        by_object: dict[str, list[Drained]] = {}
        for message in messages:
            drained = self._parse(message)
            if drained is not None:
                by_object.setdefault(drained.invoice.id, []).append(drained)
        settled: list[MessageTypeDef] = []
        claims: list[tuple[Drained, LedgerEntry | None, str]] = []
        for object_id, group in by_object.items():
            entry = self.ledger.get(DESTINATION, object_id)
            cancels = [d for d in group if d.event.type == CANCELED]
            if cancels:
                settled.extend(d.message for d in group)
                self._request_cancel(entry, cancels[-1], report)
                continue
            latest = max(group, key=lambda d: d.invoice.updated_at)
            if entry is not None and not entry.closed and _outcome_unknown(entry):
                # tuimprenta may hold an earlier version as a fiscal invoice: whatever comes for it (a newer
                # version, an operator's replay) is looked up again, and submitted only if shown absent.
                verdict = self._look_up_again(client, entry, latest, calls, report)
                if isinstance(verdict, Undecided) and verdict.retryable:
                    continue  # left on the queue: received and looked up again once the error has passed
                if isinstance(verdict, Undecided):
                    for drained in group:
                        why = "; ".join(["an earlier version's outcome is unknown", *verdict.tried])
                        self._dead_letter_message(drained.message, Failure(OUTCOME_UNKNOWN, why[:1000]))
                    continue
                if isinstance(verdict, Found):
                    settled.extend(d.message for d in group)
                    continue
            elif entry is not None and (entry.closed or not (self._claimable(entry) or _repaired(entry, latest))):
                settled.extend(d.message for d in group)
                report.duplicates += len(group)
                continue
            try:
                payload = payload_text(latest.invoice)
            except (ValueError, decimal.InvalidOperation) as exc:
                # One invoice that cannot be written as a payload goes to the DLQ with its reason; the
                # invoices received with it are claimed and submitted as usual.
                for drained in group:
                    self._dead_letter_message(drained.message, Failure("unmappable_invoice", str(exc)[:300]))
                report.problems.append(f"{object_id}: not submitted: {str(exc)[:300]}")
                continue
            settled.extend(d.message for d in group)
            claims.append((latest, entry, payload))
        if claims:
            claims.sort(key=lambda c: c[0].invoice.id)
            item = self._claim(claims)
            self._delete(settled)
            self._post(client, item, [payload for _, _, payload in claims], calls, report)
        else:
            self._delete(settled)
        return True

    def _look_up_again(
        self, client: TuimprentaClient, entry: LedgerEntry, drained: Drained, calls: Deadline, report: RunReport
    ) -> Lookup[Invoice]:
        """An invoice whose outcome was left unknown, looked up once more; found → recorded issued."""
        since = (entry.source_updated_at or datetime.fromtimestamp(self._clock(), UTC)) - timedelta(days=1)
        listing = find_ours(client, {entry.object_id: drained.invoice.series}, since.date(), calls)
        report.lookups += listing.calls
        verdict = listing.verdicts()[entry.object_id]
        if isinstance(verdict, Found):
            invoice = verdict.remote
            self._issued(entry, invoice.id, invoice.series, invoice.number, _cents(invoice), None, report)
            report.found += 1
        return verdict

    def _claimable(self, entry: LedgerEntry) -> bool:
        """A create for an entry is claimed again only if an earlier claim never became a batch item."""
        if entry.status != SyncStatus.PENDING or entry.details.get("state") != BATCHED:
            return False
        return self.batches.get(entry.details.get("submission", "")) is None

    def _claim(self, claims: Sequence[tuple[Drained, LedgerEntry | None, str]]) -> BatchItem:
        """Claim each invoice in the ledger, then write the set as a batch item (both before any delete)."""
        key = submission_key([(d.invoice.id, payload) for d, _, payload in claims], 1)
        for drained, entry, payload in claims:
            base = entry or LedgerEntry(destination=DESTINATION, object_id=drained.invoice.id)
            claimed = base.with_intent(drained.invoice.updated_at, drained.event.id, drained.event.type)
            details = {"state": BATCHED, "submission": key, "attempt": "1", "payload": payload}
            self.ledger.save(
                claimed.model_copy(update={"source_updated_at": drained.invoice.updated_at, "details": details})
            )
        now = self._clock()
        item = BatchItem(
            key=key, members=[d.invoice.id for d, _, _ in claims], attempt=1, created_at=now, next_poll_at=now
        )
        self.batches.put(item)
        return item

    def _delete(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            result = self._sqs.delete_message_batch(
                QueueUrl=self.settings.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            if result.get("Failed"):
                # A claimed message that comes back is recognised as a duplicate and deleted then.
                logger.warning("some messages were not deleted", extra={"failed": len(result["Failed"])})

    def _post_unsubmitted(self, client: TuimprentaClient, calls: Deadline, report: RunReport) -> None:
        """Batch items claimed but not (known to be) posted: a crash, a retryable error, a re-submission."""
        now = self._clock()
        for item in self.batches.open():
            if item.submitted or item.next_poll_at > now:
                continue
            payloads = []
            for object_id in item.members:
                entry = self.ledger.get(DESTINATION, object_id)
                if entry is None or "payload" not in entry.details:
                    raise RuntimeError(f"batch item {item.key}: {object_id} has no claimed payload")
                payloads.append(entry.details["payload"])
            self._post(client, item, payloads, calls, report)

    def _post(
        self, client: TuimprentaClient, item: BatchItem, payloads: Sequence[str], calls: Deadline, report: RunReport
    ) -> None:
        body = batch_body(payloads, self.settings.callback_url)
        try:
            batch = client.create_batch(body, item.key, calls)
        except SyncError as exc:
            conflict = isinstance(exc, IdempotencyConflict)
            if exc.retryable or (conflict and item.polls + 1 < self.settings.max_attempts):
                # A 409 on our own key: a create whose answer was lost may hold it, or one is still under way.
                # The same key and body again is safe (the platform answers the first batch); a refusal is not.
                delay = exc.retry_after or backoff(item.polls + 1, base=1.0, cap=self.settings.poll_max_seconds)
                logger.warning("batch not created; tried again later", extra={"reason": exc.code, "delay_s": delay})
                self.batches.put(
                    item.model_copy(update={"polls": item.polls + 1, "next_poll_at": self._clock() + delay})
                )
                return
            if conflict:
                # Still 409 after every try: whether its invoices were issued is unknown, so each is looked up.
                why = f"POST /batches answered 409 {item.polls + 1} times: {exc.message}"
                self._settle_unknown(client, item, None, {}, why, calls, report)
                return
            logger.error("tuimprenta refused the batch", extra={"reason": exc.code, "detail": exc.message[:300]})
            for object_id in item.members:
                entry = self.ledger.get(DESTINATION, object_id)
                if entry is not None and entry.details.get("state") == BATCHED:
                    self._fail(entry, exc.code or f"http_{getattr(exc, 'status', '')}", exc.message, None, report)
            self.batches.put(item.model_copy(update={"status": BATCH_CLOSED, "outcome": "refused"}))
            return
        first_poll = self._clock() + self.settings.poll_base_seconds
        self.batches.put(item.model_copy(update={"batch_id": batch.id, "polls": 0, "next_poll_at": first_poll}))
        report.batches_submitted += 1
        report.invoices_submitted += len(item.members)
        logger.info("batch created", extra={"batch": batch.id, "invoices": len(item.members), "attempt": item.attempt})


def _outcome_unknown(entry: LedgerEntry) -> bool:
    """tuimprenta may hold this invoice and no lookup could tell: only an operator may send it again."""
    return entry.status == SyncStatus.FAILED and entry.error_code == OUTCOME_UNKNOWN


def _repaired(entry: LedgerEntry, drained: Drained) -> bool:
    """A rejected invoice was never issued: a newer version from the source (fixed there) may be submitted.

    The same version is never sent again, so a rejection is not retried blindly.
    """
    return (
        entry.status == SyncStatus.FAILED
        and entry.source_updated_at is not None
        and drained.invoice.updated_at > entry.source_updated_at
    )


def _series(entry: LedgerEntry) -> str:
    """The series an entry's claimed payload was submitted under (the listing's filter)."""
    try:
        payload = json.loads(entry.details.get("payload", "{}"))
    except ValueError:
        return ""
    series = payload.get("series") if isinstance(payload, dict) else None
    return series if isinstance(series, str) else ""


def _cents(invoice: Invoice) -> int | None:
    """The invoice's total as tuimprenta computed it, in cents (None when it did not say)."""
    if invoice.totals is None or invoice.totals.total is None:
        return None
    return decimal_to_cents(invoice.totals.total)
