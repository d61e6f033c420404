"""A ledger entry's transitions and its DynamoDB item, field by field (no table needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from invoice_bridge.ledger import LedgerEntry, SyncStatus

T0 = datetime(2026, 11, 3, 10, 15, tzinfo=UTC)


def refused() -> LedgerEntry:
    """An entry the platform refused after an intent: every field a sync must clear is set."""
    return LedgerEntry(
        destination="quipu",
        object_id="inv_1",
        status=SyncStatus.FAILED,
        source_updated_at=T0,
        intent_id="intent-1",
        intent_at=T0,
        error_code="E422",
        error_message="refused",
        version=3,
    )


def test_a_sync_records_the_remote_id_and_version_and_clears_the_intent_and_the_error() -> None:
    # Given a refused entry, when the platform later takes version T0 + 1 h as q-9
    before = datetime.now(UTC)
    synced = refused().synced("q-9", T0 + timedelta(hours=1), remote_total_cents=100)
    after = datetime.now(UTC)
    # Then the entry says so, and nothing of the refusal or the intent is left
    assert (synced.status, synced.remote_id) == (SyncStatus.SYNCED, "q-9")
    assert synced.source_updated_at == T0 + timedelta(hours=1)
    assert (synced.intent_id, synced.intent_at, synced.error_code, synced.error_message) == (None, None, None, None)
    assert synced.synced_at is not None
    assert before <= synced.synced_at <= after
    assert synced.remote_total_cents == 100
    assert synced.version == 3  # the save moves the version on, not the transition


def test_an_intent_marks_the_entry_pending_with_a_fresh_id_time_and_the_event() -> None:
    before = datetime.now(UTC)
    pending = refused().with_intent(T0 + timedelta(hours=2), "evt_2", "invoice.updated")
    after = datetime.now(UTC)
    assert pending.status == SyncStatus.PENDING
    assert pending.intent_id
    assert pending.intent_id != "intent-1"
    assert pending.intent_at is not None
    assert before <= pending.intent_at <= after
    assert (pending.last_event_id, pending.last_event_type) == ("evt_2", "invoice.updated")
    # A new entry takes the event's version; one that holds a version keeps it until a sync
    assert pending.source_updated_at == T0
    fresh = LedgerEntry(destination="quipu", object_id="inv_2").with_intent(T0, "evt_1", "invoice.created")
    assert fresh.source_updated_at == T0


def test_the_item_keys_the_entry_by_destination_and_object_and_holds_it_as_sorted_json() -> None:
    entry = refused().model_copy(update={"details": {"b": "2", "a": "1"}})
    item = entry.to_item()
    assert set(item) == {"pk", "sk", "status", "entry", "version"}
    assert item["pk"] == {"S": "ledger#quipu"}
    assert item["sk"] == {"S": "object#inv_1"}
    assert item["status"] == {"S": "failed"}
    assert item["version"] == {"N": "3"}
    text = item["entry"]["S"]
    body = json.loads(text)
    assert text == json.dumps(body, sort_keys=True)
    assert "version" not in body
    assert body["source_updated_at"] == "2026-11-03T10:15:00Z"
    assert body["details"] == {"a": "1", "b": "2"}
    assert LedgerEntry.from_item(item) == entry
