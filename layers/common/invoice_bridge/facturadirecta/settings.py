"""FacturaDirectaExporterFunction's settings, validated once at cold start."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from invoice_bridge.config import HttpUrl, Name, WorkerSettings


def _empty_is_unset(value: object) -> object:
    # The template passes "" when FacturaDirectaApiUrl is left empty: the URL then comes from the account.
    return None if isinstance(value, str) and not value.strip() else value


class FacturaDirectaSettings(WorkerSettings):
    """The worker settings plus FacturaDirecta's secret, optional API URL and read timeout."""

    facturadirecta_secret_id: Name = Field(alias="FACTURADIRECTA_SECRET_ARN")
    facturadirecta_api_url: Annotated[HttpUrl | None, BeforeValidator(_empty_is_unset)] = Field(
        default=None, alias="FACTURADIRECTA_API_URL"
    )
    facturadirecta_read_timeout_seconds: float = Field(
        default=10.0, gt=0, le=30, alias="FACTURADIRECTA_READ_TIMEOUT_SECONDS"
    )
