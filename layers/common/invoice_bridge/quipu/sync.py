"""The sync rules: a BuildNexion supplier invoice becomes one Quipu expense invoice, exactly once.

- the invoice is read from BuildNexion (its latest state), stale events are skipped (ledger `source_updated_at`);
- the supplier contact is found by tax id or created, once, whatever the races (`ensure_reference`);
- before a create the intent is written to the ledger; an unfinished intent (a crash after Quipu's 201) and
  a 422 on the number both lead to the supplier's invoice with that number in that fiscal year, adopted and
  brought up to date;
- an update PATCHes the same invoice with the reference's item semantics; nothing is sent when nothing changed;
- a void becomes a full credit note (`amended_invoice`) or a delete, by setting, never both;
- after every write, Quipu's computed total is compared with BuildNexion's `total_amount`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import Invoice, WebhookEvent
from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, Ledger, LedgerEntry, References, SyncStatus, ensure_reference
from invoice_bridge.observability import count, logger
from invoice_bridge.quipu.client import DUPLICATE_NUMBER, QuipuClient, RemoteInvoice, normalize_tax_id
from invoice_bridge.quipu.mapping import (
    ExpenseInvoice,
    contact_attributes,
    create_request,
    credit_note_request,
    expense_invoice,
    fingerprint,
    to_cents,
    update_request,
)
from invoice_bridge.quipu.settings import VoidMode
from invoice_bridge.sync.contract import Absent, Found, Lookup, NotOurs, Taken, Undecided
from invoice_bridge.sync.engine import SyncEngine

if TYPE_CHECKING:
    from datetime import datetime

DESTINATION = "quipu"
# The dead-letter code of an invoice whose number another Quipu invoice of the supplier holds.
NUMBER_TAKEN = "number_taken_by_another_invoice"
# Answers after which an upload is known not to have happened (anything else, or no answer, may have).
KNOWN_NOT_DONE = frozenset({400, 401, 403, 404, 413, 415, 422, 429})
# The engine's skip reasons as Quipu's logs and metrics have always named them.
SKIP_REASONS = {"closed": "already voided in Quipu", "stale": "stale event", "current": "already applied"}
VOID_STATUSES = frozenset({"void", "voided"})


@dataclass(frozen=True)
class Outcome:
    """What one event did (for logs and tests)."""

    action: str  # created, adopted, updated, unchanged, credited, deleted, skipped
    remote_id: str | None = None
    reason: str | None = None


def _ids(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part]


def look_up(quipu: QuipuClient, contact_id: str, desired: ExpenseInvoice, deadline: Deadline) -> Lookup[RemoteInvoice]:
    """Quipu's answer to "do you hold this invoice?": the supplier's invoice with its number and year (Quipu
    keeps that unique), ours only if it carries our marker tag; another one there holds our number."""
    tried = f"GET /invoices contact {contact_id} number {desired.number} year {desired.fiscal_year}"
    try:
        found = quipu.find_expense_invoice(contact_id, desired.number, desired.fiscal_year, deadline)
    except PlatformError as exc:
        return Undecided((f"{tried}: {exc.message}",), retryable=exc.retryable, retry_after=exc.retry_after)
    if found is None:
        return Absent((tried,))
    if desired.marker in found.tags:
        return Found(found.id, found, f"tag {desired.marker}")
    return Taken(
        NUMBER_TAKEN,
        f"Quipu invoice {found.id} of this supplier already has number {desired.number} in "
        f"{desired.fiscal_year} and is not this one (no tag {desired.marker}): not adopted",
    )


class QuipuSync:
    """Applies BuildNexion invoice events to Quipu through the ledger."""

    def __init__(
        self,
        *,
        quipu: QuipuClient,
        buildnexion: BuildNexionClient,
        ledger: Ledger,
        references: References,
        leases: Leases,
        void_mode: VoidMode = VoidMode.CREDIT_NOTE,
        attach_pdf: bool = False,
    ) -> None:
        self.quipu = quipu
        self.buildnexion = buildnexion
        self.ledger = ledger
        self.references = references
        self.leases = leases
        self.void_mode = void_mode
        self.attach_pdf = attach_pdf
        self.engine = SyncEngine(ledger, DESTINATION)

    # -- the event -----------------------------------------------------------------------------------

    def apply(self, event: WebhookEvent, deadline: Deadline) -> Outcome:
        """Bring Quipu to the invoice's latest state for one event."""
        if event.object_kind() != "invoice":
            raise PermanentSyncError(f"{event.type} is not a supplier invoice event", code="unexpected_event")
        object_id = event.data.object.id
        entry = self.ledger.get_or_new(DESTINATION, object_id)
        event_voided = str(getattr(event.data.object, "status", "")).lower() in VOID_STATUSES
        pdf_due = self._pdf_due(entry)
        skipped = self._skip_reason(entry, event.data.object.updated_at, event_voided or pdf_due)
        if skipped:
            return self._skipped(object_id, skipped, entry)
        invoice = self._latest(event, deadline)
        voided = invoice.status.lower() in VOID_STATUSES
        skipped = self._skip_reason(entry, invoice.updated_at, voided or pdf_due)
        if skipped:
            return self._skipped(object_id, skipped, entry)
        if voided and self.void_mode is VoidMode.DELETE and entry.remote_id is None and entry.intent_id is None:
            # Never reached Quipu: there is nothing to delete, and nothing should be created.
            self.ledger.save(self._closed(entry, invoice, event, {"void": "nothing_to_delete"}))
            return Outcome("deleted", None, "never created")
        desired = expense_invoice(invoice)
        contact_id = self._contact(invoice, deadline)
        entry, outcome = self._ensure_invoice(entry, invoice, desired, contact_id, event, deadline)
        if self._pdf_due(entry):
            entry = self._attach(entry, invoice, deadline)
        if voided:
            return self._void(entry, invoice, event, deadline)
        return outcome

    def _pdf_due(self, entry: LedgerEntry) -> bool:
        """Whether the invoice is in Quipu and its PDF still to be attached (or its upload's outcome to be told)."""
        return (
            self.attach_pdf
            and entry.remote_id is not None
            and not entry.closed
            and not ({"attachment_id", "attachment"} & entry.details.keys())
        )

    def _latest(self, event: WebhookEvent, deadline: Deadline) -> Invoice:
        """BuildNexion's latest state of the invoice; the event's own copy when BuildNexion no longer serves it."""
        return self.buildnexion.latest(Invoice, event, deadline)

    @staticmethod
    def _skip_reason(entry: LedgerEntry, updated_at: datetime, unfinished: bool) -> str | None:
        # A void is applied only once the entry is closed: the invoice may be written with the voided
        # version's timestamp and its credit note (or delete) fail; the retry must still void it.
        reason = SyncEngine.skip_reason(entry, updated_at, unfinished=unfinished)
        return None if reason is None else SKIP_REASONS[reason]

    @staticmethod
    def _skipped(object_id: str, reason: str, entry: LedgerEntry) -> Outcome:
        logger.info("event skipped", extra={"invoice_id": object_id, "reason": reason})
        return Outcome("skipped", entry.remote_id, reason)

    # -- the supplier --------------------------------------------------------------------------------

    def _contact(self, invoice: Invoice, deadline: Deadline) -> str:
        provider = self.buildnexion.provider(invoice.provider_id, deadline)
        key = normalize_tax_id(provider.nif)
        if not key:
            # The contact reference is keyed by tax id: a blank one would make every such supplier one contact.
            raise PermanentSyncError(f"provider {provider.id} has no usable tax id", code="invalid_source")
        contact_id, created = ensure_reference(
            self.references,
            self.leases,
            destination=DESTINATION,
            kind="contact",
            key=key,
            find=lambda: self.quipu.find_contact(provider.nif, deadline),
            create=lambda: self.quipu.create_contact(contact_attributes(provider), deadline),
        )
        if created:
            logger.info("quipu contact created", extra={"provider_id": provider.id, "contact_id": contact_id})
        return contact_id

    # -- the invoice ---------------------------------------------------------------------------------

    def _ensure_invoice(
        self,
        entry: LedgerEntry,
        invoice: Invoice,
        desired: ExpenseInvoice,
        contact_id: str,
        event: WebhookEvent,
        deadline: Deadline,
    ) -> tuple[LedgerEntry, Outcome]:
        if entry.remote_id is not None:
            return self._update(entry, invoice, desired, contact_id, event, deadline)
        adopted: RemoteInvoice | None = None
        if entry.intent_id is not None:
            # A create may have reached Quipu before the worker stopped: look before creating again.
            adopted = self._ours(entry, desired, contact_id, deadline)
        if adopted is None:
            entry = self.engine.begin(entry, invoice.updated_at, event.id, event.type)
            try:
                created = self.quipu.create_invoice(create_request(desired, contact_id), deadline)
            except PlatformError as exc:
                if exc.status == 422 and exc.code == DUPLICATE_NUMBER:
                    adopted = self._ours(entry, desired, contact_id, deadline)
                if adopted is None:
                    self._fail_if_permanent(entry, exc)
                    raise
            else:
                entry = self._record(entry, created, invoice, desired, contact_id, event)
                logger.info("quipu invoice created", extra={"invoice_id": invoice.id, "quipu_id": created.id})
                return entry, Outcome("created", created.id)
        assert adopted is not None
        logger.info("quipu invoice adopted", extra={"invoice_id": invoice.id, "quipu_id": adopted.id})
        # Whatever it holds (an older version, another upload), it now takes this invoice's latest state.
        updated = self.quipu.update_invoice(
            adopted.id, update_request(desired, adopted.id, contact_id, [i.id for i in adopted.items]), deadline
        )
        entry = self._record(entry, updated, invoice, desired, contact_id, event)
        return entry, Outcome("adopted", updated.id)

    def _ours(
        self, entry: LedgerEntry, desired: ExpenseInvoice, contact_id: str, deadline: Deadline
    ) -> RemoteInvoice | None:
        """The engine's recovery through Quipu's lookup: our invoice (adopted), None (absent), or an error."""
        try:
            found = self.engine.recover(entry, lambda: look_up(self.quipu, contact_id, desired, deadline))
        except NotOurs:
            count("QuipuRejected", {"code": NUMBER_TAKEN})
            raise
        return None if found is None else found.remote

    def _update(
        self,
        entry: LedgerEntry,
        invoice: Invoice,
        desired: ExpenseInvoice,
        contact_id: str,
        event: WebhookEvent,
        deadline: Deadline,
    ) -> tuple[LedgerEntry, Outcome]:
        remote_id = entry.remote_id
        assert remote_id is not None
        if entry.details.get("fingerprint") == fingerprint(create_request(desired, contact_id)):
            # Only BuildNexion's version moved (a status change, a re-send): Quipu already holds this content.
            saved = self.ledger.save(
                entry.synced(remote_id, invoice.updated_at, last_event_id=event.id, last_event_type=event.type)
            )
            return saved, Outcome("unchanged", remote_id)
        try:
            updated = self.quipu.update_invoice(
                remote_id,
                update_request(desired, remote_id, contact_id, _ids(entry.details.get("item_ids"))),
                deadline,
            )
        except PlatformError as exc:
            self._fail_if_permanent(entry, exc)
            raise
        logger.info("quipu invoice updated", extra={"invoice_id": invoice.id, "quipu_id": remote_id})
        return self._record(entry, updated, invoice, desired, contact_id, event), Outcome("updated", remote_id)

    def _record(
        self,
        entry: LedgerEntry,
        remote: RemoteInvoice,
        invoice: Invoice,
        desired: ExpenseInvoice,
        contact_id: str,
        event: WebhookEvent,
    ) -> LedgerEntry:
        """Save the synced state, with Quipu's total (from the write's own answer) against BuildNexion's."""
        remote_total = self._check_total(invoice, remote, invoice.total_amount, "invoice")
        details = {
            **entry.details,
            "fingerprint": fingerprint(create_request(desired, contact_id)),
            "contact_id": contact_id,
            "item_ids": ",".join(item.id for item in remote.items),
        }
        return self.ledger.save(
            entry.synced(
                remote.id,
                invoice.updated_at,
                last_event_id=event.id,
                last_event_type=event.type,
                expected_total_cents=invoice.total_amount,
                remote_total_cents=remote_total,
                details=details,
            )
        )

    def _check_total(self, invoice: Invoice, remote: RemoteInvoice, expected: int, document: str) -> int | None:
        remote_total = None if remote.total_amount is None else to_cents(remote.total_amount)
        self.engine.totals_match(
            remote.id,
            {"total_cents": expected},
            None if remote_total is None else {"total_cents": remote_total},
            invoice_id=invoice.id,
            document=document,
        )
        return remote_total

    def _fail_if_permanent(self, entry: LedgerEntry, exc: PlatformError) -> None:
        if exc.retryable:
            return
        count("QuipuRejected", {"code": exc.code or str(exc.status)})
        self.ledger.save(entry.failed(exc.code or str(exc.status), exc.message))

    # -- the PDF -------------------------------------------------------------------------------------

    def _attach(self, entry: LedgerEntry, invoice: Invoice, deadline: Deadline) -> LedgerEntry:
        """Attach the PDF once: an intent is written before the upload, and an upload whose outcome is unknown
        is never sent again.

        Quipu's reference documents no listing of an invoice's attachments (only POST, GET and DELETE by id),
        so an attachment cannot be shown absent after a timeout: it is reported as unknown, not attached twice.
        """
        remote_id = entry.remote_id
        assert remote_id is not None
        if entry.details.get("attachment_intent"):
            logger.warning(
                "pdf attachment outcome unknown; not attached again",
                extra={"invoice_id": invoice.id, "quipu_id": remote_id},
            )
            count("QuipuPdfOutcomeUnknown")
            details = {k: v for k, v in entry.details.items() if k != "attachment_intent"}
            return self.ledger.save(entry.model_copy(update={"details": {**details, "attachment": "unknown"}}))
        content = self.buildnexion.invoice_pdf(invoice.id, deadline)
        filename = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in invoice.invoice_number) + ".pdf"
        entry = self.ledger.save(
            entry.model_copy(update={"details": {**entry.details, "attachment_intent": uuid.uuid4().hex}})
        )
        try:
            attachment_id = self.quipu.attach(remote_id, filename, content, deadline)
        except PlatformError as exc:
            if exc.status in KNOWN_NOT_DONE:
                # Quipu answered without taking the file (rate limit, credentials): the upload may be sent again.
                details = {k: v for k, v in entry.details.items() if k != "attachment_intent"}
                self.ledger.save(entry.model_copy(update={"details": details}))
            raise
        count("QuipuPdfAttached")
        details = {k: v for k, v in entry.details.items() if k != "attachment_intent"}
        return self.ledger.save(entry.model_copy(update={"details": {**details, "attachment_id": attachment_id}}))

    # -- the void ------------------------------------------------------------------------------------

    def _void(self, entry: LedgerEntry, invoice: Invoice, event: WebhookEvent, deadline: Deadline) -> Outcome:
        remote_id = entry.remote_id
        assert remote_id is not None
        if self.void_mode is VoidMode.DELETE:
            self.quipu.delete_invoice(remote_id, deadline)
            self.ledger.save(self._closed(entry, invoice, event, {"void": "deleted"}))
            logger.info("quipu invoice deleted", extra={"invoice_id": invoice.id, "quipu_id": remote_id})
            return Outcome("deleted", remote_id)
        note: RemoteInvoice | None = None
        if entry.details.get("credit_note_intent"):
            found = self.engine.recover(entry, lambda: self._credit_note_lookup(remote_id, deadline))
            note = found.remote if found else None
        if note is None:
            entry = self.ledger.save(
                entry.model_copy(update={"details": {**entry.details, "credit_note_intent": uuid.uuid4().hex}})
            )
            try:
                note = self.quipu.create_invoice(credit_note_request(remote_id), deadline)
            except PlatformError as exc:
                if exc.retryable or exc.status != 422:
                    raise
                # A 422 may be Quipu refusing a second credit note of an invoice already fully amended (the
                # first one's answer lost): only the lookup tells that from a real refusal.
                found = self.engine.recover(entry, lambda: self._credit_note_lookup(remote_id, deadline))
                if found is None:
                    self._fail_if_permanent(entry, exc)
                    raise
                note = found.remote
        note_total = self._check_total(invoice, note, -invoice.total_amount, "credit_note")
        details = {"void": "credit_note", "credit_note_id": note.id}
        if note_total is not None:
            details["credit_note_total_cents"] = str(note_total)
        self.ledger.save(self._closed(entry, invoice, event, details))
        logger.info("quipu credit note created", extra={"invoice_id": invoice.id, "quipu_id": note.id})
        return Outcome("credited", note.id)

    def _credit_note_lookup(self, remote_id: str, deadline: Deadline) -> Lookup[RemoteInvoice]:
        """Quipu's answer to "does our invoice have its credit note?": the invoice's `amending_invoices`.

        The invoice is ours (found by its tag), so a credit note amending it is ours too. An invoice that cannot
        be read (a 404, an error) decides nothing: a credit note is never created on that evidence.
        """
        tried = [f"GET /invoices/{remote_id}"]
        try:
            original = self.quipu.get_invoice(remote_id, deadline)
            if original is None:
                return Undecided((*tried, "answered 404: its credit notes cannot be read"), retryable=True)
            if not original.amending_invoice_ids:
                return Absent(tuple(tried))
            note_id = original.amending_invoice_ids[0]
            tried.append(f"GET /invoices/{note_id}")
            note = self.quipu.get_invoice(note_id, deadline)
        except PlatformError as exc:
            return Undecided((*tried, exc.message), retryable=exc.retryable, retry_after=exc.retry_after)
        if note is None:
            return Undecided((*tried, "answered 404"), retryable=True)
        return Found(note.id, note, f"amends invoice {remote_id}")

    @staticmethod
    def _closed(entry: LedgerEntry, invoice: Invoice, event: WebhookEvent, details: dict[str, Any]) -> LedgerEntry:
        merged = {k: v for k, v in entry.details.items() if k != "credit_note_intent"}
        return entry.model_copy(
            update={
                "status": SyncStatus.SYNCED,
                "closed": True,
                "source_updated_at": invoice.updated_at,
                "intent_id": None,
                "intent_at": None,
                "last_event_id": event.id,
                "last_event_type": event.type,
                "details": {**merged, **{k: str(v) for k, v in details.items()}},
            }
        )
