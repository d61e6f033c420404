"""The shared state pieces on moto's DynamoDB: rate limiter, ledger, references, leases, ensure_reference."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from invoice_bridge.errors import RetryLater
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import (
    Leases,
    Ledger,
    LedgerConflict,
    LedgerEntry,
    References,
    StateTable,
    SyncStatus,
    ensure_reference,
)
from invoice_bridge.limiter import DynamoRateLimiter, limiter_key
from invoice_bridge.tuimprenta.batches import CANCELS_PK, CancelStore
from tests.conftest import FakeClock, emitted_metrics
from tests.integration.conftest import Aws

T0 = datetime(2026, 11, 3, 10, 15, tzinfo=UTC)


@pytest.fixture
def table(aws: Aws) -> StateTable:
    return StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"])


def limiter(
    table: StateTable, clock: FakeClock, limit: int = 5, window: float = 5.0, client: Any = None
) -> DynamoRateLimiter:
    return DynamoRateLimiter(
        client or table.client,
        table.table_name,
        limiter_key("quipu", "app-1"),
        limit=limit,
        window_seconds=window,
        platform="quipu",
        margin_seconds=0.0,
        clock=clock,
        sleep=clock.sleep,
    )


def test_limiter_key_hides_the_credential() -> None:
    key = limiter_key("quipu", "my-app-id")
    assert key.startswith("limiter#quipu#")
    assert "my-app-id" not in key
    assert key == limiter_key("quipu", "my-app-id") != limiter_key("quipu", "other")


def test_limiter_allows_a_burst_then_one_per_window_share(table: StateTable) -> None:
    # Given a 5-per-5-s limit and a caller that sends as soon as it may
    clock = FakeClock()
    limit = limiter(table, clock)
    sends = []
    for _ in range(8):
        limit.acquire(Deadline.unlimited())
        sends.append(clock.now - 1_800_000_000.0)
    # Then the first five go at once and each later one waits for the oldest to leave the window
    assert sends == [0, 0, 0, 0, 0, 5, 5, 5]
    # and no 5-second window ever holds more than five sends
    assert all(sum(1 for s in sends if start <= s < start + 5) <= 5 for start in sends)


def test_limiter_spaces_steady_traffic_at_the_window_rate(table: StateTable) -> None:
    clock = FakeClock()
    limit = limiter(table, clock)
    sends = []
    for _ in range(5):
        limit.acquire(Deadline.unlimited())
        sends.append(clock.now)
        clock.now += 1  # one request a second is exactly the platform's rate
    for _ in range(3):
        limit.acquire(Deadline.unlimited())
        sends.append(clock.now)
    # Steady at the platform's rate: every send waits exactly for the one five sends back to leave the window.
    assert [round(b - a, 3) for a, b in itertools.pairwise(sends)] == [1, 1, 1, 1, 1, 1, 1]
    assert clock.slept == [pytest.approx(1.0)] * 2  # the 6th send was already due; the 7th and 8th waited


def test_limiter_hands_work_back_when_the_slot_is_past_the_deadline(table: StateTable) -> None:
    clock = FakeClock()
    limit = limiter(table, clock, limit=1, window=10)
    limit.acquire(Deadline.unlimited())
    with pytest.raises(RetryLater) as caught:
        limit.acquire(Deadline(3, clock=clock))
    assert caught.value.retry_after == pytest.approx(10)
    assert clock.slept == []  # it did not burn the invocation waiting
    # and the refused caller reserved nothing: the next one still gets the slot at +10 s
    limit.acquire(Deadline.unlimited())
    assert clock.now - 1_800_000_000.0 == pytest.approx(10.0)


def test_a_pause_holds_every_user_and_never_shortens(table: StateTable) -> None:
    clock = FakeClock()
    first, second = limiter(table, clock), limiter(table, clock)
    first.pause_until(clock.now + 7)
    second.pause_until(clock.now + 2)  # a shorter pause does not cut the longer one
    second.acquire(Deadline.unlimited())
    assert clock.now - 1_800_000_000.0 == pytest.approx(7.0)


def test_two_limiters_on_one_credential_share_the_window(table: StateTable) -> None:
    # Given two workers (threads here; each with its own limiter object) on one credential, real time
    import time

    sends: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limit = DynamoRateLimiter(
            table.client,
            table.table_name,
            limiter_key("quipu", "shared"),
            limit=3,
            window_seconds=0.6,
            platform="quipu",
            margin_seconds=0.0,
        )
        for _ in range(3):
            limit.acquire(Deadline.unlimited())
            with lock:
                sends.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sends.sort()
    # Then together they never put more than 3 sends in any 0.6 s window (a little slack for scheduling)
    assert len(sends) == 6
    assert sends[3] - sends[0] >= 0.55


def test_ledger_entries_round_trip_and_writes_are_conditional(table: StateTable) -> None:
    ledger = Ledger(table)
    assert ledger.get("quipu", "inv_1") is None
    entry = ledger.get_or_new("quipu", "inv_1").with_intent(T0, "evt_1", "invoice.created")
    saved = ledger.save(entry)
    assert saved.version == 1
    read = ledger.get("quipu", "inv_1")
    assert read == saved
    assert read is not None
    assert read.status == SyncStatus.PENDING
    assert read.intent_id

    # A second writer that read version 1 loses once the first has written version 2
    stale_copy = read
    ledger.save(read.synced("q-77", T0, expected_total_cents=127806, remote_total_cents=127806))
    with pytest.raises(LedgerConflict) as caught:
        ledger.save(stale_copy.failed("x", "late writer"))
    assert caught.value.retryable is True
    assert caught.value.retry_after == 1  # the work is retried from a fresh read a second later
    final = ledger.get("quipu", "inv_1")
    assert final is not None
    assert (final.status, final.remote_id, final.intent_id, final.version) == (SyncStatus.SYNCED, "q-77", None, 2)
    # A new entry cannot overwrite an existing one either
    with pytest.raises(LedgerConflict):
        ledger.save(LedgerEntry(destination="quipu", object_id="inv_1"))
    assert [e.object_id for e in ledger.entries("quipu")] == ["inv_1"]
    assert list(ledger.entries("facturadirecta")) == []


def test_only_a_save_that_records_a_sync_counts_a_synced_document(
    table: StateTable, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(table)

    def counted() -> list[tuple[str, dict[str, str]]]:
        return [(name, dims) for name, dims in emitted_metrics(capsys.readouterr().out) if name == "DocumentSynced"]

    capsys.readouterr()
    # An intent is not a sync
    pending = ledger.save(ledger.get_or_new("quipu", "inv_2").with_intent(T0, "evt_1", "invoice.created"))
    assert counted() == []
    # Recording the platform's id is, once, per destination
    synced = ledger.save(pending.synced("q-2", T0))
    assert [(name, dims["destination"]) for name, dims in counted()] == [("DocumentSynced", "quipu")]
    # A later refusal of that document (it keeps when it was last synced) is not
    ledger.save(synced.failed("E422", "refused"))
    assert counted() == []
    # Nor a refusal of a document never synced
    ledger.save(ledger.get_or_new("quipu", "inv_3").with_intent(T0, "evt_2", "invoice.created").failed("E", "no"))
    assert counted() == []


def test_delete_if_deletes_only_while_the_condition_holds(table: StateTable) -> None:
    # Given a cached token item
    table.client.put_item(
        TableName=table.table_name,
        Item={"pk": {"S": "token#quipu"}, "sk": {"S": "token"}, "access_token": {"S": "t-2"}},
    )
    # When a worker holding an older token tries to drop it, nothing is deleted and it is told so
    assert table.delete_if("token#quipu", "token", "access_token = :t", {":t": {"S": "t-1"}}) is False
    assert table.get("token#quipu", "token") is not None
    # When the holder of the current token drops it, it is gone
    assert table.delete_if("token#quipu", "token", "access_token = :t", {":t": {"S": "t-2"}}) is True
    assert table.get("token#quipu", "token") is None


def test_delete_if_raises_what_is_not_a_failed_condition(table: StateTable) -> None:
    # A missing table is an error to raise, not "the condition did not hold"
    missing = StateTable(table.client, "no-such-table")
    with pytest.raises(ClientError) as caught:
        missing.delete_if("token#quipu", "token", "access_token = :t", {":t": {"S": "t-1"}})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_ledger_staleness_and_currency() -> None:
    entry = LedgerEntry(destination="quipu", object_id="inv_1").synced("q-1", T0)
    assert entry.is_stale(T0 - timedelta(seconds=1))
    assert not entry.is_stale(T0)
    assert entry.is_current(T0)
    assert not entry.is_current(T0 + timedelta(seconds=1))
    pending = LedgerEntry(destination="quipu", object_id="inv_1", source_updated_at=T0)
    assert not pending.is_current(T0)
    assert not LedgerEntry(destination="quipu", object_id="new").is_stale(T0)


def test_totals_mismatch_and_failure_fields() -> None:
    entry = LedgerEntry(destination="quipu", object_id="inv_1")
    assert not entry.totals_mismatch
    assert entry.model_copy(update={"expected_total_cents": 100, "remote_total_cents": 101}).totals_mismatch
    assert not entry.model_copy(update={"expected_total_cents": 100, "remote_total_cents": 100}).totals_mismatch
    failed = entry.with_intent(T0, "e", "t").failed("E422", "x" * 5000)
    assert failed.status == SyncStatus.FAILED
    assert (failed.intent_id, failed.intent_at) == (None, None)
    assert len(failed.error_message or "") == 1000


def test_intent_keeps_the_version_already_applied() -> None:
    applied = LedgerEntry(destination="quipu", object_id="inv_1").synced("q-1", T0)
    again = applied.with_intent(T0 + timedelta(hours=1), "evt_2", "invoice.updated")
    assert again.source_updated_at == T0
    assert again.intent_id != applied.with_intent(T0, "evt_2", "invoice.updated").intent_id


def test_references_remember_per_destination(table: StateTable) -> None:
    refs = References(table)
    assert refs.get("quipu", "contact", "B12345678") is None
    refs.put("quipu", "contact", "B12345678", "c-1")
    assert refs.get("quipu", "contact", "B12345678") == "c-1"
    assert refs.get("facturadirecta", "contact", "B12345678") is None
    refs.put("quipu", "contact", "B12345678", "c-2")  # the platform is the truth: a newer id replaces it
    assert refs.get("quipu", "contact", "B12345678") == "c-2"


def test_leases_exclude_until_released_or_expired(table: StateTable) -> None:
    clock = FakeClock()
    leases = Leases(table, clock=clock)
    assert leases.acquire("poller", "a", 30)
    assert not leases.acquire("poller", "b", 30)
    assert leases.acquire("poller", "a", 30)  # the holder may extend
    leases.release("poller", "b")  # not b's to release
    assert not leases.acquire("poller", "b", 30)
    leases.release("poller", "a")
    assert leases.acquire("poller", "b", 30)
    clock.now += 31
    assert leases.acquire("poller", "c", 30)  # b crashed: its lease expired
    # and DynamoDB's TTL removes the item an hour after it expired
    item = table.get("lease#poller", "lease")
    assert item is not None
    assert item["expires_at"]["N"] == f"{clock.now + 30:.3f}"
    assert item["ttl"]["N"] == str(int(clock.now + 30) + 3600)


def test_ensure_reference_creates_once_and_then_costs_nothing(table: StateTable) -> None:
    refs, leases = References(table), Leases(table)
    calls: list[str] = []

    def find() -> str | None:
        calls.append("find")
        return None

    def create() -> str:
        calls.append("create")
        return "c-9"

    args = {"destination": "quipu", "kind": "contact", "key": "B1", "find": find, "create": create}
    assert ensure_reference(refs, leases, **args) == ("c-9", True)  # type: ignore[arg-type]
    assert ensure_reference(refs, leases, **args) == ("c-9", False)  # type: ignore[arg-type]
    assert calls == ["find", "create"]
    # the item says, for whoever reads the table, when the id was remembered
    (item,) = [i for i in table.client.scan(TableName=table.table_name)["Items"] if i.get("remote_id") == {"S": "c-9"}]
    remembered_at = datetime.fromisoformat(item["at"]["S"])
    assert timedelta(0) <= datetime.now(UTC) - remembered_at < timedelta(minutes=1)


def test_ensure_reference_adopts_what_the_platform_already_has(table: StateTable) -> None:
    result = ensure_reference(
        References(table),
        Leases(table),
        destination="quipu",
        kind="contact",
        key="B2",
        find=lambda: "c-existing",
        create=lambda: pytest.fail("must not create"),
    )
    assert result == ("c-existing", False)


def test_ensure_reference_defers_while_another_worker_creates(table: StateTable) -> None:
    leases = Leases(table)
    assert leases.acquire("ref#quipu#contact#B3", "other-worker", 30)
    waits: list[float] = []
    with pytest.raises(RetryLater) as caught:
        ensure_reference(
            References(table),
            leases,
            destination="quipu",
            kind="contact",
            key="B3",
            find=lambda: pytest.fail("must not look up"),
            create=lambda: pytest.fail("must not create"),
            wait_seconds=1.0,
            poll_seconds=0.25,
            sleep=waits.append,
        )
    assert caught.value.retry_after == 2
    assert waits == [0.25] * 4  # it waited for the holder, a bounded while, before handing the work back


def test_ensure_reference_takes_the_id_the_lease_holder_remembers_meanwhile(table: StateTable) -> None:
    refs, leases = References(table), Leases(table)
    assert leases.acquire("ref#quipu#contact#B6", "other-worker", 30)

    def holder_finishes(_seconds: float) -> None:
        refs.put("quipu", "contact", "B6", "c-from-holder")

    result = ensure_reference(
        refs,
        leases,
        destination="quipu",
        kind="contact",
        key="B6",
        find=lambda: pytest.fail("must not look up"),
        create=lambda: pytest.fail("must not create"),
        sleep=holder_finishes,
    )
    assert result == ("c-from-holder", False)


def test_ensure_reference_by_default_waits_four_seconds_in_quarter_second_polls(table: StateTable) -> None:
    leases = Leases(table)
    assert leases.acquire("ref#quipu#contact#B7", "other-worker", 30)
    waits: list[float] = []
    with pytest.raises(RetryLater):
        ensure_reference(
            References(table),
            leases,
            destination="quipu",
            kind="contact",
            key="B7",
            find=lambda: pytest.fail("must not look up"),
            create=lambda: pytest.fail("must not create"),
            sleep=waits.append,
        )
    assert waits == [0.25] * 16


def test_ensure_reference_holds_its_lease_thirty_seconds_by_default(table: StateTable) -> None:
    clock = FakeClock()
    leases = Leases(table, clock)

    def find() -> str | None:
        # while the lookup runs, the lease is held for 30 s: another worker is kept out until then, not after
        assert not leases.acquire("ref#quipu#contact#B8", "other-worker", 30)
        clock.now += 29.9
        assert not leases.acquire("ref#quipu#contact#B8", "other-worker", 30)
        clock.now += 0.2
        assert leases.acquire("ref#quipu#contact#B8", "other-worker", 30)
        return "c-8"

    result = ensure_reference(
        References(table), leases, destination="quipu", kind="contact", key="B8", find=find, create=lambda: "x"
    )
    assert result == ("c-8", False)


def test_ensure_reference_takes_the_id_remembered_just_before_it_got_the_lease(table: StateTable) -> None:
    # Given a holder that remembers the id between this worker's first look and its taking the free lease
    class LateReferences(References):
        looks = 0

        def get(self, destination: str, kind: str, key: str) -> str | None:
            self.looks += 1
            return None if self.looks == 1 else "c-from-holder"

    # Then the id is taken as found, not created, and nothing is asked of the platform
    result = ensure_reference(
        LateReferences(table),
        Leases(table),
        destination="quipu",
        kind="contact",
        key="B9",
        find=lambda: pytest.fail("must not look up"),
        create=lambda: pytest.fail("must not create"),
    )
    assert result == ("c-from-holder", False)


def test_ensure_reference_releases_its_lease_when_the_platform_fails(table: StateTable) -> None:
    refs, leases = References(table), Leases(table)

    def broken() -> str | None:
        raise RetryLater("platform down", retry_after=5)

    with pytest.raises(RetryLater, match="platform down"):
        ensure_reference(refs, leases, destination="quipu", kind="contact", key="B4", find=broken, create=lambda: "x")
    assert leases.acquire("ref#quipu#contact#B4", "next", 30)


def test_two_racing_workers_make_one_supplier(table: StateTable) -> None:
    refs, leases = References(table), Leases(table)
    created: list[str] = []
    gate = threading.Barrier(2)
    outcomes: list[object] = []

    def create() -> str:
        created.append("x")
        return f"c-{len(created)}"

    def worker() -> None:
        gate.wait()
        try:
            outcomes.append(
                ensure_reference(
                    refs, leases, destination="quipu", kind="contact", key="B5", find=lambda: None, create=create
                )
            )
        except RetryLater as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert created == ["x"]
    assert refs.get("quipu", "contact", "B5") == "c-1"
    # the loser either waited for the lease (and will find the id next time) or found it remembered
    assert all(o == ("c-1", True) or o == ("c-1", False) or isinstance(o, RetryLater) for o in outcomes)


class OneItemPages:
    """The DynamoDB client, answering every query one item per page (as a partition past 1 MB would)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.pages = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        self.pages += 1
        return self._client.query(**kwargs, Limit=1)


