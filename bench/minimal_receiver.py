"""The receiver's BuildNexion route in plain boto3, without Powertools or pydantic: the receiver bench's baseline."""

# The same AWS calls as the real handler, read from the same environment variables, with the same client
# timeouts: GetSecretValue (cached for SECRETS_MAX_AGE_SECONDS), an eventually consistent GetItem of the
# event's dedupe record in the state table, SendMessage to the destination queue, then a conditional PutItem
# of the record.

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import time
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageRequestTypeDef

ROUTE_KEY = "POST /webhooks/buildnexion"
SIGNATURE_HEADER = "buildnexion-signature"  # API Gateway v2 lower-cases header names
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 256 * 1024
# The same timeouts and retries as invoice_bridge.aws, so both handlers' clients behave alike.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=4, retries={"mode": "standard", "max_attempts": 3})


class Context(Protocol):
    """The part of the Lambda context this handler reads."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left in the invocation."""
        ...


class Rejected(Exception):
    """A delivery answered with a 4xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _response(status: int, body: dict[str, str]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def verify_signature(header: str | None, body: bytes, secrets: list[str], now: float) -> None:
    """Check `t=<unix>,v1=<hex>...` against every secret, as the real receiver does; Rejected(401) if none match."""
    if not header:
        raise Rejected(401, "Unauthorized")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.lower())
    if timestamp is None or not candidates or abs(now - timestamp) > TOLERANCE_SECONDS:
        raise Rejected(401, "Unauthorized")
    message = str(timestamp).encode("ascii") + b"." + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise Rejected(401, "Unauthorized")


class MinimalReceiver:
    """Settings and clients, made on the first invocation like the real receiver's."""

    def __init__(self) -> None:
        session = boto3.session.Session()
        self.sqs: SQSClient = session.client("sqs", config=CLIENT_CONFIG)
        self.dynamodb: DynamoDBClient = session.client("dynamodb", config=CLIENT_CONFIG)
        self.secretsmanager: SecretsManagerClient = session.client("secretsmanager", config=CLIENT_CONFIG)
        self.routing: dict[str, str] = json.loads(os.environ["ROUTING_TABLE"])
        self.queue_urls = {
            "quipu": os.environ["QUIPU_QUEUE_URL"],
            "tuimprenta": os.environ["TUIMPRENTA_QUEUE_URL"],
            "facturadirecta": os.environ["FACTURADIRECTA_QUEUE_URL"],
        }
        self.state_table = os.environ["STATE_TABLE_NAME"]
        self.secret_id = os.environ["BUILDNEXION_SECRET_ARN"]
        self.secret_max_age = int(os.environ.get("SECRETS_MAX_AGE_SECONDS", "60"))
        self.ttl_seconds = int(os.environ.get("IDEMPOTENCY_TTL_SECONDS", str(7 * 24 * 3600)))
        self._secrets: list[str] = []
        self._secrets_read_at = -math.inf

    def webhook_secrets(self) -> list[str]:
        """BuildNexion's webhook secrets, read again once they are older than the max age."""
        now = time.monotonic()
        if now - self._secrets_read_at >= self.secret_max_age:
            raw = self.secretsmanager.get_secret_value(SecretId=self.secret_id)["SecretString"]
            self._secrets = [str(s) for s in json.loads(raw)["webhook_secrets"]]
            self._secrets_read_at = now
        return self._secrets

    def receive(self, signature: str | None, body: bytes, context: Context) -> dict[str, str]:
        """Verify, dedupe and enqueue one delivery; the JSON answer's body."""
        if len(body) > MAX_BODY_BYTES:
            raise Rejected(413, "Payload Too Large")
        verify_signature(signature, body, self.webhook_secrets(), time.time())
        try:
            document = json.loads(body)
            event_id, event_type = document["id"], document["type"]
            group_id = document["data"]["object"]["id"] if event_type in self.routing else ""
        except (ValueError, TypeError, KeyError):
            raise Rejected(400, "invalid payload") from None
        if not all(isinstance(v, str) and v for v in (event_id, event_type)):
            raise Rejected(400, "invalid payload")
        destination = self.routing.get(event_type)
        if destination is None:
            return {"status": "ignored", "event_id": event_id}
        request: SendMessageRequestTypeDef = {
            "QueueUrl": self.queue_urls[destination],
            "MessageBody": body.decode("utf-8"),
            "MessageAttributes": {
                "event_id": {"DataType": "String", "StringValue": event_id},
                "event_type": {"DataType": "String", "StringValue": event_type},
            },
        }
        if request["QueueUrl"].endswith(".fifo"):
            request["MessageGroupId"] = str(group_id)
            request["MessageDeduplicationId"] = event_id
        outcome = "accepted" if self.enqueue_once(event_id, request, context) else "duplicate"
        return {"status": outcome, "event_id": event_id, "destination": destination}

    def enqueue_once(self, event_id: str, request: SendMessageRequestTypeDef, context: Context) -> bool:
        """Send the event unless its record says it was sent, then record it; False when it was sent before."""
        now = int(time.time())
        key: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": "buildnexion#webhook-events"},
            "sk": {"S": f"event#{event_id}"},
        }
        item = self.dynamodb.get_item(TableName=self.state_table, Key=key, ConsistentRead=False).get("Item")
        if item and int(item["ttl"]["N"]) > now:
            return False
        message_id = self.sqs.send_message(**request)["MessageId"]
        try:
            self.dynamodb.put_item(
                TableName=self.state_table,
                Item={**key, "message_id": {"S": message_id}, "ttl": {"N": str(now + self.ttl_seconds)}},
                ConditionExpression="attribute_not_exists(pk) OR #ttl <= :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


@cache
def receiver() -> MinimalReceiver:
    """Built on the first invocation, as the real handler's receiver is."""
    return MinimalReceiver()


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not event.get("isBase64Encoded"):
        return str(body).encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise Rejected(400, "invalid payload") from None


def lambda_handler(event: dict[str, Any], context: Context) -> dict[str, Any]:
    """API Gateway v2 entry point for `POST /webhooks/buildnexion`."""
    if event.get("routeKey") != ROUTE_KEY:
        return _response(404, {"message": "Not Found"})
    try:
        headers = event.get("headers") or {}
        return _response(200, receiver().receive(headers.get(SIGNATURE_HEADER), _raw_body(event), context))
    except Rejected as exc:
        return _response(exc.status, {"message": exc.message})
