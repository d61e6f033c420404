"""Settings are validated once and every error names the variable, never a secret."""

from __future__ import annotations

import json

import pytest

from invoice_bridge.config import DEFAULT_ROUTING, Destination, ReceiverSettings
from invoice_bridge.errors import ConfigurationError
from sandbox.settings import LocalSettings

VALID = {
    "ROUTING_TABLE": json.dumps({k: v.value for k, v in DEFAULT_ROUTING.items()}),
    "QUIPU_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo",
    "TUIMPRENTA_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/t",
    "FACTURADIRECTA_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/f.fifo",
    "STATE_TABLE_NAME": "state",
    "BUILDNEXION_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bn",
    "TUIMPRENTA_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tui",
}


def error_for(env: dict[str, str]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        ReceiverSettings.from_env(env)
    return caught.value


def test_valid_environment_parses_routing_and_queues() -> None:
    settings = ReceiverSettings.from_env(VALID)
    assert settings.routing_table["sales_invoice.created"] is Destination.TUIMPRENTA
    assert settings.queue_urls()[Destination.QUIPU].endswith(".fifo")
    assert settings.secrets_max_age_seconds == 60


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_missing_variable_is_named(name: str) -> None:
    env = {k: v for k, v in VALID.items() if k != name}
    error = error_for(env)
    assert error.name == name
    assert "required" in error.problem.lower()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QUIPU_QUEUE_URL", "not a url"),
        ("STATE_TABLE_NAME", ""),
        ("SECRETS_MAX_AGE_SECONDS", "soon"),
        ("SECRETS_MAX_AGE_SECONDS", "-1"),
        ("IDEMPOTENCY_TTL_SECONDS", "5"),
    ],
)
def test_malformed_values_are_named(name: str, value: str) -> None:
    assert error_for({**VALID, name: value}).name == name


def test_routing_table_that_is_not_json() -> None:
    error = error_for({**VALID, "ROUTING_TABLE": "{invoice.created: quipu"})
    assert error.name == "ROUTING_TABLE"
    assert "JSON" in error.problem


def test_routing_entry_to_an_unknown_destination_names_the_entry_and_the_choices() -> None:
    error = error_for({**VALID, "ROUTING_TABLE": json.dumps({"invoice.created": "holded"})})
    assert (
        str(error) == 'ROUTING_TABLE["invoice.created"]: unknown destination; known: quipu, tuimprenta, facturadirecta'
    )


def test_routing_an_object_the_destination_cannot_take_is_refused() -> None:
    error = error_for({**VALID, "ROUTING_TABLE": json.dumps({"provider.updated": "quipu"})})
    assert str(error) == 'ROUTING_TABLE: "provider.updated" cannot go to quipu, which takes invoice events only'


def test_routing_table_may_leave_event_types_out() -> None:
    settings = ReceiverSettings.from_env({**VALID, "ROUTING_TABLE": json.dumps({"invoice.created": "quipu"})})
    assert list(settings.routing_table) == ["invoice.created"]


def test_routing_key_that_is_not_an_event_type() -> None:
    error = error_for({**VALID, "ROUTING_TABLE": json.dumps({"Invoice Created": "quipu"})})
    assert error.name.startswith("ROUTING_TABLE")


def test_default_routing_matches_the_template_parameter() -> None:
    from sandbox.cfn import Template
    from tests.conftest import ROOT

    template_default = json.loads(Template.load(ROOT / "template.yaml").parameter_defaults()["RoutingTable"])
    assert template_default == {k: v.value for k, v in DEFAULT_ROUTING.items()}


def test_local_settings_defaults_work_with_nothing_set() -> None:
    settings = LocalSettings.from_env({})
    assert settings.schedule_seconds == 5
    assert all(url is None for url in settings.api_urls().values())
    assert settings.secret_values()["BuildNexionSecret"]["webhook_secrets"] == settings.webhook_secrets()


def test_local_settings_rotation_and_malformed_schedule() -> None:
    settings = LocalSettings.from_env({"BUILDNEXION_WEBHOOK_SECRET": "whsec_old, whsec_new"})
    assert settings.webhook_secrets() == ["whsec_old", "whsec_new"]
    with pytest.raises(ConfigurationError) as caught:
        LocalSettings.from_env({"LOCAL_SCHEDULE_SECONDS": "0"})
    assert caught.value.name == "LOCAL_SCHEDULE_SECONDS"


def test_a_platform_not_deployed_has_no_queue_and_its_events_are_not_routed() -> None:
    settings = ReceiverSettings.from_env({**VALID, "QUIPU_QUEUE_URL": "", "TUIMPRENTA_SECRET_ARN": ""})
    assert set(settings.queue_urls()) == {Destination.TUIMPRENTA, Destination.FACTURADIRECTA}
    assert settings.routes() == {k: v for k, v in DEFAULT_ROUTING.items() if v is not Destination.QUIPU}
    assert settings.routing_table == DEFAULT_ROUTING  # the parameter as given: only the deployed part is used
    assert error_for({**VALID, "QUIPU_QUEUE_URL": "not a url"}).name == "QUIPU_QUEUE_URL"
