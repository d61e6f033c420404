"""Quipu sync on moto (ledger, references, leases, token, limiter) against the sandbox Quipu and BuildNexion."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import pytest
from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.errors import PlatformError, RetryLater, SyncError
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, Ledger, References, StateTable, SyncStatus
from invoice_bridge.limiter import DEFAULT_MARGIN_SECONDS, DynamoRateLimiter, limiter_key
from invoice_bridge.quipu.client import AccessToken, QuipuClient, RemoteInvoice, TokenStore
from invoice_bridge.quipu.mapping import credit_note_request
from invoice_bridge.quipu.settings import VoidMode
from invoice_bridge.quipu.sync import Outcome, QuipuSync
from sandbox.aws_local import intrinsics_for
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cfn import Template
from sandbox.lambda_host import LocalLambdaContext
from sandbox.quipu import QuipuOptions, QuipuPeer
from tests.conftest import ROOT, load_event, load_handler_module
from tests.integration.conftest import WEBHOOK_SECRETS, Aws

APP_ID = "sandbox-quipu-app"
APP_SECRET = "sandbox-quipu-secret"


@dataclass
class Rig:
    aws: Aws
    buildnexion: BuildNexionPeer
    quipu: QuipuPeer
    table_name: str

    def table(self) -> StateTable:
        return StateTable(self.aws.session.client("dynamodb"), self.table_name)

    def worker(
        self,
        *,
        void_mode: VoidMode = VoidMode.CREDIT_NOTE,
        attach_pdf: bool = False,
        limit: int = 100,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN_SECONDS,
        owner_slug: str = "",
    ) -> QuipuSync:
        """A fresh worker (its own clients, as another Lambda would have), sharing the state table."""
        dynamodb = self.aws.session.client("dynamodb")
        table = StateTable(dynamodb, self.table_name)
        leases = Leases(table)
        limiter = DynamoRateLimiter(
            dynamodb,
            self.table_name,
            limiter_key("quipu", APP_ID),
            limit=limit,
            window_seconds=window,
            margin_seconds=margin,
            platform="quipu",
        )
        client = QuipuClient(
            self.quipu.base_url,
            SecretStr(APP_ID),
            SecretStr(APP_SECRET),
            tokens=TokenStore(table, APP_ID),
            leases=leases,
            limiter=limiter,
            owner_slug=owner_slug,
        )
        return QuipuSync(
            quipu=client,
            buildnexion=BuildNexionClient(self.buildnexion.base_url, SecretStr(DEFAULT_API_KEY)),
            ledger=Ledger(table),
            references=References(table),
            leases=leases,
            void_mode=void_mode,
            attach_pdf=attach_pdf,
        )

    def publish(self, envelope: dict[str, Any]) -> WebhookEvent:
        """BuildNexion now holds the event's object; the event as the queue carries it."""
        self.buildnexion.put_objects([envelope["data"]["object"]])
        return WebhookEvent.model_validate(envelope)

    def entry(self, invoice_id: str) -> Any:
        return Ledger(self.table()).get("quipu", invoice_id)


def apply_until_done(worker: QuipuSync, event: WebhookEvent, attempts: int = 20) -> Outcome:
    """What the queue does: a retryable failure is tried again (here at once), a permanent one raises."""
    for _ in range(attempts):
        try:
            return worker.apply(event, Deadline(30))
        except SyncError as exc:
            if not exc.retryable:
                raise
            time.sleep(min(exc.retry_after or 0.05, 0.3))  # the queue's backoff, shortened
    raise AssertionError("never converged")


def make_rig(aws: Aws, options: QuipuOptions) -> Iterator[Rig]:
    buildnexion = BuildNexionPeer(DEFAULT_API_KEY, WEBHOOK_SECRETS)
    quipu = QuipuPeer(options)
    buildnexion.start()
    quipu.start()
    try:
        yield Rig(aws, buildnexion, quipu, aws.provisioned.tables["StateTable"])
    finally:
        quipu.stop()
        buildnexion.stop()


@pytest.fixture
def rig(aws: Aws) -> Iterator[Rig]:
    yield from make_rig(aws, QuipuOptions(limit=100, window_seconds=1.0))


