"""Settings of the local stack: platform URLs, sandbox credentials and the schedule, from the environment."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from invoice_bridge.config import EnvSettings
from invoice_bridge.destinations import PLATFORMS
from ops.defaults import LocalPort
from sandbox.buildnexion import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET
from sandbox.faults import FaultSettings, FaultSpecError

__all__ = ["API_URL_PARAMETERS", "LocalPort", "LocalSettings"]

# Template parameter that each *_API_URL variable sets.
API_URL_PARAMETERS = {
    "buildnexion": "BuildNexionApiUrl",
    **{d.value: p.api_url_parameter for d, p in PLATFORMS.items()},
}


class LocalSettings(EnvSettings):
    """`invoice-bridge local serve` settings (README.md, "The local stack"); sandbox defaults where unset."""

    buildnexion_api_url: str | None = Field(default=None, alias="BUILDNEXION_API_URL")
    quipu_api_url: str | None = Field(default=None, alias="QUIPU_API_URL")
    tuimprenta_api_url: str | None = Field(default=None, alias="TUIMPRENTA_API_URL")
    facturadirecta_api_url: str | None = Field(default=None, alias="FACTURADIRECTA_API_URL")
    buildnexion_api_key: str = Field(default=DEFAULT_API_KEY, min_length=1, alias="BUILDNEXION_API_KEY")
    # Comma-separated to play a rotation: BuildNexion then signs with every one of them.
    buildnexion_webhook_secret: str = Field(
        default=DEFAULT_WEBHOOK_SECRET, min_length=1, alias="BUILDNEXION_WEBHOOK_SECRET"
    )
    quipu_app_id: str = Field(default="sandbox-quipu-app", min_length=1, alias="QUIPU_APP_ID")
    quipu_app_secret: str = Field(default="sandbox-quipu-secret", min_length=1, alias="QUIPU_APP_SECRET")
    tuimprenta_api_key: str = Field(default="sandbox-tuimprenta-key", min_length=1, alias="TUIMPRENTA_API_KEY")
    tuimprenta_webhook_secret: str = Field(
        default="sandbox-tuimprenta-webhook-secret", min_length=1, alias="TUIMPRENTA_WEBHOOK_SECRET"
    )
    facturadirecta_account: str = Field(default="sandbox", pattern=r"^[A-Za-z0-9-]+$", alias="FACTURADIRECTA_ACCOUNT")
    facturadirecta_api_token: str = Field(
        default="sandbox-facturadirecta-token", min_length=1, alias="FACTURADIRECTA_API_TOKEN"
    )
    # How long the sandbox tuimprenta takes from a batch's creation to its results (queued a third of it).
    tuimprenta_processing_seconds: float = Field(default=3.0, ge=0, le=600, alias="TUIMPRENTA_PROCESSING_SECONDS")
    schedule_seconds: float = Field(default=5, gt=0, le=3600, alias="LOCAL_SCHEDULE_SECONDS")
    # Faults every sandbox peer injects (sandbox/faults.py): "error=0.1,hang=0.03,after_effect=0.5,seed=7".
    faults: str = Field(default="", alias="LOCAL_FAULTS")

    @field_validator("faults")
    @classmethod
    def _readable_faults(cls, value: str) -> str:
        try:
            FaultSettings.parse(value)
        except FaultSpecError as exc:
            raise ValueError(str(exc)) from None
        return value

    def fault_settings(self) -> FaultSettings:
        """The faults the sandbox peers inject (none unless LOCAL_FAULTS says so)."""
        return FaultSettings.parse(self.faults)

    @field_validator("buildnexion_webhook_secret")
    @classmethod
    def _at_least_one_secret(cls, value: str) -> str:
        if not any(part.strip() for part in value.split(",")):
            raise ValueError("give at least one secret (comma-separated to play a rotation)")
        return value

    def webhook_secrets(self) -> list[str]:
        """BuildNexion's active webhook secrets."""
        return [s.strip() for s in self.buildnexion_webhook_secret.split(",") if s.strip()]

    def api_urls(self) -> dict[str, str | None]:
        """Each platform's URL as set, None where the sandbox peer should play it."""
        return {
            "buildnexion": self.buildnexion_api_url,
            "quipu": self.quipu_api_url,
            "tuimprenta": self.tuimprenta_api_url,
            "facturadirecta": self.facturadirecta_api_url,
        }

    def secret_values(self) -> dict[str, dict[str, Any]]:
        """The value of each template secret, by logical id."""
        return {
            "BuildNexionSecret": {
                "api_key": self.buildnexion_api_key,
                "webhook_secrets": self.webhook_secrets(),
            },
            "QuipuSecret": {"app_id": self.quipu_app_id, "app_secret": self.quipu_app_secret},
            "TuimprentaSecret": {
                "api_key": self.tuimprenta_api_key,
                "webhook_secret": self.tuimprenta_webhook_secret,
            },
            "FacturaDirectaSecret": {
                "account": self.facturadirecta_account,
                "api_token": self.facturadirecta_api_token,
            },
        }
