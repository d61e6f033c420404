"""Platform credentials: one JSON secret per platform in Secrets Manager, read through a short cache."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import ConfigurationError, DependencyUnavailable

Filled = Annotated[SecretStr, Field(min_length=1)]


class SecretModel(BaseModel):
    """Base of the secret models; SecretStr keeps values out of reprs, logs and errors."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class BuildNexionSecret(SecretModel):
    """`buildnexion {"api_key", "webhook_secrets": [..]}`; several secrets during a rotation."""

    api_key: Filled
    webhook_secrets: Annotated[list[Filled], Field(min_length=1)]


class TuimprentaSecret(SecretModel):
    """`tuimprenta {"api_key", "webhook_secret"}`."""

    api_key: Filled
    webhook_secret: Filled


class QuipuSecret(SecretModel):
    """`quipu {"app_id", "app_secret"}`."""

    app_id: Filled
    app_secret: Filled


class FacturaDirectaSecret(SecretModel):
    """`facturadirecta {"account", "api_token"}`."""

    account: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")]
    api_token: Filled


SecretT = TypeVar("SecretT", bound=SecretModel)


class SecretReader:
    """Reads and validates secrets; a value lives in memory for at most `max_age` seconds."""

    def __init__(self, provider: SecretsProvider, max_age_seconds: int) -> None:
        self._provider = provider
        self._max_age = max_age_seconds

    def read(self, secret_id: str, model: type[SecretT], label: str) -> SecretT:
        """The secret `secret_id` as `model`; errors name `label` and the field, never a value."""
        try:
            raw: Any = self._provider.get(secret_id, max_age=self._max_age, transform="json")
        except TransformParameterError:
            raise ConfigurationError(f"secret {label}", "is not a JSON object") from None
        except GetParameterError as exc:
            # Powertools folds every Secrets Manager failure into one type; its text is the AWS error.
            raise DependencyUnavailable(f"secret {label}", str(exc)) from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f"secret {label}", "is not a JSON object")
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise ConfigurationError(f"secret {label} field {field}", message) from None
