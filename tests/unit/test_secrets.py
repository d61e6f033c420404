"""Secrets: validated per platform; errors name the secret and field, never a value."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.stub import Stubber

from invoice_bridge.errors import ConfigurationError, DependencyUnavailable
from invoice_bridge.secrets import BuildNexionSecret, SecretReader

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bn"
LEAKY = "whsec_must_never_show_up"


@pytest.fixture
def stubbed() -> Iterator[tuple[SecretReader, Stubber]]:
    client = boto3.client("secretsmanager", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield SecretReader(SecretsProvider(boto3_client=client), max_age_seconds=0), stubber


def answer(stubber: Stubber, secret_string: str) -> None:
    stubber.add_response(
        "get_secret_value", {"ARN": ARN, "Name": "bn", "SecretString": secret_string}, {"SecretId": ARN}
    )


def test_reads_and_validates(stubbed: tuple[SecretReader, Stubber]) -> None:
    reader, stubber = stubbed
    answer(stubber, json.dumps({"api_key": "bn_live_x", "webhook_secrets": [LEAKY, "whsec_2"]}))
    secret = reader.read(ARN, BuildNexionSecret, "buildnexion")
    assert [s.get_secret_value() for s in secret.webhook_secrets] == [LEAKY, "whsec_2"]
    assert LEAKY not in repr(secret)
    assert LEAKY not in str(secret)


def test_empty_list_names_the_field(stubbed: tuple[SecretReader, Stubber]) -> None:
    reader, stubber = stubbed
    answer(stubber, json.dumps({"api_key": "bn_live_x", "webhook_secrets": []}))
    with pytest.raises(ConfigurationError) as caught:
        reader.read(ARN, BuildNexionSecret, "buildnexion")
    assert caught.value.name == "secret buildnexion field webhook_secrets"


def test_missing_api_key_is_named_without_echoing_the_other_values(stubbed: tuple[SecretReader, Stubber]) -> None:
    reader, stubber = stubbed
    answer(stubber, json.dumps({"webhook_secrets": [LEAKY]}))
    with pytest.raises(ConfigurationError) as caught:
        reader.read(ARN, BuildNexionSecret, "buildnexion")
    assert caught.value.name == "secret buildnexion field api_key"
    assert LEAKY not in str(caught.value)


def test_wrongly_typed_value_is_not_echoed(stubbed: tuple[SecretReader, Stubber]) -> None:
    reader, stubber = stubbed
    answer(stubber, json.dumps({"api_key": "k", "webhook_secrets": LEAKY}))
    with pytest.raises(ConfigurationError) as caught:
        reader.read(ARN, BuildNexionSecret, "buildnexion")
    assert LEAKY not in str(caught.value)


@pytest.mark.parametrize("secret_string", ["not json", "[1, 2]"])
def test_not_a_json_object(stubbed: tuple[SecretReader, Stubber], secret_string: str) -> None:
    reader, stubber = stubbed
    answer(stubber, secret_string)
    with pytest.raises(ConfigurationError, match="secret buildnexion: is not a JSON object"):
        reader.read(ARN, BuildNexionSecret, "buildnexion")


def test_aws_failure_is_a_retryable_dependency_error(stubbed: tuple[SecretReader, Stubber]) -> None:
    reader, stubber = stubbed
    stubber.add_client_error("get_secret_value", service_error_code="ThrottlingException", http_status_code=400)
    with pytest.raises(DependencyUnavailable, match="secret buildnexion") as caught:
        reader.read(ARN, BuildNexionSecret, "buildnexion")
    assert "ThrottlingException" in str(caught.value)  # what AWS said, for the operator


def secret_reader(max_age_seconds: int) -> tuple[SecretReader, Stubber]:
    client = boto3.client("secretsmanager", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    return SecretReader(SecretsProvider(boto3_client=client), max_age_seconds=max_age_seconds), Stubber(client)


@pytest.mark.parametrize(("max_age", "calls"), [(0, 2), (60, 1)])
def test_a_value_is_reused_for_max_age_seconds_only(max_age: int, calls: int) -> None:
    # Given a reader with a cache lifetime, and Secrets Manager answering exactly `calls` times
    reader, stubber = secret_reader(max_age)
    with stubber:
        for _ in range(calls):
            answer(stubber, json.dumps({"api_key": "bn_live_x", "webhook_secrets": ["whsec_1"]}))
        # When the secret is read twice in a row, then Secrets Manager was asked `calls` times, no more, no less
        for _ in range(2):
            assert reader.read(ARN, BuildNexionSecret, "buildnexion").api_key.get_secret_value() == "bn_live_x"
        stubber.assert_no_pending_responses()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cached() -> Iterator[tuple[SecretReader, Stubber, Clock]]:
    client = boto3.client("secretsmanager", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    clock = Clock()
    with Stubber(client) as stubber:
        yield SecretReader(SecretsProvider(boto3_client=client), max_age_seconds=3600, clock=clock), stubber, clock


def keys(secret: BuildNexionSecret) -> list[str]:
    return [s.get_secret_value() for s in secret.webhook_secrets]


def test_a_container_reads_a_secret_once_while_no_platform_refuses_it(
    cached: tuple[SecretReader, Stubber, Clock],
) -> None:
    reader, stubber, clock = cached
    answer(stubber, json.dumps({"api_key": "k1", "webhook_secrets": ["w1"]}))
    for _ in range(5):
        clock.now += 60
        assert keys(reader.read(ARN, BuildNexionSecret, "buildnexion")) == ["w1"]
    stubber.assert_no_pending_responses()  # one call, for five reads over five minutes


def test_a_refusal_reads_the_secret_again_but_not_twice_a_minute(cached: tuple[SecretReader, Stubber, Clock]) -> None:
    from invoice_bridge.secrets import credentials_refused

    reader, stubber, clock = cached
    answer(stubber, json.dumps({"api_key": "k1", "webhook_secrets": ["w1"]}))
    reader.read(ARN, BuildNexionSecret, "buildnexion")
    # Refused 10 s after the read: the value is fresh, a flood of 401s must not turn into a flood of reads.
    clock.now += 10
    assert reader.refused() is False
    credentials_refused()
    assert keys(reader.read(ARN, BuildNexionSecret, "buildnexion")) == ["w1"]
    # A minute after the read, a platform's 401/403 makes the next read fetch the rotated value.
    clock.now += 50
    answer(stubber, json.dumps({"api_key": "k2", "webhook_secrets": ["w2"]}))
    credentials_refused()
    assert keys(reader.read(ARN, BuildNexionSecret, "buildnexion")) == ["w2"]
    assert keys(reader.read(ARN, BuildNexionSecret, "buildnexion")) == ["w2"]  # and keeps it
    stubber.assert_no_pending_responses()


def test_a_malformed_secret_is_read_again_at_the_next_read(cached: tuple[SecretReader, Stubber, Clock]) -> None:
    reader, stubber, _clock = cached
    answer(stubber, json.dumps({"api_key": "k1", "webhook_secrets": []}))
    with pytest.raises(ConfigurationError):
        reader.read(ARN, BuildNexionSecret, "buildnexion")
    answer(stubber, json.dumps({"api_key": "k1", "webhook_secrets": ["w1"]}))  # the operator fills it
    assert keys(reader.read(ARN, BuildNexionSecret, "buildnexion")) == ["w1"]
