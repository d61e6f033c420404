"""The sync rules: a BuildNexion purchase order event becomes the right purchase order in FacturaDirecta.

- The latest purchase order and its provider are read from BuildNexion (events only say "look again").
- The provider is found by tax code and remembered (`ensure_reference`), created with its name exactly
  when missing, once, even when two workers meet it together.
- Stale events (older `updated_at` than the ledger holds) and duplicates change nothing.
- A create is preceded by an intent in the ledger; an unfinished intent (a crash or timeout after the
  call) is resolved by looking the order up by its tag `bn:<id>`, then by its series and number, before
  creating anything; a lookup that cannot decide dead-letters the order as "outcome unknown".
- An update sends every line (FacturaDirecta regenerates lines whole) and no custom attributes, so the
  ones already there stay as they are; a canceled order gets `documentStatus` canceled.
- After each write FacturaDirecta's net / tax / gross are compared with BuildNexion's (computed from the
  lines); a difference is logged, counted and kept in the ledger entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge import taxid
from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import PurchaseOrder, WebhookEvent
from invoice_bridge.errors import PermanentSyncError, PlatformError, RetryLater, SyncError
from invoice_bridge.facturadirecta.client import (
    FacturaDirectaXmlClient,
    PurchaseOrderApi,
    default_base_url,
)
from invoice_bridge.facturadirecta.mapping import (
    document_status,
    expected_totals,
    is_canceled,
    order_tag,
    remote_totals,
    split_number,
    to_document,
    to_provider,
)
from invoice_bridge.facturadirecta.models import PurchaseOrderRecord
from invoice_bridge.facturadirecta.settings import FacturaDirectaSettings
from invoice_bridge.http import DEFAULT_TIMEOUT, Deadline
from invoice_bridge.ledger import Leases, Ledger, LedgerEntry, References, StateTable, ensure_reference
from invoice_bridge.observability import logger
from invoice_bridge.secrets import BuildNexionSecret, FacturaDirectaSecret, SecretReader
from invoice_bridge.sync.contract import Absent, Found, Lookup, Undecided
from invoice_bridge.sync.engine import SyncEngine
from invoice_bridge.worker import BatchEdge, DeadLetters, parse_event

if TYPE_CHECKING:
    from pydantic import SecretStr

DESTINATION = "facturadirecta"
# An intent younger than this may belong to a create still under way elsewhere (the function's timeout,
# 60 s, plus a margin); a crashed attempt's message comes back only after the visibility timeout (360 s).
INTENT_GUARD_SECONDS = 90.0
ABANDONED_INTENT = "abandoned_intent"
TAG_PREFIX = "bn:"
PROVIDER_KIND = "provider"
OBJECT_KIND = "purchase_order"


@dataclass(frozen=True)
class Outcome:
    """What one event did: `created`, `updated`, `stale`, `current`; the remote id when there is one."""

    action: str
    remote_id: str | None = None
    totals_match: bool | None = None


def look_up(
    api: PurchaseOrderApi, order: PurchaseOrder, provider_id: str, deadline: Deadline
) -> Lookup[PurchaseOrderRecord]:
    """FacturaDirecta's answer to "do you hold this order?": by its tag, else by its series and number.

    The reference documents the `tag` filter but not how a tag is written, so a miss by tag proves nothing
    alone; the provider's orders with our series and number (documented filters) then decide. One carrying
    another order's `bn:` tag is not ours (FacturaDirecta allows a number twice: ours is absent); none at all
    shows the order absent; several untagged ones, or an order with no number to search by, decide nothing.
    """
    tag = order_tag(order.id)
    tried = [f"GET /api/purchaseOrders.xml?tag={tag}"]
    try:
        found = api.find_purchase_order_by_tag(tag, deadline)
        if found is not None:
            return Found(found.id, found, f"tag {tag}")
        serial, number = split_number(order.number)
        if number is None:
            return Undecided((*tried, f"number {order.number!r} has no digits to search by"))
        tried.append(f"provider {provider_id} documentSerial {serial!r} documentNumber {number}")
        candidates = api.find_purchase_orders_by_number(serial, number, provider_id, deadline)
    except PlatformError as exc:
        return Undecided((*tried, exc.message), retryable=exc.retryable, retry_after=exc.retry_after)
    tagged = [o for o in candidates if tag in o.tags]
    if tagged:
        ours = min(tagged, key=lambda o: (not o.id.isdigit(), int(o.id) if o.id.isdigit() else 0, o.id))
        return Found(ours.id, ours, f"tag {tag}")
    untagged = [o for o in candidates if not any(t.startswith(TAG_PREFIX) for t in o.tags)]
    if len(untagged) == 1:
        return Found(untagged[0].id, untagged[0], f"the provider's only order with series {serial!r} number {number}")
    if untagged:
        ids = ", ".join(o.id for o in untagged)
        return Undecided((*tried, f"orders {ids} all have series {serial!r} number {number}: which is ours?"))
    return Absent(tuple(tried))


class FacturaDirectaExporter:
    """Applies purchase order events to FacturaDirecta exactly once and in order."""

    def __init__(
        self,
        *,
        table: StateTable,
        buildnexion: Callable[[], BuildNexionClient],
        api: Callable[[], PurchaseOrderApi],
        clock: Callable[[], float] = time.time,
        intent_guard_seconds: float = INTENT_GUARD_SECONDS,
    ) -> None:
        self._clock = clock
        self._intent_guard = intent_guard_seconds
        self.ledger = Ledger(table)
        self.engine = SyncEngine(self.ledger, DESTINATION)
        self.references = References(table)
        self.leases = Leases(table)
        self._buildnexion = buildnexion
        self._api = api

    # -- wiring --------------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: FacturaDirectaSettings, clients: AwsClients | None = None) -> ExporterFunction:
        """The exporter and its SQS edge, wired to real AWS clients (built at the first invocation)."""
        clients = clients or AwsClients(boto3.session.Session())
        sqs = clients.sqs()
        secrets = SecretReader(SecretsProvider(boto3_client=clients.secretsmanager()), settings.secrets_max_age_seconds)
        credentials = _Credentials(settings, secrets)
        exporter = cls(
            table=StateTable(clients.dynamodb(), settings.state_table_name),
            buildnexion=credentials.buildnexion,
            api=credentials.facturadirecta,
        )
        edge = BatchEdge(
            sqs=sqs,
            queue_url=settings.queue_url,
            dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, DESTINATION),
            destination=DESTINATION,
            fifo=settings.queue_url.endswith(".fifo"),
            max_receive_count=settings.max_receive_count,
        )
        return ExporterFunction(exporter, edge)

    # -- the rules -----------------------------------------------------------------------------------

    def handle_record(self, record: SQSRecord, deadline: Deadline) -> None:
        """One SQS record: parse it, sync it."""
        self.sync(parse_event(record), deadline)

    def sync(self, event: WebhookEvent, deadline: Deadline) -> Outcome:
        """Bring FacturaDirecta to BuildNexion's latest state of the event's purchase order."""
        if event.object_kind() != OBJECT_KIND or event.data.object.object != OBJECT_KIND:
            raise PermanentSyncError(f"{event.type} is not a purchase order event", code="unexpected_event")
        order_id = event.data.object.id
        logger.append_keys(purchase_order_id=order_id, event_id=event.id)
        try:
            entry = self.ledger.get_or_new(DESTINATION, order_id)
            # A canceled order stays updatable (FacturaDirecta keeps it, and BuildNexion may reopen it).
            skipped = SyncEngine.skip_reason(entry, event.data.object.updated_at, closing_is_final=False)
            if skipped:
                return self._skip(skipped, entry)
            order = self._buildnexion().latest(PurchaseOrder, event, deadline)
            if SyncEngine.skip_reason(entry, order.updated_at, closing_is_final=False):
                return self._skip("current", entry)  # BuildNexion holds nothing newer than what was applied
            return self._apply(order, entry, event, deadline)
        finally:
            logger.remove_keys(["purchase_order_id", "event_id"])

    def _skip(self, action: str, entry: LedgerEntry) -> Outcome:
        logger.info("event skipped", extra={"action": action, "remote_id": entry.remote_id})
        return Outcome(action, entry.remote_id)

    def _apply(self, order: PurchaseOrder, entry: LedgerEntry, event: WebhookEvent, deadline: Deadline) -> Outcome:
        api = self._api()
        provider_id = self._provider_id(order, api, deadline)
        remote_id = entry.remote_id
        if remote_id is None and entry.intent_id is not None:
            self._check_intent_free(entry)
            # An earlier attempt wrote its intent and may have created the order before failing.
            found = self.engine.recover(entry, lambda: look_up(api, order, provider_id, deadline))
            logger.info("unfinished intent resolved", extra={"found": found is not None})
            remote_id = found.remote_id if found else None
            if remote_id is not None:
                # Ours, kept at once: should the update below be refused, the ledger still knows the order,
                # and the next version updates it instead of creating a second one.
                entry = self.ledger.save(entry.model_copy(update={"remote_id": remote_id}))
        creating = remote_id is None
        status = document_status(order, creating=creating, was_closed=entry.closed)
        try:
            document = to_document(order, provider_id, document_status=status)
        except PermanentSyncError as exc:
            self._record_failure(entry, exc.code, exc.message)
            raise
        try:
            if remote_id is None:
                # A fresh intent, written conditionally: of two workers resuming one intent, one goes on.
                entry = self.engine.begin(entry, order.updated_at, event.id, event.type)
                record = api.create_purchase_order(document, deadline)
            else:
                record = api.update_purchase_order(remote_id, document, deadline)
        except PlatformError as exc:
            if not exc.retryable:
                self._record_failure(entry, exc.code, exc.message)
            elif remote_id is None:
                self._abandon_intent(entry)
            raise
        return self._record_sync(order, entry, event, record, provider_id, "created" if creating else "updated")

    def _check_intent_free(self, entry: LedgerEntry) -> None:
        """RetryLater while an unfinished intent may still be another worker's create in flight."""
        if entry.intent_at is None or entry.details.get(ABANDONED_INTENT) == entry.intent_id:
            return
        age = self._clock() - entry.intent_at.timestamp()
        if age < self._intent_guard:
            raise RetryLater(
                f"a create of {entry.object_id} started {age:.0f} s ago may still be under way",
                retry_after=self._intent_guard - age,
            )

    def _abandon_intent(self, entry: LedgerEntry) -> None:
        """Our create failed with an unknown effect: the next attempt may resolve the intent at once."""
        try:
            self.ledger.save(
                entry.model_copy(update={"details": {**entry.details, ABANDONED_INTENT: entry.intent_id or ""}})
            )
        except SyncError:
            logger.warning("could not mark the intent abandoned (changed meanwhile)")

    def _provider_id(self, order: PurchaseOrder, api: PurchaseOrderApi, deadline: Deadline) -> str:
        provider = self._buildnexion().provider(order.provider_id, deadline)
        if not taxid.normalise(provider.nif):
            raise PermanentSyncError(f"provider {provider.id} has no usable tax code", code="invalid_source")

        def find() -> str | None:
            found = api.find_provider(provider.nif, deadline)
            return found.id if found else None

        def create() -> str:
            created = api.create_provider(to_provider(provider), deadline)
            logger.info("provider created", extra={"provider_id": created.id})
            return created.id

        remote_id, _ = ensure_reference(
            self.references,
            self.leases,
            destination=DESTINATION,
            kind=PROVIDER_KIND,
            key=taxid.normalise(provider.nif),
            find=find,
            create=create,
        )
        return remote_id

    def _record_sync(
        self,
        order: PurchaseOrder,
        entry: LedgerEntry,
        event: WebhookEvent,
        record: PurchaseOrderRecord,
        provider_id: str,
        action: str,
    ) -> Outcome:
        expected = expected_totals(order)
        remote = remote_totals(record)
        match = self.engine.totals_match(record.id, expected.figures(), remote.figures())
        self.ledger.save(
            entry.synced(
                record.id,
                order.updated_at,
                closed=is_canceled(order),
                last_event_id=event.id,
                last_event_type=event.type,
                expected_total_cents=expected.gross_cents,
                remote_total_cents=remote.gross_cents,
                details={
                    **expected.as_details("expected"),
                    **remote.as_details("remote"),
                    "totals_match": str(match).lower(),
                    "provider_id": provider_id,
                    "document_status": record.document_status or "",
                },
            )
        )
        logger.info("purchase order synced", extra={"action": action, "remote_id": record.id, "totals_match": match})
        return Outcome(action, record.id, match)

    def _record_failure(self, entry: LedgerEntry, code: str | None, message: str) -> None:
        self.engine.fail(entry, code, message)


