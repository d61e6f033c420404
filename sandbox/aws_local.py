"""moto in server mode plays SQS, DynamoDB and Secrets Manager; resources come from template.yaml."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from sandbox.cfn import ACCOUNT_ID, REGION, Intrinsics, Template, TemplateError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
STACK = "invoice-bridge-local"


@dataclass(frozen=True)
class QueueInfo:
    """A queue made from the template."""

    logical_id: str
    url: str
    arn: str
    name: str
    fifo: bool
    dead_letter: str | None  # logical id of its DLQ


@dataclass
class Provisioned:
    """What the template became locally: values for Ref and Fn::GetAtt, and the queues."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    queues: dict[str, QueueInfo] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


_ATOMIC_WRITES = threading.RLock()
_WRITE_METHODS = ("put_item", "update_item", "delete_item", "transact_write_items")


def make_dynamodb_writes_atomic() -> None:
    """Have moto apply each DynamoDB write, condition check included, as one step, as DynamoDB does.

    moto checks a condition expression and then writes, with nothing in between to stop a concurrent
    request: two workers could both win a conditional put (a lease, a ledger version) that DynamoDB
    would grant to one. Everything here that is exactly-once rests on those conditions. Idempotent.
    """
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITE_METHODS:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_atomic", False):
            continue

        def atomic(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _ATOMIC_WRITES:
                return __method(self, *args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


class LocalAws:
    """An in-process moto server on a loopback port, and clients pointed at it."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> None:
        """Start moto and remember its endpoint."""
        # moto's server logs every request through werkzeug; the stack reports what matters instead.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        make_dynamodb_writes_atomic()
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        """Forget every emulated resource and stop moto.

        moto keeps resources in process-wide backends: without the reset, a second stack started in the
        same process (tests do that) would find the first one's tables and fail to create its own.
        """
        if self.endpoint:
            requests.post(f"{self.endpoint}/moto-api/reset", timeout=(3.05, 10))
        self._server.stop()

    def environment(self) -> dict[str, str]:
        """Environment that points any boto3 client (the handlers' included) at this moto."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def session(self) -> boto3.session.Session:
        """A boto3 session with the fake credentials."""
        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=REGION,
        )

    def sqs(self) -> SQSClient:
        """An SQS client on this moto."""
        return self.session().client("sqs", endpoint_url=self.endpoint)

    def dynamodb(self) -> DynamoDBClient:
        """A DynamoDB client on this moto."""
        return self.session().client("dynamodb", endpoint_url=self.endpoint)

    def secretsmanager(self) -> SecretsManagerClient:
        """A Secrets Manager client on this moto."""
        return self.session().client("secretsmanager", endpoint_url=self.endpoint)

    def provision(self, template: Template, secret_values: Mapping[str, Mapping[str, Any]]) -> Provisioned:
        """Create the template's resources on this moto."""
        return Provisioner(self.sqs(), self.dynamodb(), self.secretsmanager()).provision(template, secret_values)


class Provisioner:
    """Creates a template's queues, tables and secrets through the given clients (moto server or mock_aws)."""

    def __init__(self, sqs: SQSClient, dynamodb: DynamoDBClient, secretsmanager: SecretsManagerClient) -> None:
        self._sqs = sqs
        self._dynamodb = dynamodb
        self._secretsmanager = secretsmanager

    def provision(self, template: Template, secret_values: Mapping[str, Mapping[str, Any]]) -> Provisioned:
        """Create every queue, table and secret of the template; `secret_values` by logical id."""
        out = Provisioned()
        self._queues(template, out)
        self._tables(template, out)
        self._secrets(template, secret_values, out)
        for logical_id, resource in template.resources.items():
            if logical_id not in out.refs and resource["Type"] == "AWS::Serverless::Function":
                out.refs[logical_id] = f"{STACK}-{logical_id}"
        return out

    def _queues(self, template: Template, out: Provisioned) -> None:
        queues = template.resources_of_type("AWS::SQS::Queue")
        # Dead-letter queues first: the others name their ARN.
        ordered = sorted(queues, key=lambda q: "RedrivePolicy" in (queues[q].get("Properties") or {}))
        sqs = self._sqs
        for logical_id in ordered:
            props = dict(queues[logical_id].get("Properties") or {})
            fifo = bool(props.get("FifoQueue"))
            name = f"{STACK}-{logical_id}" + (".fifo" if fifo else "")
            attributes: dict[str, str] = {}
            if fifo:
                attributes["FifoQueue"] = "true"
                attributes["ContentBasedDeduplication"] = str(bool(props.get("ContentBasedDeduplication"))).lower()
            for prop in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "MaximumMessageSize",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
            ):
                if prop in props:
                    attributes[prop] = str(props[prop])
            dead_letter = None
            if "RedrivePolicy" in props:
                policy = props["RedrivePolicy"]
                target = policy["deadLetterTargetArn"]
                if not (isinstance(target, dict) and "Fn::GetAtt" in target):
                    raise TemplateError(f"{logical_id}.RedrivePolicy: deadLetterTargetArn must be !GetAtt <Queue>.Arn")
                dead_letter = target["Fn::GetAtt"][0]
                attributes["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": out.attributes[(dead_letter, "Arn")],
                        "maxReceiveCount": int(policy["maxReceiveCount"]),
                    }
                )
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
            out.refs[logical_id] = url
            out.attributes[(logical_id, "Arn")] = arn
            out.attributes[(logical_id, "QueueName")] = name
            out.attributes[(logical_id, "QueueUrl")] = url
            out.queues[logical_id] = QueueInfo(logical_id, url, arn, name, fifo, dead_letter)

    def _tables(self, template: Template, out: Provisioned) -> None:
        dynamodb = self._dynamodb
        for logical_id, resource in template.resources_of_type("AWS::DynamoDB::Table").items():
            props = resource.get("Properties") or {}
            name = f"{STACK}-{logical_id}"
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            )
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
            out.refs[logical_id] = name
            out.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
            out.tables[logical_id] = name

    def _secrets(self, template: Template, secret_values: Mapping[str, Mapping[str, Any]], out: Provisioned) -> None:
        client = self._secretsmanager
        for logical_id, resource in template.resources_of_type("AWS::SecretsManager::Secret").items():
            props = resource.get("Properties") or {}
            value = secret_values.get(logical_id)
            secret_string = json.dumps(value) if value is not None else str(props.get("SecretString", "{}"))
            arn = client.create_secret(Name=f"{STACK}/{logical_id}", SecretString=secret_string)["ARN"]
            out.refs[logical_id] = arn
            out.secrets[logical_id] = arn


def intrinsics_for(template: Template, parameters: Mapping[str, str], provisioned: Provisioned) -> Intrinsics:
    """Resolver for the template's intrinsics against what was provisioned."""
    conditions: dict[str, bool] = {}
    resolver = Intrinsics(parameters, provisioned.refs, provisioned.attributes)
    for name, expression in (template.document.get("Conditions") or {}).items():
        conditions[name] = _evaluate_condition(resolver, expression)
    return Intrinsics(parameters, provisioned.refs, provisioned.attributes, conditions)


def _evaluate_condition(resolver: Intrinsics, expression: Any) -> bool:
    ((key, arg),) = expression.items()
    if key == "Fn::Equals":
        return bool(resolver.resolve(arg[0]) == resolver.resolve(arg[1]))
    if key == "Fn::Not":
        return not _evaluate_condition(resolver, arg[0])
    if key == "Fn::And":
        return all(_evaluate_condition(resolver, a) for a in arg)
    if key == "Fn::Or":
        return any(_evaluate_condition(resolver, a) for a in arg)
    raise TemplateError(f"condition function {key} is not supported locally")


def process_environment_without_aws() -> dict[str, str]:
    """This process's environment minus anything that could point a handler at a real AWS account."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO"))}
