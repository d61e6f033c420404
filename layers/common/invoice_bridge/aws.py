"""AWS clients with explicit timeouts, made when a function starts handling, never at import."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# Each attempt is bounded (2 s to connect, 4 s to read) and a failed one is tried once more, no more: a stuck
# AWS call gives up in seconds and the caller's own retry (SQS redelivery, the sender's webhook retry) takes
# over. botocore's `max_attempts` counts retries (3 meant four attempts, 24 s stuck): `total_max_attempts` counts
# attempts.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=4,
    retries={"mode": "standard", "total_max_attempts": 2},
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
