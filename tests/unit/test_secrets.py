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
