"""The state table's tuimprenta entries: events recorded once, open batches counted across pages."""

from __future__ import annotations

from datetime import UTC, datetime

from invoice_bridge.keys import TUIMPRENTA_BATCHES_PK, TUIMPRENTA_OPEN_BATCHES_PK
from invoice_bridge.store import StateStore
from invoice_bridge.tuimprenta.events import TuimprentaEventItem, record_tuimprenta_event
from invoice_bridge.tuimprenta.webhook import TuimprentaEvent
from tests.conftest import load_event
from tests.integration.conftest import Aws


def store(aws: Aws) -> StateStore:
    return StateStore(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"])


def test_event_recorded_once_with_a_ttl(aws: Aws) -> None:
    event = TuimprentaEvent.model_validate(load_event("tuimprenta/batch_completed.json"))
    received = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    item = TuimprentaEventItem.from_event(event, received)
    assert record_tuimprenta_event(store(aws), item) is True
    assert record_tuimprenta_event(store(aws), item) is False
    (stored,) = aws.session.client("dynamodb").scan(TableName=aws.provisioned.tables["StateTable"])["Items"]
    assert stored["batch_id"]["S"] == "batch_abc"
    assert int(stored["ttl"]["N"]) == int(datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp())


def test_open_batches_are_counted_across_pages(aws: Aws) -> None:
    client = aws.session.client("dynamodb")
    table = aws.provisioned.tables["StateTable"]
    padding = "x" * 300_000  # large items force the query to page (1 MB pages)
    for index in range(12):
        status = "open" if index % 3 else "closed"
        client.put_item(
            TableName=table,
            Item={
                "pk": {"S": TUIMPRENTA_OPEN_BATCHES_PK if status == "open" else TUIMPRENTA_BATCHES_PK},
                "sk": {"S": f"batch#{index:03d}"},
                "status": {"S": status},
                "padding": {"S": padding},
            },
        )
    assert store(aws).count_open_tuimprenta_batches() == 8
