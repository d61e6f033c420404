"""The SyncEngine: the lifecycle rules every destination shares, over the one ledger.

A worker asks it whether an event is stale or already applied, records an intent before every create,
recovers after an unknown outcome through its destination's lookup (`contract.resolve`: adopt only with
proof, create only when shown absent, otherwise fail with a reason) and records failures.
The platform's own calls stay in its adapter; the decisions are made here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from invoice_bridge.errors import PermanentSyncError, SyncError
from invoice_bridge.ledger import Ledger, LedgerEntry
from invoice_bridge.observability import count, logger
from invoice_bridge.sync.contract import Found, Lookup, OutcomeUnknown, resolve


class SyncEngine:
    """The shared sync rules of one destination."""

    def __init__(self, ledger: Ledger, destination: str) -> None:
        self.ledger = ledger
        self.destination = destination

    @staticmethod
    def skip_reason(
        entry: LedgerEntry, updated_at: datetime, *, unfinished: bool = False, closing_is_final: bool = True
    ) -> str | None:
        """Why an event at `updated_at` changes nothing (closed, stale, already applied), or None.

        `unfinished` keeps an applied version going when something of it is still to do (a void, a PDF);
        `closing_is_final` is False where a closed document may be reopened by a later version (a canceled order).
        """
        if entry.closed and closing_is_final:
            return "closed"
        if entry.is_stale(updated_at):
            return "stale"
        if entry.is_current(updated_at) and not unfinished:
            return "current"
        return None

    def begin(
        self, entry: LedgerEntry, updated_at: datetime, event_id: str | None, event_type: str | None
    ) -> LedgerEntry:
        """Record the intent before a create: a worker that finds it unfinished looks up before creating."""
        return self.ledger.save(entry.with_intent(updated_at, event_id, event_type))

    def recover[R](self, entry: LedgerEntry, look_up: Callable[[], Lookup[R]]) -> Found[R] | None:
        """After an unknown outcome: ours (adopt it) or None (create it); a failure is recorded and raised."""
        lookup = look_up()
        count("IntentResolved", {"destination": self.destination, "found": str(isinstance(lookup, Found)).lower()})
        try:
            return resolve(lookup)
        except PermanentSyncError as exc:
            # An unknown outcome keeps its intent: whatever comes next for this document (a redelivery, a newer
            # version, an operator's replay) looks it up again before anything is created.
            self.fail(entry, exc.code, exc.message, keep_intent=isinstance(exc, OutcomeUnknown))
            raise

    def totals_match(
        self, remote_id: str, expected: Mapping[str, object], remote: Mapping[str, object] | None, **detail: str
    ) -> bool:
        """Compare the platform's computed totals with BuildNexion's; a difference is logged and counted.

        The document stays synced either way (the platform holds what BuildNexion sent; its rounding may differ):
        the ledger keeps both and the TotalsMismatch alarm tells an operator.
        """
        if remote is None:
            logger.warning("the platform answered without a total", extra={"remote_id": remote_id, **detail})
            return False
        if dict(remote) == dict(expected):
            return True
        logger.warning(
            "totals differ from BuildNexion's",
            extra={
                "remote_id": remote_id,
                **{f"expected_{k}": str(v) for k, v in expected.items()},
                **{f"remote_{k}": str(v) for k, v in remote.items()},
                **detail,
            },
        )
        count("TotalsMismatch", {"destination": self.destination})
        return False

    def fail(self, entry: LedgerEntry, code: str | None, message: str, *, keep_intent: bool = False) -> None:
        """Record a permanent failure (the batch edge dead-letters the message with the same reason).

        `keep_intent` when the platform may hold the document: the intent stays, so no later attempt creates
        it without a lookup.
        """
        kept = {"intent_id": entry.intent_id, "intent_at": entry.intent_at} if keep_intent else {}
        try:
            self.ledger.save(entry.failed(code, message, **kept))
        except SyncError:
            logger.warning("could not record the failure in the ledger (changed meanwhile)")