class _Credentials:
    """Clients built from the secrets, rebuilt when a secret's value changes (a rotation)."""

    def __init__(self, settings: FacturaDirectaSettings, secrets: SecretReader) -> None:
        self._settings = settings
        self._secrets = secrets
        self._buildnexion: tuple[str, BuildNexionClient] | None = None
        self._facturadirecta: tuple[str, FacturaDirectaXmlClient] | None = None

    def _facturadirecta_secret(self) -> FacturaDirectaSecret:
        return self._secrets.read(self._settings.facturadirecta_secret_id, FacturaDirectaSecret, "facturadirecta")

    def _token(self) -> SecretStr:
        return self._facturadirecta_secret().api_token

    def buildnexion(self) -> BuildNexionClient:
        """BuildNexion's client with the current API key."""
        secret = self._secrets.read(self._settings.buildnexion_secret_id, BuildNexionSecret, "buildnexion")
        key = secret.api_key.get_secret_value()
        if self._buildnexion is None or self._buildnexion[0] != key:
            self._buildnexion = (key, BuildNexionClient(self._settings.buildnexion_api_url, secret.api_key))
        return self._buildnexion[1]

    def facturadirecta(self) -> FacturaDirectaXmlClient:
        """FacturaDirecta's XML client on the configured URL, else the account's."""
        account = self._facturadirecta_secret().account
        if self._facturadirecta is None or self._facturadirecta[0] != account:
            url = self._settings.facturadirecta_api_url or default_base_url(account)
            timeout = (DEFAULT_TIMEOUT[0], self._settings.facturadirecta_read_timeout_seconds)
            self._facturadirecta = (account, FacturaDirectaXmlClient(url, self._token, timeout=timeout))
        return self._facturadirecta[1]


@dataclass(frozen=True)
class ExporterFunction:
    """What the handler calls: the exporter behind its SQS edge."""

    exporter: FacturaDirectaExporter
    edge: BatchEdge

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """One SQS batch: each record synced, the partial batch response returned."""
        return self.edge.handle(event, context, self.exporter.handle_record)
