"""QuipuSyncFunction's wiring: settings, secrets and clients built once, then each SQS batch through BatchEdge."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, Ledger, References, StateTable
from invoice_bridge.limiter import DynamoRateLimiter, limiter_key
from invoice_bridge.quipu.client import QuipuClient, TokenStore
from invoice_bridge.quipu.settings import QuipuSyncSettings
from invoice_bridge.quipu.sync import DESTINATION, QuipuSync
from invoice_bridge.secrets import BuildNexionSecret, QuipuSecret, SecretReader
from invoice_bridge.worker import BatchEdge, DeadLetters, parse_event

# Quipu's published limit: 5 requests in any 5 seconds per pair of credentials (token requests included).
QUIPU_LIMIT = 5
QUIPU_WINDOW_SECONDS = 5.0


class QuipuWorker:
    """One per Lambda container: the clients are rebuilt only when a secret's value changes."""

    def __init__(self, settings: QuipuSyncSettings, clients: AwsClients) -> None:
        self.settings = settings
        self._dynamodb = clients.dynamodb()
        sqs = clients.sqs()
        self._table = StateTable(self._dynamodb, settings.state_table_name)
        self._secrets = SecretReader(
            SecretsProvider(boto3_client=clients.secretsmanager()), settings.secrets_max_age_seconds
        )
        self._edge = BatchEdge(
            sqs=sqs,
            queue_url=settings.queue_url,
            dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url, DESTINATION),
            destination=DESTINATION,
            fifo=settings.queue_url.endswith(".fifo"),
            max_receive_count=settings.max_receive_count,
        )
        self._sync: QuipuSync | None = None
        self._credentials: tuple[str, str, str] | None = None

    @classmethod
    def from_settings(cls, settings: QuipuSyncSettings, clients: AwsClients | None = None) -> QuipuWorker:
        """The worker on real AWS clients."""
        return cls(settings, clients or AwsClients(boto3.session.Session()))

    def sync(self) -> QuipuSync:
        """The sync, on clients for the current secret values."""
        quipu_secret = self._secrets.read(self.settings.quipu_secret_id, QuipuSecret, "quipu")
        buildnexion_secret = self._secrets.read(self.settings.buildnexion_secret_id, BuildNexionSecret, "buildnexion")
        credentials = (
            quipu_secret.app_id.get_secret_value(),
            quipu_secret.app_secret.get_secret_value(),
            buildnexion_secret.api_key.get_secret_value(),
        )
        if self._sync is None or credentials != self._credentials:
            self._sync = self._build(quipu_secret, buildnexion_secret)
            self._credentials = credentials
        return self._sync

    def _build(self, quipu_secret: QuipuSecret, buildnexion_secret: BuildNexionSecret) -> QuipuSync:
        app_id = quipu_secret.app_id.get_secret_value()
        leases = Leases(self._table)
        limiter = DynamoRateLimiter(
            self._dynamodb,
            self.settings.state_table_name,
            limiter_key("quipu", app_id),
            limit=QUIPU_LIMIT,
            window_seconds=QUIPU_WINDOW_SECONDS,
            platform="quipu",
        )
        quipu = QuipuClient(
            self.settings.quipu_api_url,
            quipu_secret.app_id,
            quipu_secret.app_secret,
            tokens=TokenStore(self._table, app_id),
            leases=leases,
            owner_slug=self.settings.quipu_owner_slug,
            limiter=limiter,
        )
        return QuipuSync(
            quipu=quipu,
            buildnexion=BuildNexionClient(self.settings.buildnexion_api_url, buildnexion_secret.api_key),
            ledger=Ledger(self._table),
            references=References(self._table),
            leases=leases,
            void_mode=self.settings.void_mode,
            attach_pdf=self.settings.attach_pdf,
        )

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """One SQS batch: each record's event applied, failures reported per record."""
        sync = self.sync()

        def record_handler(record: SQSRecord, deadline: Deadline) -> None:
            sync.apply(parse_event(record), deadline)

        return self._edge.handle(event, context, record_handler)
