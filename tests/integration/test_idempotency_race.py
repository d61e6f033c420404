"""Two deliveries of one event racing each other: both answered 200, the event enqueued once."""

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
from tests.integration.conftest import WEBHOOK_SECRETS, Aws, context


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
    receiver.register_lambda_context(context())
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

    # Then the first enqueued it, the second was told it is a duplicate, and one message exists
    assert first_receipt.outcome == "accepted"
    assert second.outcome == "duplicate"
    # answered as any duplicate is: the event and where it goes, so BuildNexion's log reads the same
    assert second.as_body() == first_receipt.as_body() | {"status": "duplicate"}
    assert clients.held.sends == 1
    assert aws.depth("QuipuQueue") == 1
    # and the second was logged and counted as a duplicate
    messages = [json.loads(line)["message"] for line in log_stream.getvalue().splitlines()]
    assert "event is being enqueued by a concurrent delivery" in messages
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
    failing.register_lambda_context(context())
    with pytest.raises(ConnectionError):
        failing.receive_buildnexion(header, body)

    # ... and the retry is not mistaken for a duplicate: it is enqueued.
    healthy = WebhookReceiver.from_settings(settings, AwsClients(aws.session))
    healthy.register_lambda_context(context())
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
    receiver.register_lambda_context(context())
    body = json.dumps(load_event("buildnexion/01_invoice_created.json")).encode()
    # When a delivery arrives
    receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body), body)
    # Then the secret and the idempotency record went through those clients, not clients built elsewhere
    assert ("secretsmanager", "GetSecretValue") in clients.operations
    assert ("dynamodb", "PutItem") in clients.operations