def envelope(name: str, **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(f"buildnexion/{name}"))
    event["data"]["object"].update(changes)
    return event


def new_invoice(number: int, provider_id: str = "prv_123", **changes: Any) -> dict[str, Any]:
    event = envelope(
        "01_invoice_created.json", id=f"inv_n{number}", invoice_number=f"N-{number}", provider_id=provider_id
    )
    event["id"] = f"evt_n{number}_{uuid.uuid4().hex[:6]}"
    event["data"]["object"].update(changes)
    return event


def test_create_then_update_then_duplicate_delivery(rig: Rig) -> None:
    worker = rig.worker()
    assert worker.apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30)).action == "created"
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    assert invoice.total_cents == 127806
    assert invoice.due_dates == ["2026-12-03"]
    (contact,) = rig.quipu.contacts_with_tax_id("B12345678")
    assert contact.attributes["name"] == "Hormigones Muñoz, S.L."
    entry = rig.entry("inv_8f3k2")
    assert entry.status is SyncStatus.SYNCED
    assert entry.remote_id == invoice.id
    assert entry.expected_total_cents == entry.remote_total_cents == 127806

    updated = envelope("02_invoice_updated.json")
    updated["data"]["object"]["lines"].append(
        {"description": "Bombeo", "quantity": "1", "unit_amount": 10000, "vat_percent": "21", "retention_percent": "0"}
    )
    updated["data"]["object"].update(subtotal_amount=115625, vat_amount=24281, total_amount=139906)
    outcome = worker.apply(rig.publish(updated), Deadline(30))
    assert outcome == Outcome("updated", invoice.id)
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    assert invoice.due_dates == ["2026-12-18"]
    assert invoice.total_cents == 139906
    assert len(invoice.items) == 2

    calls = sum(rig.quipu.calls.values())
    again = worker.apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30))
    assert again.action == "skipped"  # a redelivered (older) event changes nothing and costs no Quipu call
    assert sum(rig.quipu.calls.values()) == calls
    assert len(rig.quipu.expense_invoices("F-2026-0042")) == 1


def test_removed_lines_remove_items(rig: Rig) -> None:
    worker = rig.worker()
    first = new_invoice(1)
    first["data"]["object"]["lines"].append(dict(first["data"]["object"]["lines"][0], description="extra"))
    first["data"]["object"].update(subtotal_amount=211250, vat_amount=44363, total_amount=255613)
    worker.apply(rig.publish(first), Deadline(30))
    assert len(rig.quipu.expense_invoices("N-1")[0].items) == 2
    shorter = new_invoice(1, updated_at="2026-11-05T00:00:00Z")
    worker.apply(rig.publish(shorter), Deadline(30))
    (invoice,) = rig.quipu.expense_invoices("N-1")
    assert len(invoice.items) == 1
    assert invoice.total_cents == 127806


def test_an_update_keeps_the_tags_a_user_added_in_quipu(rig: Rig) -> None:
    # Given our invoice, which a user tagged "revisada" in Quipu
    worker = rig.worker()
    worker.apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30))
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    invoice.tags = "bn:inv_8f3k2,revisada"
    # When BuildNexion's update is synced
    updated = envelope("02_invoice_updated.json")
    updated["data"]["object"]["lines"][0]["quantity"] = "2"
    assert worker.apply(rig.publish(updated), Deadline(30)).action == "updated"
    # Then both tags are still there, ours and the user's
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    assert invoice.tags == "bn:inv_8f3k2,revisada"


def test_void_becomes_one_full_credit_note(rig: Rig) -> None:
    worker = rig.worker()
    worker.apply(rig.publish(envelope("03_invoice_created.json")), Deadline(30))
    outcome = worker.apply(rig.publish(envelope("04_invoice_voided.json")), Deadline(30))
    assert outcome.action == "credited"
    (invoice,) = rig.quipu.expense_invoices("FL-2026/1187")
    assert invoice.total_cents == 158480  # sub-cent unit price: 1250 x 0.9038 + 180, VAT 21 %
    (note,) = rig.quipu.credit_notes(invoice.id)
    assert note.total_cents == -158480
    assert worker.apply(rig.publish(envelope("04_invoice_voided.json")), Deadline(30)).action == "skipped"
    assert len(rig.quipu.credit_notes(invoice.id)) == 1
    assert rig.entry("inv_91c7d").closed


