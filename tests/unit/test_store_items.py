"""The tuimprenta event item the receiver writes: keys, UTC timestamps whatever the machine's zone, the TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from invoice_bridge.tuimprenta.events import TuimprentaEventItem


def test_item_timestamps_are_utc_and_expire_after_seven_days(far_from_utc: None) -> None:
    created = datetime(2026, 11, 21, 8, 0, tzinfo=timezone(timedelta(hours=-4)))
    received = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
    item = TuimprentaEventItem(
        event_id="evt_1",
        event_type="batch.completed",
        invoice_id=None,
        batch_id="batch_1",
        created_at=created,
        received_at=received,
    ).to_item()
    assert item == {
        "pk": {"S": "tuimprenta#webhook-events"},
        "sk": {"S": "event#evt_1"},
        "event_type": {"S": "batch.completed"},
        "created_at": {"S": "2026-11-21T12:00:00+00:00"},
        "received_at": {"S": "2026-11-21T12:00:05+00:00"},
        "ttl": {"N": str(int(datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC).timestamp()))},
        "batch_id": {"S": "batch_1"},
    }
