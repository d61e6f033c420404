"""AWS clients with explicit timeouts, made when a function starts handling, never at import."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# Well under the shortest Lambda timeout (10 s): a stuck AWS call fails fast and is retried by the caller.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=4,
    retries={"mode": "standard", "max_attempts": 3},
)


class AwsClients:
    """The AWS clients a function uses, built from one session."""

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        self._session = session or boto3.session.Session()

    def sqs(self) -> SQSClient:
        """An SQS client."""
        return self._session.client("sqs", config=AWS_CLIENT_CONFIG)

    def dynamodb(self) -> DynamoDBClient:
        """A DynamoDB client."""
        return self._session.client("dynamodb", config=AWS_CLIENT_CONFIG)

    def secretsmanager(self) -> SecretsManagerClient:
        """A Secrets Manager client."""
        return self._session.client("secretsmanager", config=AWS_CLIENT_CONFIG)
