"""moto (mock_aws, in process): the template's resources, and the receiver's environment resolved from it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import boto3
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from invoice_bridge.buildnexion.signature import signature_header
from invoice_bridge.tuimprenta.webhook import compute_signature as tuimprenta_signature
from sandbox.aws_local import FAKE_CREDENTIALS, Provisioned, Provisioner, intrinsics_for, make_dynamodb_writes_atomic
from sandbox.cfn import REGION, Template
from sandbox.lambda_host import LocalLambdaContext
from sandbox.settings import LocalSettings
from tests.conftest import ROOT, load_event

WEBHOOK_SECRETS = ["whsec_integration_old", "whsec_integration_new"]
TUIMPRENTA_SECRET = "tui_integration_secret"


@dataclass
class Aws:
    """The provisioned template and clients on the mock."""

    provisioned: Provisioned
    environment: dict[str, str]
    session: boto3.session.Session

    def queue_messages(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message on a queue, received once with all attributes (no consumer exists yet)."""
        sqs = self.session.client("sqs")
        url = self.provisioned.queues[logical_id].url
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)  # type: ignore[arg-type]

    def depth(self, logical_id: str) -> int:
        """Visible plus in-flight messages of a queue."""
        attributes = self.session.client("sqs").get_queue_attributes(
            QueueUrl=self.provisioned.queues[logical_id].url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The template provisioned on moto, the receiver's environment set as Lambda would set it."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    make_dynamodb_writes_atomic()  # as DynamoDB: a conditional write is granted to one of two racing workers
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        template = Template.load(ROOT / "template.yaml")
        secrets = LocalSettings.from_env(
            {"BUILDNEXION_WEBHOOK_SECRET": ",".join(WEBHOOK_SECRETS), "TUIMPRENTA_WEBHOOK_SECRET": TUIMPRENTA_SECRET}
        ).secret_values()
        provisioned = Provisioner(
            session.client("sqs"), session.client("dynamodb"), session.client("secretsmanager")
        ).provision(template, secrets)
        intrinsics = intrinsics_for(template, template.parameter_defaults(), provisioned)
        (spec,) = [f for f in template.functions if f.logical_id == "WebhookReceiverFunction"]
        environment = {k: str(v) for k, v in intrinsics.resolve(spec.environment).items()}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        yield Aws(provisioned, environment, session)


@pytest.fixture
def handler(aws: Aws, receiver_app: ModuleType) -> Iterator[ModuleType]:
    """The receiver module with a fresh cold start (settings and clients built at the first call)."""
    receiver_app.receiver.cache_clear()
    yield receiver_app
    receiver_app.receiver.cache_clear()


def context() -> LambdaContext:
    """A Lambda context with ten seconds left (the local stack's stand-in, typed as Powertools expects)."""
    local = LocalLambdaContext("WebhookReceiverFunction", 512, "req-1", int(time.time() * 1000) + 10_000)
    return cast(LambdaContext, local)


def apigw_event(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """events/apigw/buildnexion_webhook.json with another path, body and signature headers."""
    event = load_event("apigw/buildnexion_webhook.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"POST {path}"
    base_headers = {k: v for k, v in event["headers"].items() if not k.endswith("-signature")}
    event["headers"] = {**base_headers, **{k.lower(): v for k, v in headers.items()}}
    try:
        event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
    except UnicodeDecodeError:
        # API Gateway hands a body that is not UTF-8 text to the function base64-encoded.
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def signed_buildnexion(body: bytes, secrets: list[str] | None = None, timestamp: int | None = None) -> dict[str, Any]:
    """A BuildNexion delivery of `body`, signed now (or at `timestamp`)."""
    header = signature_header(
        secrets or WEBHOOK_SECRETS[-1:], int(time.time()) if timestamp is None else timestamp, body
    )
    return apigw_event("/webhooks/buildnexion", body, {"BuildNexion-Signature": header})


def signed_tuimprenta(body: bytes, secret: str = TUIMPRENTA_SECRET) -> dict[str, Any]:
    """A tuimprenta delivery of `body`."""
    return apigw_event("/webhooks/tuimprenta", body, {"X-Tuimprenta-Signature": tuimprenta_signature(secret, body)})


def invoke(handler: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Call the real lambda_handler; (status, JSON body)."""
    response = handler.lambda_handler(event, context())
    return int(response["statusCode"]), json.loads(response["body"])


def poller_environment(aws: Aws, tuimprenta_url: str, **overrides: str) -> dict[str, str]:
    """The tuimprenta poller's environment as the template sets it, on moto, with quick test timings."""
    from sandbox.stack import localize_api_urls

    template = Template.load(ROOT / "template.yaml")
    parameters = {**template.parameter_defaults(), "TuimprentaApiUrl": tuimprenta_url}
    intrinsics = intrinsics_for(template, parameters, aws.provisioned)
    (spec,) = [f for f in template.functions if f.logical_id == "TuimprentaPollerFunction"]
    environment = {
        k: str(v)
        for k, v in intrinsics.resolve(
            localize_api_urls(spec.environment, {"WebhookApi"}, "http://127.0.0.1:9")
        ).items()
    }
    quick = {
        "RUN_SECONDS": "20",
        "POLL_BASE_SECONDS": "0.1",
        "POLL_MAX_SECONDS": "0.5",
        "BATCH_WINDOW_SECONDS": "0",
        "HINT_CHECK_SECONDS": "0.05",
    }
    return {**environment, **quick, **overrides}