def test_a_void_whose_credit_note_failed_is_credited_on_the_retry(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by `make chaos`: the void arrived first, the invoice was created with the voided version's
    # timestamp, the credit note's create answered 503; the retry took the event as "already applied".
    worker = rig.worker()
    voided = rig.publish(envelope("04_invoice_voided.json"))
    real_create = worker.quipu.create_invoice
    creates: list[str] = []

    def create_then_fail_the_credit_note(request: Any, deadline: Deadline) -> RemoteInvoice:
        creates.append("create")
        if len(creates) == 2:  # the credit note: Quipu answers 503 (nothing made)
            raise PlatformError("quipu", "Service unavailable", status=503, retryable=True)
        return real_create(request, deadline)

    monkeypatch.setattr(worker.quipu, "create_invoice", create_then_fail_the_credit_note)
    with pytest.raises(PlatformError):
        worker.apply(voided, Deadline(30))
    assert len(rig.quipu.expense_invoices("FL-2026/1187")) == 1
    outcome = apply_until_done(worker, voided)  # the queue delivers the void again
    assert outcome.action == "credited"
    (invoice,) = rig.quipu.expense_invoices("FL-2026/1187")
    (note,) = rig.quipu.credit_notes(invoice.id)
    assert note.total_cents == -158480
    assert rig.entry("inv_91c7d").closed


def test_a_credit_note_whose_answer_was_lost_is_never_made_twice_even_if_a_read_answers_404(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by `make chaos` (seed 1): the credit note was made but its answer lost; on the retry the read of
    # the invoice answered 404 once, the worker took the credit note as absent and Quipu refused a second one.
    worker = rig.worker()
    worker.apply(rig.publish(envelope("03_invoice_created.json")), Deadline(30))
    voided = rig.publish(envelope("04_invoice_voided.json"))
    real_create = worker.quipu.create_invoice

    def create_then_lose_the_answer(request: Any, deadline: Deadline) -> RemoteInvoice:
        real_create(request, deadline)
        raise PlatformError("quipu", "read timed out", retryable=True, code="timeout")

    monkeypatch.setattr(worker.quipu, "create_invoice", create_then_lose_the_answer)
    with pytest.raises(PlatformError):
        worker.apply(voided, Deadline(30))
    monkeypatch.setattr(worker.quipu, "create_invoice", real_create)
    rig.quipu.faults.force("status_404")  # the next read of an invoice answers 404 once
    # When the queue delivers the void again (and again)
    with pytest.raises(RetryLater):
        worker.apply(voided, Deadline(30))
    outcome = apply_until_done(worker, voided)
    # Then the one credit note is adopted, never a second asked for
    (invoice,) = rig.quipu.expense_invoices("FL-2026/1187")
    (note,) = rig.quipu.credit_notes(invoice.id)
    assert outcome == Outcome("credited", note.id)
    assert rig.quipu.calls["POST /invoices"] == 2  # the invoice, its one credit note
    assert rig.entry("inv_91c7d").closed


def test_an_invoice_credited_by_hand_in_quipu_is_closed_with_that_credit_note(rig: Rig) -> None:
    # Given our invoice, credited by hand in Quipu before BuildNexion's void arrives
    worker = rig.worker()
    worker.apply(rig.publish(envelope("03_invoice_created.json")), Deadline(30))
    (invoice,) = rig.quipu.expense_invoices("FL-2026/1187")
    by_hand = worker.quipu.create_invoice(credit_note_request(invoice.id), Deadline(30))
    # When the void is synced (Quipu refuses a second credit note: 422, already fully amended)
    outcome = worker.apply(rig.publish(envelope("04_invoice_voided.json")), Deadline(30))
    # Then that credit note is the void's, and the invoice is closed, not dead-lettered
    assert outcome == Outcome("credited", by_hand.id)
    assert [n.id for n in rig.quipu.credit_notes(invoice.id)] == [by_hand.id]
    entry = rig.entry("inv_91c7d")
    assert entry.closed
    assert entry.details["credit_note_id"] == by_hand.id


def test_void_by_delete_never_also_credits(rig: Rig) -> None:
    worker = rig.worker(void_mode=VoidMode.DELETE)
    worker.apply(rig.publish(envelope("03_invoice_created.json")), Deadline(30))
    assert worker.apply(rig.publish(envelope("04_invoice_voided.json")), Deadline(30)).action == "deleted"
    assert rig.quipu.expense_invoices("FL-2026/1187") == []
    assert not any(i.amended_invoice_id for i in rig.quipu.invoices.values())


def test_update_before_create_ends_with_the_latest_invoice(rig: Rig) -> None:
    worker = rig.worker()
    created, updated = envelope("01_invoice_created.json"), envelope("02_invoice_updated.json")
    rig.buildnexion.put_objects([updated["data"]["object"]])  # BuildNexion already holds the update
    assert worker.apply(WebhookEvent.model_validate(updated), Deadline(30)).action == "created"
    assert worker.apply(WebhookEvent.model_validate(created), Deadline(30)).action == "skipped"
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    assert invoice.due_dates == ["2026-12-18"]


def test_a_422_duplicate_number_adopts_the_existing_invoice_and_updates_it(rig: Rig) -> None:
    rig.worker().apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30))
    rig.table().client.delete_item(  # the ledger never knew it: an invoice keyed in Quipu by hand
        TableName=rig.table_name, Key={"pk": {"S": "ledger#quipu"}, "sk": {"S": "object#inv_8f3k2"}}
    )
    outcome = rig.worker().apply(rig.publish(envelope("02_invoice_updated.json")), Deadline(30))
    assert outcome.action == "adopted"
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    assert outcome.remote_id == invoice.id
    assert invoice.due_dates == ["2026-12-18"]
    assert rig.entry("inv_8f3k2").remote_id == invoice.id


