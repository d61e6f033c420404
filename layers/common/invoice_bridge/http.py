"""The HTTP client base every platform client extends: one session, explicit timeouts, typed errors, one
retry decision that honours `Retry-After` and the rate-limit headers, and a shared rate limiter.

A platform client says only what is its own: its name, auth headers, how its error bodies read, and which
statuses are retryable if they differ from the table here.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import requests
from pydantic import SecretStr

from invoice_bridge.errors import PermanentSyncError, PlatformError
from invoice_bridge.observability import count, count_for_bundle, logger

# (connect, read) in seconds: far under the shortest worker timeout, so a hung platform fails the call,
# not the invocation. Platforms may pass longer reads (PDF downloads) per call.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
# Time kept back from a deadline for the work after a call (ledger write, SQS calls).
DEADLINE_RESERVE_SECONDS = 3.0
MAX_BACKOFF_SECONDS = 8.0
# The longest wait a platform may ask for (Retry-After, a rate-limit reset): every documented window is a
# minute at most, and a longer pause would hold every worker of the credential while messages run out of receives.
MAX_WAIT_SECONDS = 300.0
# A wait further off than this is not a long wait but a wrong unit (epoch milliseconds) or a broken header:
# it is ignored, and the ordinary backoff applies.
IMPLAUSIBLE_WAIT_SECONDS = 86_400.0
# A reset above this is an epoch timestamp, not a number of seconds (2001-09-09 in epoch seconds).
EPOCH_THRESHOLD = 1_000_000_000
# ASCII digits only: `str.isdigit` and `float` also take superscripts, Arabic-Indic digits, "inf", "nan" and "1e999".
_NUMBER = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")

# Status → retryable. Anything 5xx not listed is retryable; anything else not listed is permanent.
DEFAULT_STATUS_RETRYABLE: Mapping[int, bool] = {
    400: False,
    401: True,  # an expired or revoked token: renewed by the client, or fixed by an operator
    402: False,
    403: False,
    404: False,
    405: False,
    406: False,
    409: False,
    410: False,
    413: False,
    415: False,
    422: False,
    423: True,
    425: True,
    429: True,
}
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Deadline:
    """When the current invocation must be done; work that cannot finish before it is not started."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expires = clock() + seconds

    @classmethod
    def from_context(cls, context: Any, reserve_seconds: float = DEADLINE_RESERVE_SECONDS) -> Deadline:
        """The Lambda context's remaining time, less a reserve for the bookkeeping after the last call."""
        return cls(max(0.0, context.get_remaining_time_in_millis() / 1000 - reserve_seconds))

    @classmethod
    def unlimited(cls) -> Deadline:
        """No deadline (tools and tests)."""
        return cls(float("inf"))

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._expires - self._clock())

    def allows(self, seconds: float) -> bool:
        """Whether `seconds` of waiting or work still fit."""
        return seconds <= self.remaining()


class RateLimiter(Protocol):
    """What the client needs of a limiter shared by every Lambda using one credential."""

    def acquire(self, deadline: Deadline) -> None:
        """Wait for a slot; raise RetryLater when none comes before the deadline."""

    def pause_until(self, epoch_seconds: float) -> None:
        """Hold every user of the credential until then (the platform said so)."""


@dataclass(frozen=True)
class ErrorDetail:
    """What a platform's error body says."""

    message: str
    code: str | None = None
    field: str | None = None


def jitter(delay: float, spread: float = 0.2) -> float:
    """`delay` spread by ±`spread` (a fraction), so retrying workers do not move in lockstep."""
    return max(0.0, delay * (1 + random.uniform(-spread, spread)))  # noqa: S311 - not cryptographic