def test_a_partition_is_read_to_its_last_page(table: StateTable) -> None:
    from invoice_bridge.tuimprenta.batches import BatchItem, BatchStore

    for n in range(3):
        table.client.put_item(
            TableName=table.table_name, Item={"pk": {"S": "many"}, "sk": {"S": f"item{n}"}, "n": {"N": str(n)}}
        )
    paged = OneItemPages(table.client)
    assert sorted(item["sk"]["S"] for item in StateTable(cast(Any, paged), table.table_name).query("many")) == [
        "item0",
        "item1",
        "item2",
    ]
    assert paged.pages >= 3
    # and the open tuimprenta batches, which are read the same way
    store = BatchStore(table)
    for n in range(3):
        store.put(BatchItem(key=f"k{n}", members=[f"sin_{n}"], created_at=0.0, next_poll_at=0.0))
    paged_store = BatchStore(StateTable(cast(Any, paged), table.table_name))
    assert sorted(i.key for i in paged_store.open()) == ["k0", "k1", "k2"]


def test_a_closed_batch_item_is_kept_for_its_retention_and_an_open_one_for_ever(table: StateTable) -> None:
    from invoice_bridge.keys import TUIMPRENTA_BATCHES_PK, TUIMPRENTA_OPEN_BATCHES_PK
    from invoice_bridge.tuimprenta.batches import BATCH_CLOSED, CLOSED_RETENTION_SECONDS, BatchItem, BatchStore

    store = BatchStore(table)
    store.put(BatchItem(key="open", members=["sin_1"], created_at=0.0, next_poll_at=0.0))
    store.put(BatchItem(key="done", members=["sin_2"], created_at=0.0, next_poll_at=0.0))
    store.put(BatchItem(key="done", members=["sin_2"], created_at=0.0, next_poll_at=0.0, status=BATCH_CLOSED))
    opened = table.get(TUIMPRENTA_OPEN_BATCHES_PK, "batch#open")
    closed = table.get(TUIMPRENTA_BATCHES_PK, "batch#done")
    # Closing a batch moves it: the open partition keeps only open batches.
    assert table.get(TUIMPRENTA_OPEN_BATCHES_PK, "batch#done") is None
    assert [i.key for i in store.open()] == ["open"]
    assert store.get("done") == BatchItem(
        key="done", members=["sin_2"], created_at=0.0, next_poll_at=0.0, status=BATCH_CLOSED
    )
    assert opened is not None
    assert closed is not None
    assert "ttl" not in opened
    expected = datetime.now(UTC).timestamp() + CLOSED_RETENTION_SECONDS
    assert abs(int(closed["ttl"]["N"]) - expected) < 60


