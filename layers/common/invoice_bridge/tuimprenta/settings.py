"""TuimprentaPollerFunction's settings."""

from __future__ import annotations

from pydantic import Field

from invoice_bridge.config import HttpUrl, Name, WorkerSettings

MAX_BATCH_SIZE = 1000  # tuimprenta's (and DESIGN.md's) limit of invoices in one batch


class TuimprentaPollerSettings(WorkerSettings):
    """Where tuimprenta is, its secret, the callback URL, and the poller's timings."""

    tuimprenta_api_url: HttpUrl = Field(alias="TUIMPRENTA_API_URL")
    tuimprenta_secret_id: Name = Field(alias="TUIMPRENTA_SECRET_ARN")
    # The stack's /webhooks/tuimprenta (output TuimprentaWebhookUrl); batches name it as their callback_url.
    callback_url: HttpUrl = Field(alias="TUIMPRENTA_CALLBACK_URL")
    # One run loops at most this long (well under the function's timeout), then leaves the rest to the next.
    run_seconds: float = Field(default=90, ge=0, le=840, alias="RUN_SECONDS")
    # A run holds the poller lease this long at most, so a crashed run never blocks the next for ever.
    lease_seconds: float = Field(default=150, gt=0, le=900, alias="LEASE_SECONDS")
    # A batch still queued/processing is polled after base, 2 x base, 4 x base... seconds, capped.
    poll_base_seconds: float = Field(default=5, gt=0, le=300, alias="POLL_BASE_SECONDS")
    poll_max_seconds: float = Field(default=60, gt=0, le=900, alias="POLL_MAX_SECONDS")
    # While draining, wait this long for more sales invoices before closing a batch (fewer, fuller batches).
    batch_window_seconds: float = Field(default=2, ge=0, le=20, alias="BATCH_WINDOW_SECONDS")
    # How often a waiting run looks for recorded callbacks.
    hint_check_seconds: float = Field(default=1, gt=0, le=60, alias="HINT_CHECK_SECONDS")
    max_batch_size: int = Field(default=MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, alias="MAX_BATCH_SIZE")
    # A batch that failed as a whole (or left invoices without a result) is re-submitted up to this many times.
    max_attempts: int = Field(default=3, ge=1, le=10, alias="MAX_BATCH_ATTEMPTS")
    rate_limit_per_minute: int = Field(default=60, ge=1, le=10_000, alias="TUIMPRENTA_RATE_LIMIT_PER_MINUTE")
    cancel_reason: str = Field(default="canceled in BuildNexion", min_length=1, alias="CANCEL_REASON")