def backoff(attempt: int, base: float = 0.5, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Exponential backoff for the `attempt`-th retry (1-based), capped, with jitter."""
    return jitter(min(cap, base * 2 ** (attempt - 1)))


def retry_after_seconds(headers: Mapping[str, str], now: float, *, rate_limited: bool = True) -> float | None:
    """How long the platform asked us to wait: Retry-After (seconds or HTTP date), else the RateLimit reset.

    `RateLimit-Reset` (IETF draft) is a delta in seconds; `X-RateLimit-Reset` is a delta too unless it is
    clearly an epoch timestamp (some platforms send one). The reset is a wait only on a rate-limited answer
    (`rate_limited`): platforms send it on every answer, and a 5xx is not a request to wait for the window.
    A wait is capped at MAX_WAIT_SECONDS; one further off than a day (epoch milliseconds, a far-future date)
    counts as no answer at all.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after")
    if value is not None:
        value = value.strip()
        seconds = _number(value)
        if seconds is not None:
            return _bounded_wait(seconds)
        try:
            return _bounded_wait(parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, OverflowError):
            pass
    if not rate_limited:
        return None
    for name in ("ratelimit-reset", "x-ratelimit-reset"):
        reset = _number(lowered.get(name))
        if reset is not None:
            return _bounded_wait(reset - now if reset > EPOCH_THRESHOLD else reset)
    return None


def exhausted_until(headers: Mapping[str, str], now: float) -> float | None:
    """When a successful answer says no request is left in the window: the earliest the window can reset.

    A delta reset is whole seconds rounded up, so the true reset lies up to a second sooner: the pause
    takes that lower bound, never waiting longer than the platform needs (our own limiter spaces the rest).
    The pause is capped like every wait (MAX_WAIT_SECONDS); an implausible reset pauses nothing.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    for prefix in ("ratelimit", "x-ratelimit"):
        remaining = _number(lowered.get(f"{prefix}-remaining"))
        reset = _number(lowered.get(f"{prefix}-reset"))
        if remaining is None or remaining > 0 or reset is None:
            continue
        wait = _bounded_wait(reset - now if reset > EPOCH_THRESHOLD else max(0.0, reset - 1))
        return None if wait is None else now + wait
    return None


def _bounded_wait(seconds: float) -> float | None:
    if not math.isfinite(seconds) or seconds > IMPLAUSIBLE_WAIT_SECONDS:
        return None
    return min(MAX_WAIT_SECONDS, max(0.0, seconds))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().split(",")[0].strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def segment(value: str) -> str:
    """`value` as one URL path segment, every reserved character encoded; PermanentSyncError for `.`, `..`, "".

    Ids come from events and platform answers; `../webhooks` must not reach another endpoint of the host. A
    dot segment cannot be encoded away (requests decodes `%2E` back to `.`), so it is refused.
    """
    if value.strip(".") == "":
        raise PermanentSyncError(f"an id of {len(value)} dot(s) cannot name a resource", code="unsafe_id")
    return quote(value, safe="")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit: what must match for credentials to go along."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # a port that is not a number matches no origin
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class ApiClient:
    """Base of the platform clients: every outside call of the bundle goes through `request`."""

    platform: ClassVar[str] = "platform"
    status_retryable: ClassVar[Mapping[int, bool]] = DEFAULT_STATUS_RETRYABLE
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id", "x-amzn-requestid")

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limiter: RateLimiter | None = None,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.limiter = limiter
        self.max_attempts = max_attempts
        self._clock = clock
        self._sleep = sleep

    # -- what a platform overrides -------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Credentials for one request (never logged)."""
        return {}

    def default_headers(self) -> dict[str, str]:
        """Headers every request carries (media types)."""
        return {}

    def parse_error(self, response: requests.Response) -> ErrorDetail:
        """What the error body says; the base reads `{"error": {"message", "code"|"type", "field"}}`."""
        try:
            document = response.json()
        except ValueError:
            return ErrorDetail(message=response.reason or f"HTTP {response.status_code}")
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict):
            return ErrorDetail(
                message=str(error.get("message") or response.reason),
                code=_text(error.get("code") or error.get("type")),
                field=_text(error.get("field") or error.get("param")),
            )
        return ErrorDetail(message=response.reason or f"HTTP {response.status_code}")

    def on_unauthorized(self) -> bool:
        """A 401 came back: drop cached credentials and return True to try once more (Quipu's token)."""
        return False

    def same_origin(self, url: str) -> bool:
        """Whether `url` has the base URL's scheme, host and port (so it may carry the credentials)."""
        return credentials_may_go_to(self.base_url, url)

    def downgrades(self, url: str) -> bool:
        """Whether `url` is plain HTTP while the base URL is HTTPS."""
        return origin(self.base_url)[0] == "https" and origin(url)[0] != "https"

    # -- the one place that calls out ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        deadline: Deadline,
        params: Mapping[str, Any] | None = None,
        json_text: str | None = None,
        data: bytes | str | Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        retry_safe: bool | None = None,
        authenticate: bool = True,
        expected: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one request (retrying where safe); the response when 2xx or in `expected`, else PlatformError.

        `retry_safe` says whether the request may be sent again after a timeout or 5xx, whose effect is
        unknown: by default only for idempotent methods. A 429 is always retried (it had no effect).
        """
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if retry_safe is None else retry_safe
        absolute = path.startswith(("http://", "https://"))
        url = path if absolute else f"{self.base_url}{path}"
        if absolute:
            # An absolute URL comes from a platform's answer: the credentials go only to the base's own origin,
            # and nothing goes over plain HTTP when the base is HTTPS.
            if not self.same_origin(url):
                authenticate = False
            if self.downgrades(url):
                raise PlatformError(
                    self.platform,
                    f"{method}: refused a plain-HTTP URL under an HTTPS base",
                    code="insecure_url",
                    retryable=False,
                )
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire(deadline)
            read_timeout = min((timeout or self.timeout)[1], max(1.0, deadline.remaining()))
            all_headers = {**self.default_headers(), **(headers or {})}
            if json_text is not None:
                all_headers.setdefault("Content-Type", "application/json")
            if authenticate:
                all_headers.update(self.auth_headers())
            started = time.perf_counter()
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=json_text.encode("utf-8") if json_text is not None else data,
                    files=files,
                    headers=all_headers,
                    timeout=((timeout or self.timeout)[0], read_timeout),
                    allow_redirects=False,
                )
            except requests.Timeout:
                error = PlatformError(self.platform, f"{method} {path} timed out", retryable=True, code="timeout")
            except requests.ConnectionError:
                error = PlatformError(self.platform, f"{method} {path}: cannot connect", retryable=True, code="network")
            else:
                self._log(method, path, response, started)
                self._observe_limits(response)
                # 2xx only: `ok` also holds for a 3xx, whose empty body would pass for an answer; no platform
                # documents a redirect, and following one would carry the credentials elsewhere.
                if 200 <= response.status_code < 300 or response.status_code in expected:
                    return response
                if response.status_code == 401 and authenticate and not reauthenticated and self.on_unauthorized():
                    reauthenticated = True
                    attempt -= 1  # a renewed token is a fresh start, not a retry
                    continue
                error = self.error_from(response)
            delay = self.retry_delay(error, attempt, safe, deadline)
            if delay is None:
                raise error
            self._sleep(delay)

    def raise_error(self, response: requests.Response) -> NoReturn:
        """Raise the typed error for a response the caller did not expect."""
        raise self.error_from(response)

    def error_from(self, response: requests.Response) -> PlatformError:
        """The typed error for an error response: retryable by the status table, with the body's detail."""
        status = response.status_code
        if status in {401, 403}:
            # The credentials may have been rotated: the secrets are read again before the next try.
            from invoice_bridge.secrets import credentials_refused

            credentials_refused()
        detail = self.parse_error(response)
        retryable = self.status_retryable.get(status, status >= 500)
        retry_after = (
            retry_after_seconds(response.headers, self._clock(), rate_limited=status == 429) if retryable else None
        )
        if status == 429 and retry_after is not None and self.limiter is not None:
            self.limiter.pause_until(self._clock() + retry_after)
        request_id = next((response.headers[h] for h in self.request_id_headers if h in response.headers), None)
        return PlatformError(
            self.platform,
            detail.message,
            status=status,
            code=detail.code,
            field=detail.field,
            request_id=request_id,
            body=response.text,
            retryable=retryable,
            retry_after=retry_after,
        )

    def retry_delay(self, error: PlatformError, attempt: int, retry_safe: bool, deadline: Deadline) -> float | None:
        """The one retry decision: seconds to wait before sending again, or None to give up now."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        if error.status != 429 and not retry_safe:
            return None  # the effect of a write that timed out or failed with 5xx is unknown: the caller decides
        delay = jitter(error.retry_after, 0.1) if error.retry_after is not None else backoff(attempt)
        if error.status == 429 and self.limiter is not None:
            delay = 0.0  # the limiter was paused until the reset; its acquire does the waiting
        if not deadline.allows(delay + self.timeout[0]):
            return None
        return delay

    def _observe_limits(self, response: requests.Response) -> None:
        if self.limiter is None or response.status_code == 429:
            return
        until = exhausted_until(response.headers, self._clock())
        if until is not None:
            self.limiter.pause_until(until)

    def _log(self, method: str, path: str, response: requests.Response, started: float) -> None:
        # Paths and statuses only: bodies carry personal data, headers carry credentials. A success is a DEBUG
        # line (LogLevel=DEBUG shows every request and its time): at INFO it was two to five lines of each
        # document's four, and CloudWatch bills every byte. A refusal or failure stays at INFO.
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        log = logger.debug if response.status_code < 300 else logger.info
        log(
            "platform call",
            extra={
                "platform": self.platform,
                "method": method,
                "path": path.split("?")[0],
                "status": response.status_code,
                "ms": elapsed_ms,
            },
        )
        # Not counted as a metric too: the line above is the count (Logs Insights), and a metric per request
        # was an EMF blob per request and a $0.30-a-month series per platform.
        if response.status_code == 429:
            count("PlatformRateLimited", {"platform": self.platform})
        elif response.status_code in (401, 403):
            # A revoked or wrong credential fails every call after the message left the queue: alarmed per
            # credential, not per function (every worker holds the one BuildNexion key).
            count_for_bundle("PlatformAuthRefused", {"platform": self.platform})


class BearerKeyClient(ApiClient):
    """A platform that takes its API key as a bearer token and answers JSON (BuildNexion, tuimprenta)."""

    def __init__(self, base_url: str, api_key: SecretStr, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        """The API key as a bearer token (never logged)."""
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}

    def default_headers(self) -> dict[str, str]:
        """JSON answers."""
        return {"Accept": "application/json"}


def credentials_may_go_to(base_url: str, url: str) -> bool:
    """Whether a request to `url` may carry the credentials of the API at `base_url`: its own origin only.

    Same scheme, host and port (so never over plain http when the base is https): a redirect to another
    host (a presigned download URL) is fetched without them. The one place that decides it.
    """
    if not url.startswith(("http://", "https://")):
        return True  # a path on the API itself
    return origin(url) == origin(base_url)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
