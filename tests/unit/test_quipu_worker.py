"""QuipuSyncFunction's wiring: the sync is built from the settings and rebuilt only when a secret changes."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from invoice_bridge.aws import AwsClients
from invoice_bridge.errors import ConfigurationError
from invoice_bridge.limiter import DynamoRateLimiter, limiter_key
from invoice_bridge.quipu.settings import QuipuSyncSettings, VoidMode
from invoice_bridge.quipu.worker import QuipuWorker


class FakeSecretsManager:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {
            "quipu-secret": {"app_id": "app-1", "app_secret": "s-1"},
            "bn-secret": {"api_key": "k-1", "webhook_secrets": ["w"]},
        }

    def get_secret_value(self, SecretId: str, **_: Any) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return {"SecretString": json.dumps(self.values[SecretId])}


class FakeClients:
    def __init__(self) -> None:
        self.secrets = FakeSecretsManager()
        self.table = object()

    def dynamodb(self) -> Any:
        return self.table

    def sqs(self) -> Any:
        return object()

    def secretsmanager(self) -> Any:
        return self.secrets


@pytest.fixture
def settings() -> QuipuSyncSettings:
    return QuipuSyncSettings.from_env(
        {
            "STATE_TABLE_NAME": "state",
            "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/quipu.fifo",
            "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/quipu-dlq.fifo",
            "MAX_RECEIVE_COUNT": "10",
            "BUILDNEXION_API_URL": "https://api.buildnexion.test/v1",
            "BUILDNEXION_SECRET_ARN": "bn-secret",
            "QUIPU_API_URL": "https://getquipu.test",
            "QUIPU_SECRET_ARN": "quipu-secret",
            "QUIPU_OWNER_SLUG": "acme",
            "QUIPU_VOID_MODE": "delete",
            "QUIPU_ATTACH_PDF": "true",
            "SECRETS_MAX_AGE_SECONDS": "0",
        }
    )


def test_the_sync_follows_the_settings_and_shares_quipus_limit(settings: QuipuSyncSettings) -> None:
    clients = FakeClients()
    worker = QuipuWorker.from_settings(settings, cast(AwsClients, clients))
    assert worker.settings is settings
    sync = worker.sync()
    assert (sync.void_mode, sync.attach_pdf) == (VoidMode.DELETE, True)
    assert sync.quipu._path("/invoices") == "/acme/invoices"
    limiter = sync.quipu.limiter
    assert isinstance(limiter, DynamoRateLimiter)
    table = limiter._table
    assert (table.client, table.table_name, limiter._key) == (clients.table, "state", limiter_key("quipu", "app-1"))
    assert (limiter.limit, limiter.platform) == (5, "quipu")


def test_the_sync_is_rebuilt_only_when_a_secret_changes(settings: QuipuSyncSettings) -> None:
    clients = FakeClients()
    worker = QuipuWorker.from_settings(settings, cast(AwsClients, clients))
    first = worker.sync()
    assert worker.sync() is first
    clients.secrets.values["quipu-secret"] = {"app_id": "app-1", "app_secret": "s-2"}  # rotated
    second = worker.sync()
    assert second is not first
    assert worker.sync() is second


def test_a_malformed_secret_names_which_one(settings: QuipuSyncSettings) -> None:
    clients = FakeClients()
    clients.secrets.values["quipu-secret"] = {"app_id": "app-1"}
    with pytest.raises(ConfigurationError) as caught:
        QuipuWorker.from_settings(settings, cast(AwsClients, clients)).sync()
    assert caught.value.name == "secret quipu field app_secret"
    clients.secrets.values["quipu-secret"] = {"app_id": "app-1", "app_secret": "s"}
    clients.secrets.values["bn-secret"] = {"webhook_secrets": ["w"]}
    with pytest.raises(ConfigurationError) as caught:
        QuipuWorker.from_settings(settings, cast(AwsClients, clients)).sync()
    assert caught.value.name == "secret buildnexion field api_key"
