"""A stack deployed without a platform (Deploy<Platform>=false): its events are answered "ignored" and nothing
is enqueued for it; without tuimprenta, its webhook route refuses deliveries with 400 naming why."""

from __future__ import annotations

import json
import time

import pytest

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.signature import signature_header
from invoice_bridge.config import ReceiverSettings
from invoice_bridge.errors import InvalidPayload
from invoice_bridge.receiver import WebhookReceiver
from tests.conftest import load_event
from tests.integration.conftest import WEBHOOK_SECRETS, Aws


def receiver_without(aws: Aws, **empty: str) -> WebhookReceiver:
    settings = ReceiverSettings.from_env({**aws.environment, **empty})
    return WebhookReceiver.from_settings(settings, AwsClients(aws.session))


def test_an_event_for_a_platform_not_deployed_is_ignored_and_enqueues_nothing(aws: Aws) -> None:
    receiver = receiver_without(aws, QUIPU_QUEUE_URL="")
    body = json.dumps(load_event("buildnexion/01_invoice_created.json")).encode()
    receipt = receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), body), body)
    assert receipt.as_body() == {"status": "ignored", "event_id": "evt_01JDEMO0000000000000000001"}
    assert aws.depth("QuipuQueue") == 0
    po = json.dumps(load_event("buildnexion/08_purchase_order_created.json")).encode()
    answer = receiver.receive_buildnexion(signature_header(WEBHOOK_SECRETS[-1:], int(time.time()), po), po)
    assert answer.as_body()["status"] == "accepted"  # the platforms deployed still get theirs


def test_without_tuimprenta_its_webhook_route_refuses_with_the_reason(aws: Aws) -> None:
    receiver = receiver_without(aws, TUIMPRENTA_QUEUE_URL="", TUIMPRENTA_SECRET_ARN="")
    with pytest.raises(InvalidPayload, match="tuimprenta is not deployed on this stack"):
        receiver.receive_tuimprenta("sha256=00", json.dumps(load_event("tuimprenta/batch_completed.json")).encode())
