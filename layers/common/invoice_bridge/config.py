"""Settings: one model per function, read from the environment once, errors naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError, field_validator

# Destination is re-exported: the settings and every caller name destinations by it.
from invoice_bridge.destinations import PLATFORMS
from invoice_bridge.destinations import Destination as Destination
from invoice_bridge.errors import ConfigurationError

EVENT_TYPE_PATTERN = r"^[a-z][a-z_]*\.[a-z][a-z_]*$"


# The BuildNexion object each destination's worker turns into a document there.
DESTINATION_OBJECTS: dict[Destination, str] = {d: p.object_kind for d, p in PLATFORMS.items()}

EventType = Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]
RoutingTable = dict[EventType, Destination]

DEFAULT_ROUTING: RoutingTable = {event: d for d, p in PLATFORMS.items() for event in p.events}


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """The first error of a validation as (dotted field path, message), without the offending input."""
    first = exc.errors(include_input=False, include_url=False)[0]
    parts: list[str] = []
    for part in first["loc"]:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif "." in part:
            parts.append(f'["{part}"]')
        else:
            parts.append(f".{part}" if parts else part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "enum":
        message = f"unknown destination; known: {', '.join(d.value for d in Destination)}"
    return "".join(parts) or "(root)", message


class EnvSettings(BaseModel):
    """Base of the settings models: fields are aliased to their environment variable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the environment (or the mapping given); raise ConfigurationError naming the variable."""
        source = os.environ if environ is None else environ
        try:
            return cls.model_validate(dict(source))
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise ConfigurationError(field, message) from None


QueueUrl = Annotated[str, Field(pattern=r"^https?://\S+/\S+$")]
# Empty for a destination this stack does not deploy (DeployQuipu=false, ...).
OptionalQueueUrl = Annotated[str, Field(pattern=r"^(https?://\S+/\S+)?$")]
Name = Annotated[str, Field(min_length=1)]


class ReceiverSettings(EnvSettings):
    """WebhookReceiverFunction's settings."""

    routing_table: Json[RoutingTable] = Field(alias="ROUTING_TABLE")
    # Empty: the platform is not deployed (DeployQuipu=false, ...); its events are answered "ignored".
    quipu_queue_url: OptionalQueueUrl = Field(alias="QUIPU_QUEUE_URL")
    tuimprenta_queue_url: OptionalQueueUrl = Field(alias="TUIMPRENTA_QUEUE_URL")
    facturadirecta_queue_url: OptionalQueueUrl = Field(alias="FACTURADIRECTA_QUEUE_URL")
    state_table_name: Name = Field(alias="STATE_TABLE_NAME")
    buildnexion_secret_id: Name = Field(alias="BUILDNEXION_SECRET_ARN")
    tuimprenta_secret_id: str = Field(alias="TUIMPRENTA_SECRET_ARN")  # empty: tuimprenta not deployed
    secrets_max_age_seconds: int = Field(default=60, ge=0, le=3600, alias="SECRETS_MAX_AGE_SECONDS")
    # BuildNexion's retry window is not published; a week outlasts any sane one (tuimprenta's is 24 h).
    idempotency_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=3600, le=30 * 24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS"
    )

    @field_validator("routing_table")
    @classmethod
    def _destination_takes_the_object(cls, table: RoutingTable) -> RoutingTable:
        for event_type, destination in table.items():
            kind = event_type.partition(".")[0]
            if kind != DESTINATION_OBJECTS[destination]:
                raise ValueError(
                    f'"{event_type}" cannot go to {destination.value}, which takes '
                    f"{DESTINATION_OBJECTS[destination]} events only"
                )
        return table

    def queue_urls(self) -> dict[Destination, str]:
        """The queue each deployed destination's worker consumes."""
        urls = {
            Destination.QUIPU: self.quipu_queue_url,
            Destination.TUIMPRENTA: self.tuimprenta_queue_url,
            Destination.FACTURADIRECTA: self.facturadirecta_queue_url,
        }
        return {destination: url for destination, url in urls.items() if url}

    def routes(self) -> RoutingTable:
        """The routing table without the destinations this stack does not deploy."""
        deployed = self.queue_urls()
        return {event_type: d for event_type, d in self.routing_table.items() if d in deployed}


HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]


class WorkerSettings(EnvSettings):
    """What every worker reads: the state table, its dead-letter queue and BuildNexion's API."""

    state_table_name: Name = Field(alias="STATE_TABLE_NAME")
    queue_url: QueueUrl = Field(alias="QUEUE_URL")
    dead_letter_queue_url: QueueUrl = Field(alias="DEAD_LETTER_QUEUE_URL")
    # The source queue's maxReceiveCount: a record still failing on its last receive is dead-lettered by the
    # worker with its reason, rather than moved by SQS's redrive policy with none.
    max_receive_count: int = Field(ge=1, le=1000, alias="MAX_RECEIVE_COUNT")
    buildnexion_api_url: HttpUrl = Field(alias="BUILDNEXION_API_URL")
    buildnexion_secret_id: Name = Field(alias="BUILDNEXION_SECRET_ARN")
    secrets_max_age_seconds: int = Field(default=60, ge=0, le=3600, alias="SECRETS_MAX_AGE_SECONDS")