def test_recorded_callbacks_hint_at_their_batch_or_at_every_open_batch(aws: Aws) -> None:
    from invoice_bridge.store import StateStore
    from invoice_bridge.tuimprenta.events import (
        TuimprentaEventItem,
        consume_hints,
        read_hints,
        record_tuimprenta_event,
    )
    from invoice_bridge.tuimprenta.webhook import TuimprentaEvent
    from tests.conftest import load_event

    table = StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"])
    store = StateStore(table.client, table.table_name)
    # Given nothing recorded: no hint
    assert not read_hints(table)
    # When a batch event is recorded, Then it points at its batch only
    batch_event = TuimprentaEvent.model_validate(load_event("tuimprenta/batch_completed.json"))
    record_tuimprenta_event(store, TuimprentaEventItem.from_event(batch_event, datetime.now(UTC)))
    hints = read_hints(table)
    assert bool(hints)
    assert (hints.batch_ids, hints.any_batch) == (frozenset({batch_event.batch_id()}), False)
    # When an invoice event (naming no batch) is recorded too, Then every open batch is to be looked at
    invoice_event = TuimprentaEvent.model_validate(load_event("tuimprenta/invoice_issued.json"))
    record_tuimprenta_event(store, TuimprentaEventItem.from_event(invoice_event, datetime.now(UTC)))
    hints = read_hints(table)
    assert (hints.batch_ids, hints.any_batch) == (frozenset({batch_event.batch_id()}), True)
    # and once consumed, nothing is hinted any more
    consume_hints(table, hints)
    assert not read_hints(table)
    only_invoice = TuimprentaEventItem.from_event(invoice_event, datetime.now(UTC))
    record_tuimprenta_event(store, only_invoice)
    assert bool(read_hints(table))


