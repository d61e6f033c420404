"""Platform credentials: one JSON secret per platform in Secrets Manager, read through a container's cache.

A value is kept for `SECRETS_MAX_AGE_SECONDS` (an hour as deployed): each read is a billed API call, and a
container that read every minute paid for two or three reads a minute while idle. A rotation still takes
effect within a minute: when a platform refuses the credentials (401/403, `credentials_refused`) or a
webhook's signature matches no cached secret, the secrets read at least REREAD_AFTER_REFUSAL_SECONDS ago
are read again (no sooner, so a flood of refusals costs one read a minute).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from invoice_bridge.config import describe_validation_error
from invoice_bridge.destinations import Destination
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


# Each destination's secret model (the registry of destinations names the secret; this is its shape).
PLATFORM_SECRETS: dict[Destination, type[SecretModel]] = {
    Destination.QUIPU: QuipuSecret,
    Destination.TUIMPRENTA: TuimprentaSecret,
    Destination.FACTURADIRECTA: FacturaDirectaSecret,
}

SecretT = TypeVar("SecretT", bound=SecretModel)


REREAD_AFTER_REFUSAL_SECONDS = 60.0
_READERS: weakref.WeakSet[SecretReader] = weakref.WeakSet()


def credentials_refused() -> None:
    """A platform answered 401/403: every reader of this container reads its secrets again (rate-bounded)."""
    for reader in list(_READERS):
        reader.refused()


class SecretReader:
    """Reads and validates secrets; a value lives in memory for at most `max_age` seconds, less once refused."""

    def __init__(
        self, provider: SecretsProvider, max_age_seconds: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._provider = provider
        self._max_age = max_age_seconds
        self._clock = clock
        self._read_at: dict[str, float] = {}
        self._stale: set[str] = set()
        _READERS.add(self)

    def refused(self, secret_id: str | None = None) -> bool:
        """Credentials were refused: read `secret_id` (default: every secret) again at the next read.

        Only values read at least REREAD_AFTER_REFUSAL_SECONDS ago are read again; True if any will be.
        """
        now = self._clock()
        marked = False
        for read_id, read_at in self._read_at.items():
            if secret_id in (None, read_id) and now - read_at >= min(self._max_age, REREAD_AFTER_REFUSAL_SECONDS):
                self._stale.add(read_id)
                marked = True
        return marked

    def read(self, secret_id: str, model: type[SecretT], label: str) -> SecretT:
        """The secret `secret_id` as `model`; errors name `label` and the field, never a value."""
        force = secret_id in self._stale or secret_id not in self._read_at
        try:
            raw: Any = self._provider.get(secret_id, max_age=self._max_age, transform="json", force_fetch=force)
        except TransformParameterError:
            raise ConfigurationError(f"secret {label}", "is not a JSON object") from None
        except GetParameterError as exc:
            # Powertools folds every Secrets Manager failure into one type; its text is the AWS error.
            raise DependencyUnavailable(f"secret {label}", str(exc)) from None
        if force:
            self._read_at[secret_id] = self._clock()
            self._stale.discard(secret_id)
        if not isinstance(raw, dict):
            self._read_at.pop(secret_id, None)  # a value that is fixed later is read at once
            raise ConfigurationError(f"secret {label}", "is not a JSON object")
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self._read_at.pop(secret_id, None)
            field, message = describe_validation_error(exc)
            raise ConfigurationError(f"secret {label} field {field}", message) from None
