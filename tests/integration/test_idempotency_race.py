"""Two deliveries of one event racing each other: both answered 200, the event enqueued once; what a delivery
costs in DynamoDB calls."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.signature import signature_header
from invoice_bridge.config import ReceiverSettings
from invoice_bridge.observability import metrics
from invoice_bridge.receiver import Receipt, WebhookReceiver
from tests.conftest import load_event
from tests.integration.conftest import WEBHOOK_SECRETS, Aws


class HeldSqs:
    """An SQS client whose first send waits until the test lets it go."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sends = 0

    def send_message(self, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == 1:
            self.entered.set()
            assert self.release.wait(timeout=30), "the test never released the first delivery"
        return self._client.send_message(**kwargs)


class HeldClients(AwsClients):
    """Real (mocked) clients, with the SQS one held."""

    def __init__(self, aws: Aws) -> None:
        super().__init__(aws.session)
        self.held = HeldSqs(aws.session.client("sqs"))

    def sqs(self) -> Any:
        return self.held


def test_concurrent_double_delivery_enqueues_once(aws: Aws, log_stream: io.StringIO) -> None:
    # Given a receiver whose first SendMessage is held mid-flight (and no metric left over from other tests)
    metrics.clear_metrics()
    clients = HeldClients(aws)
    receiver = WebhookReceiver.from_settings(ReceiverSettings.from_env(aws.environment), clients)
    body = json.dumps(load_event("buildnexion/01_invoice_created.json")).encode()

    def deliver() -> Receipt:
        return receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body), body)

    with ThreadPoolExecutor(max_workers=1) as pool:
        # When the first delivery is inside SendMessage and the second arrives
        first = pool.submit(deliver)
        assert clients.held.entered.wait(timeout=30)
        second = deliver()
        clients.held.release.set()
        first_receipt = first.result(timeout=30)

    # Then one of them is accepted and the other told it is a duplicate, answered as any duplicate is (the
    # event and where it goes, so BuildNexion's log reads the same) ...
    assert sorted([first_receipt.outcome, second.outcome]) == ["accepted", "duplicate"]
    assert first_receipt.as_body() | {"status": "x"} == second.as_body() | {"status": "x"}
    # ... both sends reached SQS (the record is written once the message is on the queue), and the FIFO queue's
    # deduplication id, the event id, kept one message
    assert clients.held.sends == 2
    assert aws.depth("QuipuQueue") == 1
    # and the loser was logged and counted as a duplicate
    messages = [json.loads(line)["message"] for line in log_stream.getvalue().splitlines()]
    assert "event enqueued by a concurrent delivery too" in messages
    assert "WebhookDuplicate" in metrics.metric_set
    metrics.clear_metrics()


def test_a_failed_enqueue_leaves_the_event_to_be_retried(aws: Aws) -> None:
    class FailingSqs:
        def send_message(self, **kwargs: Any) -> Any:
            raise ConnectionError("SQS unreachable")

    class FailingClients(AwsClients):
        def sqs(self) -> Any:
            return FailingSqs()

    body = json.dumps(load_event("buildnexion/08_purchase_order_created.json")).encode()
    header = signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body)
    settings = ReceiverSettings.from_env(aws.environment)

    # Given an enqueue that fails, the delivery fails (BuildNexion will retry it) ...
    failing = WebhookReceiver.from_settings(settings, FailingClients(aws.session))
    with pytest.raises(ConnectionError):
        failing.receive_buildnexion(header, body)

    # ... and the retry is not mistaken for a duplicate: it is enqueued.
    healthy = WebhookReceiver.from_settings(settings, AwsClients(aws.session))
    assert healthy.receive_buildnexion(header, body).outcome == "accepted"
    assert aws.depth("FacturaDirectaQueue") == 1


class CountingClients(AwsClients):
    """Real (mocked) clients that count the operations each one is asked for."""

    def __init__(self, aws: Aws) -> None:
        super().__init__(aws.session)
        self.operations: list[tuple[str, str]] = []

    def _counted(self, client: Any) -> Any:
        service = client.meta.service_model.service_name

        def record(model: Any, **_: Any) -> None:
            self.operations.append((service, model.name))

        client.meta.events.register("before-call.*.*", record)
        return client

    def dynamodb(self) -> Any:
        return self._counted(super().dynamodb())

    def secretsmanager(self) -> Any:
        return self._counted(super().secretsmanager())


def test_the_receiver_reads_secrets_and_dedupes_through_the_clients_it_is_given(aws: Aws) -> None:
    # Given a receiver built on clients of its own (the local stack's point at the local endpoints)
    clients = CountingClients(aws)
    receiver = WebhookReceiver.from_settings(ReceiverSettings.from_env(aws.environment), clients)
    body = json.dumps(load_event("buildnexion/01_invoice_created.json")).encode()
    # When a delivery arrives
    receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body), body)
    # Then the secret and the dedupe record went through those clients, not clients built elsewhere
    assert ("secretsmanager", "GetSecretValue") in clients.operations
    assert ("dynamodb", "PutItem") in clients.operations


def test_a_delivery_costs_one_read_and_one_write_and_a_redelivery_one_read(aws: Aws) -> None:
    # Given a receiver whose DynamoDB calls are counted
    clients = CountingClients(aws)
    receiver = WebhookReceiver.from_settings(ReceiverSettings.from_env(aws.environment), clients)
    body = json.dumps(load_event("buildnexion/01_invoice_created.json")).encode()

    def dynamodb_calls() -> list[str]:
        calls = [name for service, name in clients.operations if service == "dynamodb"]
        clients.operations.clear()
        return calls

    # When an event is delivered, then its record is read and written once (no in-progress record to complete)
    assert receiver.receive_buildnexion(
        signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body), body
    ).outcome == ("accepted")
    assert dynamodb_calls() == ["GetItem", "PutItem"]
    # and when BuildNexion delivers it again, the read answers it: nothing written, nothing sent
    receipt = receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()) + 5, body), body)
    assert receipt.outcome == "duplicate"
    assert dynamodb_calls() == ["GetItem"]
    assert aws.depth("QuipuQueue") == 1
