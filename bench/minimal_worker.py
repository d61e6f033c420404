"""A worker in plain boto3 and the standard library, without Powertools, pydantic or requests: the baseline the
cold-start bench holds the three workers (QuipuSync, TuimprentaPoller, FacturaDirectaExporter) against.

It makes the AWS calls every worker makes on a record, read from the same environment variables, with the same
client timeouts: GetSecretValue (cached for SECRETS_MAX_AGE_SECONDS), GetItem and a conditional PutItem on the
state table's ledger, ChangeMessageVisibility on a retryable failure and SendMessage to the dead-letter queue on
a permanent one; and one HTTPS GET of the BuildNexion object (urllib). The platform call itself differs per
worker and is left out: this is a floor, not a port.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# The same timeouts and retries as invoice_bridge.aws, so both workers' clients behave alike.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=4, retries={"mode": "standard", "max_attempts": 3})
HTTP_TIMEOUT_SECONDS = 10


class Retryable(Exception):
    """The record goes back to the queue."""


class MinimalWorker:
    """Settings and clients, made on the first invocation like the real workers'."""

    def __init__(self) -> None:
        session = boto3.session.Session()
        self.sqs: SQSClient = session.client("sqs", config=CLIENT_CONFIG)
        self.dynamodb: DynamoDBClient = session.client("dynamodb", config=CLIENT_CONFIG)
        self.secretsmanager: SecretsManagerClient = session.client("secretsmanager", config=CLIENT_CONFIG)
        self.table = os.environ["STATE_TABLE_NAME"]
        self.queue_url = os.environ["QUEUE_URL"]
        self.dead_letter_queue_url = os.environ["DEAD_LETTER_QUEUE_URL"]
        self.api_url = os.environ["BUILDNEXION_API_URL"].rstrip("/")
        self.secret_id = os.environ["BUILDNEXION_SECRET_ARN"]
        self.secret_max_age = int(os.environ.get("SECRETS_MAX_AGE_SECONDS", "60"))
        self._api_key = ""
        self._read_at = -math.inf

    def api_key(self) -> str:
        """BuildNexion's API key, read again once older than the max age."""
        now = time.monotonic()
        if now - self._read_at >= self.secret_max_age:
            raw = self.secretsmanager.get_secret_value(SecretId=self.secret_id)["SecretString"]
            self._api_key = str(json.loads(raw)["api_key"])
            self._read_at = now
        return self._api_key

    def fetch(self, kind: str, object_id: str) -> dict[str, Any]:
        """The BuildNexion object, as the real workers read it before syncing."""
        request = urllib.request.Request(  # noqa: S310 - the https URL from the settings
            f"{self.api_url}/{kind}s/{object_id}", headers={"Authorization": f"Bearer {self.api_key()}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                document: dict[str, Any] = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError) as exc:
            raise Retryable(str(exc)) from None
        return document

    def sync(self, body: dict[str, Any]) -> None:
        """Record one event's object in the ledger unless a newer version is there."""
        obj = body["data"]["object"]
        key = {"pk": {"S": f"ledger#minimal#{obj['object']}"}, "sk": {"S": f"object#{obj['id']}"}}
        current = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        document = self.fetch(str(obj["object"]), str(obj["id"]))
        updated = str(document.get("updated_at", ""))
        if current and current.get("source_updated_at", {}).get("S", "") >= updated:
            return
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={**key, "status": {"S": "synced"}, "source_updated_at": {"S": updated}},
                ConditionExpression="attribute_not_exists(pk) OR source_updated_at < :updated",
                ExpressionAttributeValues={":updated": {"S": updated}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """An SQS batch: retryable failures back to the queue, permanent ones to the dead-letter queue."""
        failures: list[dict[str, str]] = []
        for record in event.get("Records", []):
            try:
                self.sync(json.loads(record["body"]))
            except Retryable:
                failures.append({"itemIdentifier": record["messageId"]})
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=30
                )
            except (ValueError, KeyError, TypeError) as exc:
                self.sqs.send_message(
                    QueueUrl=self.dead_letter_queue_url,
                    MessageBody=record["body"],
                    MessageAttributes={"reason": {"DataType": "String", "StringValue": type(exc).__name__}},
                )
        return {"batchItemFailures": failures}


@cache
def worker() -> MinimalWorker:
    """Built on the first invocation, as the real workers are."""
    return MinimalWorker()


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Entry point for an SQS event source."""
    return worker().handle(event)
