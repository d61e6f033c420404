"""Which stack the operator commands act on: a deployed one (CloudFormation outputs) or the local stack."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import requests
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from invoice_bridge.aws import AWS_CLIENT_CONFIG
from invoice_bridge.config import DESTINATION_OBJECTS
from invoice_bridge.destinations import PLATFORMS, Destination

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

HTTP_TIMEOUT = (3.05, 10)
QUEUE_OUTPUTS: dict[Destination, tuple[str, str]] = {d: p.queue_outputs for d, p in PLATFORMS.items()}
QUEUE_LOGICAL_IDS = {d: p.queue_logical_id for d, p in PLATFORMS.items()}
# BuildNexion's list endpoint for each destination's object kind.
COLLECTIONS = {d: p.collection for d, p in PLATFORMS.items()}
ID_PREFIXES = {p.id_prefix: p.object_kind for p in PLATFORMS.values()}


class TargetError(Exception):
    """The stack cannot be reached or lacks something a command needs; the message says what to do."""


def destination_for_kind(kind: str) -> Destination:
    """The destination that takes a BuildNexion object kind."""
    for destination, taken in DESTINATION_OBJECTS.items():
        if taken == kind:
            return destination
    raise TargetError(f"no destination takes {kind} objects")


@dataclass
class Target:
    """A stack's outputs and clients on its account (or on the local stack's emulated AWS)."""

    name: str
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint_url: str | None = None
    queue_ages: dict[str, float] = field(default_factory=dict)
    routing_table: dict[str, str] = field(default_factory=dict)
    local_url: str | None = None
    account: str | None = None
    region: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """True for the local stack (`invoice-bridge local serve`)."""
        return self.local_url is not None

    def describe(self) -> str:
        """The target as the first line of every command names it: account, region and stack, or local."""
        if self.is_local:
            return f"target: local stack at {self.local_url}"
        account = self.account or "?"
        region = self.region or self.session.region_name or "?"
        return f"target: stack {self.name} (account {account}, region {region})"

    def as_json(self) -> dict[str, str | None]:
        """The target for `--json` output."""
        if self.is_local:
            return {"kind": "local", "url": self.local_url}
        return {
            "kind": "stack",
            "stack": self.name,
            "account": self.account,
            "region": self.region or self.session.region_name,
        }

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(  # type: ignore[call-overload]
                service, endpoint_url=self.endpoint_url, config=AWS_CLIENT_CONFIG
            )
        return self._clients[service]

    def sqs(self) -> SQSClient:
        """SQS on the target's account."""
        client: SQSClient = self._client("sqs")
        return client

    def dynamodb(self) -> DynamoDBClient:
        """DynamoDB on the target's account."""
        client: DynamoDBClient = self._client("dynamodb")
        return client

    def secretsmanager(self) -> SecretsManagerClient:
        """Secrets Manager on the target's account."""
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

    def cloudwatch(self) -> CloudWatchClient:
        """CloudWatch on the target's account."""
        client: CloudWatchClient = self._client("cloudwatch")
        return client

    def logs(self) -> Any:
        """CloudWatch Logs on the target's account (no type stubs are installed for it)."""
        return self._client("logs")

    def output(self, key: str) -> str:
        """One stack output; TargetError naming it when the stack has none."""
        value = self.outputs.get(key)
        if not value:
            where = "the local stack" if self.is_local else f"stack {self.name}"
            raise TargetError(f"{where} has no output {key}; is it an invoice-bridge stack of this version?")
        return value

    def queue_url(self, destination: Destination) -> str:
        """The destination's queue."""
        return self.output(QUEUE_OUTPUTS[destination][0])

    def dead_letter_queue_url(self, destination: Destination) -> str:
        """The destination's dead-letter queue."""
        return self.output(QUEUE_OUTPUTS[destination][1])

    def state_table(self) -> str:
        """The state table's name."""
        return self.output("StateTableName")

    def read_secret(self, output_key: str) -> dict[str, Any]:
        """A platform secret's JSON value (kept in memory only, never printed)."""
        try:
            raw = self.secretsmanager().get_secret_value(SecretId=self.output(output_key))["SecretString"]
        except ClientError as exc:
            raise TargetError(f"cannot read {output_key}: {exc.response['Error']['Code']}") from None
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise TargetError(f"{output_key} does not hold a JSON object")
        return value


def from_stack(stack: str, region: str | None) -> Target:
    """The deployed stack `stack`, found through CloudFormation."""
    try:
        # The session reads the profile: a missing AWS_PROFILE fails here (the import no longer builds one).
        session = boto3.session.Session(region_name=region)
    except BotoCoreError as exc:
        raise TargetError(str(exc)) from None
    try:
        cloudformation = session.client("cloudformation", config=AWS_CLIENT_CONFIG)
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except NoRegionError:
        raise TargetError("no AWS region: pass --region or set AWS_REGION") from None
    except NoCredentialsError:
        raise TargetError("no AWS credentials: configure the AWS CLI or set AWS_PROFILE") from None
    except ClientError as exc:
        raise TargetError(f"stack {stack}: {exc.response['Error']['Message']}") from None
    except BotoCoreError as exc:
        raise TargetError(f"stack {stack}: {exc}") from None
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    routing = json.loads(parameters["RoutingTable"]) if parameters.get("RoutingTable") else {}
    # arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>: the account without another call.
    arn = str(described.get("StackId", "")).split(":")
    account, stack_region = (arn[4], arn[3]) if len(arn) > 5 else (None, session.region_name)
    return Target(stack, outputs, session, routing_table=routing, account=account, region=stack_region)


def from_local(url: str) -> Target:
    """The running local stack at `url` (`invoice-bridge local serve`)."""
    base = url.rstrip("/")
    try:
        document = requests.get(f"{base}/local/outputs", timeout=HTTP_TIMEOUT).json()
    except requests.ConnectionError:
        raise TargetError(f"no local stack answers at {base}: start it with `invoice-bridge local serve`") from None
    except (requests.RequestException, ValueError) as exc:
        raise TargetError(f"the local stack at {base} did not answer as expected: {exc}") from None
    credentials: Mapping[str, str] = document["credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"],
        region_name=document["region"],
    )
    return Target(
        "local",
        dict(document["outputs"]),
        session,
        endpoint_url=document["aws_endpoint"],
        queue_ages={k: float(v) for k, v in document.get("queue_ages", {}).items()},
        routing_table=dict(document.get("routing_table", {})),
        local_url=base,
    )