def test_a_worker_killed_between_quipus_201_and_the_ledger_write_creates_no_duplicate(rig: Rig) -> None:
    crashing = rig.worker()
    real_create = crashing.quipu.create_invoice

    def create_then_die(document: dict[str, Any], deadline: Deadline) -> Any:
        real_create(document, deadline)
        raise KeyboardInterrupt("killed")  # the Lambda dies: nothing after the call runs

    crashing.quipu.create_invoice = create_then_die  # type: ignore[method-assign,assignment]
    event = rig.publish(envelope("01_invoice_created.json"))
    with pytest.raises(KeyboardInterrupt):
        crashing.apply(event, Deadline(30))
    assert rig.entry("inv_8f3k2").intent_id is not None
    outcome = rig.worker().apply(event, Deadline(30))  # the redelivery, on another worker
    assert outcome.action == "adopted"
    assert len(rig.quipu.expense_invoices("F-2026-0042")) == 1
    assert rig.entry("inv_8f3k2").status is SyncStatus.SYNCED


def test_other_422s_are_permanent_and_recorded(rig: Rig) -> None:
    bad = new_invoice(7)
    bad["data"]["object"]["lines"][0]["vat_percent"] = "121"
    with pytest.raises(SyncError) as caught:
        rig.worker().apply(rig.publish(bad), Deadline(30))
    assert not caught.value.retryable
    assert "vat_percent" in caught.value.message
    entry = rig.entry("inv_n7")
    assert entry.status is SyncStatus.FAILED
    assert entry.error_code == "validation"


def test_a_401_mid_run_renews_the_token_once_and_goes_on(rig: Rig) -> None:
    worker = rig.worker()
    worker.apply(rig.publish(new_invoice(1)), Deadline(30))
    rig.quipu.revoke_tokens()
    assert worker.apply(rig.publish(new_invoice(2)), Deadline(30)).action == "created"
    assert rig.quipu.calls["POST /oauth/token"] == 2
    assert rig.quipu.statuses[401] == 1


