"""The FacturaDirecta exporter's wiring: clients built from the secrets, rebuilt on a rotation, read through AWS."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest

from invoice_bridge.aws import AwsClients
from invoice_bridge.errors import ConfigurationError
from invoice_bridge.facturadirecta.exporter import FacturaDirectaExporter
from invoice_bridge.facturadirecta.settings import FacturaDirectaSettings
from invoice_bridge.http import DEFAULT_TIMEOUT
from tests.unit.test_facturadirecta_client import BASE

ENVIRONMENT: Mapping[str, str] = {
    **BASE,
    "FACTURADIRECTA_READ_TIMEOUT_SECONDS": "25",
    "SECRETS_MAX_AGE_SECONDS": "0",  # every read sees the current value: a rotation applies at once
}


class SecretsManager:
    """Secrets Manager as Powertools calls it: the secrets' current values, by id."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get_secret_value(self, SecretId: str, **_options: Any) -> dict[str, str]:  # noqa: N803 (boto3's name)
        value = self.values[SecretId]
        return {"SecretString": value if isinstance(value, str) else json.dumps(value)}


class Clients(AwsClients):
    """AWS clients with Secrets Manager answered in process (SQS and DynamoDB are not called here)."""

    def __init__(self, secrets: SecretsManager) -> None:
        super().__init__()
        self._secrets = secrets

    def secretsmanager(self) -> Any:
        return self._secrets

    def sqs(self) -> Any:
        return object()

    def dynamodb(self) -> Any:
        return object()


def wired(**overrides: str) -> tuple[Any, SecretsManager]:
    secrets = SecretsManager(
        {
            "bn": {"api_key": "bn_key_1", "webhook_secrets": ["whsec_1"]},
            "fd": {"account": "miempresa", "api_token": "tok_1"},
        }
    )
    settings = FacturaDirectaSettings.from_env({**ENVIRONMENT, **overrides})
    return FacturaDirectaExporter.from_settings(settings, Clients(secrets)), secrets


def test_facturadirecta_client_is_on_the_accounts_url_with_the_configured_read_timeout() -> None:
    function, _ = wired()
    api = function.exporter._api()
    assert api.base_url == "https://miempresa.facturadirecta.com"
    assert api.timeout == (DEFAULT_TIMEOUT[0], 25.0)


def test_a_configured_api_url_wins_over_the_account() -> None:
    function, _ = wired(FACTURADIRECTA_API_URL="http://127.0.0.1:9")
    assert function.exporter._api().base_url == "http://127.0.0.1:9"


def test_clients_are_kept_while_the_secrets_stay_and_rebuilt_when_they_rotate() -> None:
    function, secrets = wired()
    exporter = function.exporter
    api, buildnexion = exporter._api(), exporter._buildnexion()
    assert exporter._api() is api
    assert exporter._buildnexion() is buildnexion
    # When both secrets rotate (a new account, a new BuildNexion key)
    secrets.values["fd"] = {"account": "otraempresa", "api_token": "tok_2"}
    secrets.values["bn"] = {"api_key": "bn_key_2", "webhook_secrets": ["whsec_1"]}
    # Then each client is built again with the new values
    rotated = exporter._api()
    assert rotated is not api
    assert rotated.base_url == "https://otraempresa.facturadirecta.com"
    assert exporter._buildnexion() is not buildnexion


def test_a_token_rotation_applies_to_the_next_call_without_a_new_client() -> None:
    function, secrets = wired()
    api = function.exporter._api()
    secrets.values["fd"] = {"account": "miempresa", "api_token": "tok_2"}
    assert function.exporter._api() is api
    assert api.auth_headers() == {"Authorization": "Basic " + base64.b64encode(b"tok_2:x").decode()}


@pytest.mark.parametrize(("secret_id", "label"), [("fd", "facturadirecta"), ("bn", "buildnexion")])
def test_a_broken_secret_is_named_in_the_error(secret_id: str, label: str) -> None:
    function, secrets = wired()
    secrets.values[secret_id] = "[]"
    client = function.exporter._api if secret_id == "fd" else function.exporter._buildnexion
    with pytest.raises(ConfigurationError, match=f"^secret {label}"):
        client()