class StaleReplica:
    """A DynamoDB client whose eventually consistent reads answer from a replica that never caught up.

    DynamoDB may answer a read without ConsistentRead from a replica that misses the latest writes; moto
    never does. Here such a read returns what the first read of that key saw.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._replica: dict[str, Any] = {}

    def get_item(self, **kwargs: Any) -> Any:
        if kwargs.get("ConsistentRead") is True:
            return self._client.get_item(**kwargs)
        key = repr(sorted(kwargs["Key"].items()))
        if key not in self._replica:
            self._replica[key] = self._client.get_item(**kwargs)
        return self._replica[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_the_limiter_reads_its_window_consistently_so_a_stale_replica_costs_no_slot(table: StateTable) -> None:
    # Given a limiter on a table whose eventually consistent reads lag behind
    clock = FakeClock()
    stale = limiter(table, clock, client=StaleReplica(table.client))
    # When it takes five slots in a row, Then each is granted at once (no write lost to a stale version)
    for _ in range(5):
        stale.acquire(Deadline(1))
    assert clock.slept == []


def test_ledger_reads_are_consistent_so_a_read_after_a_save_sees_it(table: StateTable) -> None:
    ledger = Ledger(StateTable(cast(Any, StaleReplica(table.client)), table.table_name))
    assert ledger.get("quipu", "inv_9") is None
    saved = ledger.save(ledger.get_or_new("quipu", "inv_9").with_intent(T0, "evt_1", "invoice.created"))
    assert ledger.get("quipu", "inv_9") == saved


def test_a_waiting_cancel_records_the_event_that_asked_for_it(table: StateTable) -> None:
    # An operator looking at a cancel that waits finds which BuildNexion event asked for it
    cancels = CancelStore(table)
    cancels.put("sin_1", "evt_cancel_1")
    assert list(cancels.waiting()) == ["sin_1"]
    assert table.get(CANCELS_PK, "sin_1") == {
        "pk": {"S": "tuimprenta#cancels"},
        "sk": {"S": "sin_1"},
        "event_id": {"S": "evt_cancel_1"},
    }
    cancels.done("sin_1")
    assert list(cancels.waiting()) == []


def test_open_batches_an_earlier_version_kept_among_the_closed_ones_are_moved_once(table: StateTable) -> None:
    from invoice_bridge.keys import TUIMPRENTA_BATCHES_PK, TUIMPRENTA_OPEN_BATCHES_PK
    from invoice_bridge.tuimprenta.batches import BATCH_CLOSED, BatchItem, BatchStore

    # As the earlier version wrote them: open and closed batches in one partition
    legacy_open = BatchItem(key="old-open", members=["sin_1"], created_at=1.0, next_poll_at=1.0)
    legacy_closed = BatchItem(key="old-done", members=["sin_2"], created_at=0.0, next_poll_at=0.0, status=BATCH_CLOSED)
    for item in (legacy_open, legacy_closed):
        written = {**item.to_item(), "pk": {"S": TUIMPRENTA_BATCHES_PK}}
        table.client.put_item(TableName=table.table_name, Item=written)
    assert [i.key for i in BatchStore(table).open()] == ["old-open"]
    assert table.get(TUIMPRENTA_OPEN_BATCHES_PK, "batch#old-open") is not None
    assert table.get(TUIMPRENTA_BATCHES_PK, "batch#old-open") is None
    assert table.get(TUIMPRENTA_BATCHES_PK, "batch#old-done") is not None
    # Once moved, a new container does not look through the closed batches again
    queried: list[str] = []
    real_query = table.client.query

    def spy(**kwargs: Any) -> Any:
        queried.append(kwargs["ExpressionAttributeValues"][":pk"]["S"])
        return real_query(**kwargs)

    spied = StateTable(
        cast(Any, type("Spy", (), {"query": staticmethod(spy), "get_item": table.client.get_item})), table.table_name
    )
    assert [i.key for i in BatchStore(spied).open()] == ["old-open"]
    assert queried == [TUIMPRENTA_OPEN_BATCHES_PK]


def test_a_query_keeps_the_sort_key_prefix_and_the_filter_on_every_page(table: StateTable) -> None:
    # Given a partition with items of two kinds, some open and some closed
    for sk, status in [("batch#a", "open"), ("batch#b", "closed"), ("batch#c", "open"), ("other#d", "open")]:
        table.put({"pk": {"S": "mixed"}, "sk": {"S": sk}, "status": {"S": status}})
    paged = OneItemPages(table.client)
    one_per_page = StateTable(cast(Any, paged), table.table_name)
    # When it is read one item per page, by prefix and filter (a reserved word, through a name placeholder)
    found = one_per_page.query(
        "mixed", sk_prefix="batch#", filter="#s = :open", names={"#s": "status"}, values={":open": {"S": "open"}}
    )
    # Then every page keeps both, and only the matching items come out
    assert [i["sk"]["S"] for i in found] == ["batch#a", "batch#c"]
    assert paged.pages >= 3
    assert [i["sk"]["S"] for i in table.query("mixed", sk_prefix="other#")] == ["other#d"]
    # And the count reads every page too, without the items
    assert one_per_page.count("mixed", sk_prefix="batch#") == 3
    assert table.count("mixed") == 4
    assert table.count("empty") == 0


def test_put_if_writes_only_while_its_condition_holds(table: StateTable) -> None:
    item: dict[str, Any] = {"pk": {"S": "lease#x"}, "sk": {"S": "lease"}, "owner": {"S": "a"}}
    assert table.put_if(item, "attribute_not_exists(pk)") is True
    assert table.put_if({**item, "owner": {"S": "b"}}, "attribute_not_exists(pk)") is False
    # A reserved word ("owner") through a name placeholder
    assert table.put_if({**item, "owner": {"S": "b"}}, "#o = :o", {":o": {"S": "b"}}, {"#o": "owner"}) is False
    assert table.put_if({**item, "owner": {"S": "b"}}, "#o = :o", {":o": {"S": "a"}}, {"#o": "owner"}) is True
    assert table.get("lease#x", "lease") == {**item, "owner": {"S": "b"}}
    # A missing table is an error, not a failed condition
    with pytest.raises(ClientError):
        StateTable(table.client, "no-such-table").put_if(item, "attribute_not_exists(pk)")