def test_the_token_is_shared_by_workers(rig: Rig) -> None:
    for number in range(3):
        rig.worker().apply(rig.publish(new_invoice(number)), Deadline(30))
    assert rig.quipu.calls["POST /oauth/token"] == 1


def test_the_pdf_is_attached_when_asked(rig: Rig) -> None:
    rig.worker(attach_pdf=True).apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30))
    (invoice,) = rig.quipu.expense_invoices("F-2026-0042")
    (attachment,) = rig.quipu.attachments.values()
    assert attachment["book_entry_id"] == invoice.id
    assert attachment["content"].startswith(b"%PDF")


def test_two_workers_and_one_new_supplier_make_one_contact(rig: Rig) -> None:
    events = [rig.publish(new_invoice(n, provider_id="prv_207")) for n in (1, 2)]
    outcomes: list[Outcome] = []
    threads = [threading.Thread(target=lambda e=e: outcomes.append(apply_until_done(rig.worker(), e))) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [o.action for o in outcomes] == ["created", "created"]
    assert len(rig.quipu.contacts_with_tax_id("A46000001")) == 1


@pytest.fixture
def tight_rig(aws: Aws) -> Iterator[Rig]:
    yield from make_rig(aws, QuipuOptions(limit=5, window_seconds=1.0))


def test_429_bursts_are_honoured_and_nothing_is_lost(tight_rig: Rig) -> None:
    # Workers that do not know the limit (their limiter allows 100): Quipu answers 429s, they wait and go on.
    events = [tight_rig.publish(new_invoice(n)) for n in range(8)]
    for event in events:
        apply_until_done(tight_rig.worker(limit=100, window=1.0), event)
    assert tight_rig.quipu.rate_limited > 0
    assert all(len(tight_rig.quipu.expense_invoices(f"N-{n}")) == 1 for n in range(8))


def test_workers_sharing_the_limiter_never_meet_a_429(tight_rig: Rig) -> None:
    events = [tight_rig.publish(new_invoice(n)) for n in range(10)]
    halves = [events[0::2], events[1::2]]

    def run(batch: list[WebhookEvent]) -> None:
        # Each its own limiter object and DynamoDB client. What is tested is that they share the windows; the
        # margin covers how late a request may leave after its slot on this machine (a thread scheduled late on
        # a loaded 2-core runner is later than the default 0.15 s a Lambda allows for).
        worker = tight_rig.worker(limit=5, window=1.0, margin=0.5)
        for event in batch:
            apply_until_done(worker, event)

    threads = [threading.Thread(target=run, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert tight_rig.quipu.rate_limited == 0
    assert all(len(tight_rig.quipu.expense_invoices(f"N-{n}")) == 1 for n in range(10))
    arrivals = sorted(tight_rig.quipu.arrivals)
    assert all(later - earlier >= 1.0 for earlier, later in zip(arrivals, arrivals[5:], strict=False))


def test_owner_slug_prefixes_business_paths_but_not_the_token(aws: Aws) -> None:
    for slugged in make_rig(aws, QuipuOptions(limit=100, window_seconds=1.0, owner_slug="acme")):
        slugged.worker(owner_slug="acme").apply(slugged.publish(envelope("01_invoice_created.json")), Deadline(30))
        assert len(slugged.quipu.expense_invoices("F-2026-0042")) == 1


def _sqs_event(queue_arn: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"rh-{index}",
                "body": json.dumps(event),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "MessageGroupId": event["data"]["object"]["id"],
                    "MessageDeduplicationId": event["id"],
                    "SentTimestamp": "0",
                    "SenderId": "x",
                    "ApproximateFirstReceiveTimestamp": "0",
                    "SequenceNumber": str(index),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "eu-west-1",
            }
            for index, event in enumerate(events)
        ]
    }


def test_the_handler_syncs_a_batch_and_dead_letters_a_rejected_invoice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = Template.load(ROOT / "template.yaml")
    parameters = {
        **template.parameter_defaults(),
        "QuipuApiUrl": rig.quipu.base_url,
        "BuildNexionApiUrl": rig.buildnexion.base_url,
    }
    (spec,) = [f for f in template.functions if f.logical_id == "QuipuSyncFunction"]
    environment = intrinsics_for(template, parameters, rig.aws.provisioned).resolve(spec.environment)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    module: ModuleType = load_handler_module(ROOT / "functions" / "quipu_sync", "quipu_sync_app")
    module.worker.cache_clear()  # the handler's own cold start: settings from the environment, clients on moto
    bad = new_invoice(9)
    bad["data"]["object"]["lines"][0]["vat_percent"] = "121"
    good = envelope("01_invoice_created.json")
    for event in (good, bad):
        rig.publish(event)
    context = LocalLambdaContext("QuipuSyncFunction", 512, "req-1", int(time.time() * 1000) + 90_000)
    queue = rig.aws.provisioned.queues["QuipuQueue"]
    answer = module.lambda_handler(_sqs_event(queue.arn, [good, bad]), cast(Any, context))
    assert answer == {"batchItemFailures": []}
    assert len(rig.quipu.expense_invoices("F-2026-0042")) == 1
    (dead,) = rig.aws.queue_messages("QuipuDeadLetterQueue")
    assert json.loads(dead["Body"])["id"] == bad["id"]
    assert "vat_percent" in dead["MessageAttributes"]["error_message"]["StringValue"]
    module.worker.cache_clear()


def _waiting_client(rig: Rig, sleep: Any) -> tuple[QuipuClient, TokenStore]:
    """A client that finds the token lease held by another worker and no shared token."""
    table = rig.table()
    tokens = TokenStore(table, APP_ID)
    leases = Leases(table)
    assert leases.acquire(tokens.lease_name, "another-worker", 60)
    client = QuipuClient(
        rig.quipu.base_url, SecretStr(APP_ID), SecretStr(APP_SECRET), tokens=tokens, leases=leases, sleep=sleep
    )
    return client, tokens


def test_while_another_worker_renews_the_token_a_worker_waits_for_the_one_it_shares(rig: Rig) -> None:
    # Given another worker renewing, which shares its token during our third poll
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            now = time.time()
            tokens.put(AccessToken(SecretStr("renewed-elsewhere"), now, now + 3600))

    client, tokens = _waiting_client(rig, sleep)

    # When this worker needs a token, Then it uses the shared one without asking Quipu for its own
    assert client.access_token(Deadline(30)).value.get_secret_value() == "renewed-elsewhere"
    assert polls == [0.2, 0.2, 0.2]
    assert rig.quipu.calls["POST /oauth/token"] == 0


@pytest.mark.parametrize(("deadline_seconds", "waited"), [(3.0, 3.0), (60.0, 10.0)])
def test_a_renewer_that_never_shares_hands_the_message_back_within_the_deadline(
    rig: Rig, deadline_seconds: float, waited: float
) -> None:
    polls: list[float] = []
    client, _ = _waiting_client(rig, polls.append)
    with pytest.raises(RetryLater) as raised:
        client.access_token(Deadline(deadline_seconds, clock=lambda: 0.0))
    assert "renewing the access token" in str(raised.value)
    assert raised.value.retry_after == 2
    assert sum(polls) == pytest.approx(waited, abs=0.21)  # at most ten seconds, never past the deadline
    assert rig.quipu.calls["POST /oauth/token"] == 0


def test_a_422_on_a_number_another_buildnexion_invoice_holds_is_a_permanent_failure_never_an_adoption(
    rig: Rig,
) -> None:
    # Given a Quipu invoice synced for one BuildNexion invoice (carrying its marker tag)
    rig.worker().apply(rig.publish(envelope("01_invoice_created.json")), Deadline(30))
    (theirs,) = rig.quipu.expense_invoices("F-2026-0042")
    assert theirs.tags == "bn:inv_8f3k2"
    before = (theirs.due_dates, [i.id for i in theirs.items])
    # When a second BuildNexion invoice of the same supplier with the same number and year arrives
    second = envelope("01_invoice_created.json", id="inv_second", due_date="2026-12-31")
    second["id"] = "evt_second"
    with pytest.raises(SyncError) as caught:
        rig.worker().apply(rig.publish(second), Deadline(30))
    # Then it fails for good, saying why, and the first invoice is neither adopted nor changed
    assert not caught.value.retryable
    assert caught.value.code == "number_taken_by_another_invoice"
    assert f"Quipu invoice {theirs.id}" in caught.value.message
    assert "no tag bn:inv_second" in caught.value.message
    (still,) = rig.quipu.expense_invoices("F-2026-0042")
    assert (still.id, still.tags, (still.due_dates, [i.id for i in still.items])) == (theirs.id, theirs.tags, before)
    entry = rig.entry("inv_second")
    assert (entry.status, entry.remote_id, entry.error_code) == (
        SyncStatus.FAILED,
        None,
        "number_taken_by_another_invoice",
    )


def test_an_invoice_keyed_by_hand_with_our_number_is_not_adopted_after_a_crash(rig: Rig) -> None:
    # Given an intent left by a worker that died before its create reached Quipu
    crashing = rig.worker()

    def die(document: dict[str, Any], deadline: Deadline) -> Any:
        raise KeyboardInterrupt("killed before the request left")

    crashing.quipu.create_invoice = die  # type: ignore[method-assign,assignment]
    event = rig.publish(envelope("01_invoice_created.json"))
    with pytest.raises(KeyboardInterrupt):
        crashing.apply(event, Deadline(30))
    # and an invoice someone keyed into Quipu by hand with the same supplier, number and year (no marker)
    other = envelope("01_invoice_created.json", id="inv_by_hand")
    rig.worker().apply(rig.publish(other), Deadline(30))
    (by_hand,) = rig.quipu.expense_invoices("F-2026-0042")
    by_hand.tags = ""
    # When the redelivery looks before creating, Then the invoice found is not taken for ours
    with pytest.raises(SyncError) as caught:
        rig.worker().apply(event, Deadline(30))
    assert caught.value.code == "number_taken_by_another_invoice"
    assert rig.entry("inv_8f3k2").remote_id is None


def test_a_pdf_upload_that_timed_out_is_never_sent_again(rig: Rig) -> None:
    # Given an upload that reached Quipu but whose answer never came back
    worker = rig.worker(attach_pdf=True)
    real_attach = worker.quipu.attach

    def attach_then_time_out(*args: Any, **kwargs: Any) -> str:
        real_attach(*args, **kwargs)
        raise PlatformError("quipu", "POST /attachments timed out", retryable=True, code="timeout")

    worker.quipu.attach = attach_then_time_out  # type: ignore[method-assign]
    event = rig.publish(envelope("01_invoice_created.json"))
    with pytest.raises(PlatformError):
        worker.apply(event, Deadline(30))
    # When the message is retried, and when a later update arrives
    apply_until_done(rig.worker(attach_pdf=True), event)
    rig.worker(attach_pdf=True).apply(rig.publish(envelope("02_invoice_updated.json")), Deadline(30))
    # Then the PDF is attached once, and the ledger says its upload's outcome was unknown
    assert len(rig.quipu.attachments) == 1
    assert rig.entry("inv_8f3k2").details["attachment"] == "unknown"


def test_a_pdf_upload_quipu_refused_with_a_429_is_attached_on_the_retry(rig: Rig) -> None:
    worker = rig.worker(attach_pdf=True)

    def rate_limited(*_args: Any, **_kwargs: Any) -> str:
        raise PlatformError("quipu", "too many requests", status=429, retryable=True, retry_after=0.0)

    worker.quipu.attach = rate_limited  # type: ignore[method-assign]
    event = rig.publish(envelope("01_invoice_created.json"))
    with pytest.raises(PlatformError):
        worker.apply(event, Deadline(30))
    assert rig.quipu.attachments == {}
    # The retry of the same event attaches it (the invoice is current, its PDF is not)
    apply_until_done(rig.worker(attach_pdf=True), event)
    (attachment,) = rig.quipu.attachments.values()
    assert attachment["book_entry_id"] == rig.entry("inv_8f3k2").remote_id
    assert "attachment_id" in rig.entry("inv_8f3k2").details
