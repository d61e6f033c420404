"""Sandbox BuildNexion (docs/buildnexion-contract.md), and a sender that signs webhooks as BuildNexion does.

Written from the contract (DESIGN.md, "BuildNexion contract") alone: its signing and its checks of the
objects it holds are its own code and import nothing of `invoice_bridge`, so a misreading of the contract
in the product cannot pass on both sides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import requests

from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router

DEFAULT_API_KEY = "bn_test_sandbox_api_key"
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox_local_only_0000000000"  # noqa: S105 - public sandbox default
FIXTURES = Path(__file__).parent / "fixtures"
SEND_TIMEOUT = (3.05, 10)
RETRY_BACKOFF_SECONDS = 0.2
SIGNATURE_HEADER = "BuildNexion-Signature"
COLLECTIONS = {
    "providers": "provider",
    "invoices": "invoice",
    "purchase_orders": "purchase_order",
    "sales_invoices": "sales_invoice",
}


def signature_header(webhook_secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<unix s>,v1=<hex>[,v1=<hex>...]`: HMAC-SHA256 of `"{t}.{raw body}"`, one `v1` per secret."""
    message = f"{timestamp}.".encode() + body
    entries = [f"t={timestamp}"]
    # The key is the whole secret string, `whsec_` prefix included (DESIGN.md, "BuildNexion contract").
    entries += [f"v1={hmac.new(s.encode('utf-8'), message, hashlib.sha256).hexdigest()}" for s in webhook_secrets]
    return ",".join(entries)


def sign_and_post(
    url: str,
    body: bytes,
    webhook_secrets: Sequence[str],
    *,
    timestamp: int | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST `body` to `url` signed like BuildNexion (one v1 entry per secret)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "BuildNexion-Webhooks/1.0 (sandbox)",
        SIGNATURE_HEADER: signature_header(webhook_secrets, stamp, body),
    }
    return (session or requests).post(url, data=body, headers=headers, timeout=SEND_TIMEOUT)


# -- the objects BuildNexion holds, checked against the contract -----------------------------------------


class ObjectRefused(ValueError):
    """An object the contract says BuildNexion cannot hold; `field` is its dotted path (`lines[0].quantity`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# SQS takes at most 128 characters for a group id, from this alphabet; an object id becomes one.
_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")  # plain notation: no exponent, sign only in front, no spaces
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MISSING = object()


class _Fields:
    """Reads one JSON object's fields, refusing the first that breaks the contract."""

    def __init__(self, document: Any, path: str) -> None:
        if not isinstance(document, dict):
            raise ObjectRefused(path or "body", "must be a JSON object")
        self._document: dict[str, Any] = document
        self._path = path

    def name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def get(self, key: str, *, optional: bool) -> Any:
        value = self._document.get(key, _MISSING)
        if value is _MISSING or (optional and value is None):
            if optional:
                return _MISSING
            raise ObjectRefused(self.name(key), "required")
        return value

    def text(
        self,
        key: str,
        *,
        optional: bool = False,
        blank: bool = False,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> None:
        value = self.get(key, optional=optional)
        if value is _MISSING:
            return
        if not isinstance(value, str):
            raise ObjectRefused(self.name(key), "must be a string")
        if not (optional or blank) and not value.strip():
            raise ObjectRefused(self.name(key), "must not be empty")
        if pattern is not None and not pattern.match(value):
            raise ObjectRefused(self.name(key), hint)

    def cents(self, key: str, *, optional: bool = False) -> None:
        value = self.get(key, optional=optional)
        # bool is an int in Python, never in JSON: true is not an amount.
        if value is not _MISSING and (not isinstance(value, int) or isinstance(value, bool)):
            raise ObjectRefused(self.name(key), "must be integer cents (a JSON integer, not a string or a float)")

    def decimal(self, key: str, *, optional: bool = False) -> None:
        value = self.get(key, optional=optional)
        if value is _MISSING:
            return
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise ObjectRefused(self.name(key), 'must be a decimal string, e.g. "12.5" (not a JSON number)')

    def day(self, key: str, *, optional: bool = False) -> None:
        value = self.get(key, optional=optional)
        if value is _MISSING:
            return
        try:
            if not isinstance(value, str) or not _DATE.match(value):
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            raise ObjectRefused(self.name(key), "must be a date YYYY-MM-DD") from None

    def moment(self, key: str, *, optional: bool = False) -> None:
        value = self.get(key, optional=optional)
        if value is _MISSING:
            return
        try:
            if not isinstance(value, str) or "T" not in value.upper():
                raise ValueError(value)
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ObjectRefused(self.name(key), "must be an ISO 8601 date-time, e.g. 2026-11-03T10:15:00Z") from None
        if parsed.tzinfo is None:
            raise ObjectRefused(self.name(key), "must carry a time zone (Z or +hh:mm)")

    def flag(self, key: str) -> None:
        value = self.get(key, optional=True)
        if value is not _MISSING and not isinstance(value, bool):
            raise ObjectRefused(self.name(key), "must be true or false")

    def nested(self, key: str) -> _Fields:
        return _Fields(self.get(key, optional=False), self.name(key))

    def lines(self) -> list[_Fields]:
        value = self.get("lines", optional=False)
        if not isinstance(value, list):
            raise ObjectRefused(self.name("lines"), "must be a list")
        return [_Fields(line, f"{self.name('lines')}[{n}]") for n, line in enumerate(value)]


def _check_provider(obj: _Fields) -> None:
    obj.text("name")
    obj.text("nif")
    for key in ("email", "phone", "address", "town", "zip_code"):
        obj.text(key, optional=True)
    obj.text("country_code", optional=True, pattern=_COUNTRY, hint="must be two capital letters (ISO 3166), e.g. ES")


def _check_invoice(obj: _Fields) -> None:
    obj.text("invoice_number")
    obj.day("issue_date")
    obj.day("due_date", optional=True)
    obj.text("currency", pattern=_CURRENCY, hint="must be three capital letters (ISO 4217), e.g. EUR")
    obj.text("provider_id")
    obj.text("status")
    obj.moment("paid_at", optional=True)
    for line in obj.lines():
        line.text("description", blank=True)
        line.decimal("quantity")
        line.cents("unit_amount")
        line.decimal("unit_amount_decimal", optional=True)
        line.decimal("vat_percent")
        line.decimal("retention_percent", optional=True)
    for key in ("subtotal_amount", "vat_amount", "retention_amount", "total_amount"):
        obj.cents(key)


def _check_purchase_order(obj: _Fields) -> None:
    obj.text("number")
    obj.day("date")
    obj.text("provider_id")
    obj.text("currency", pattern=_CURRENCY, hint="must be three capital letters (ISO 4217), e.g. EUR")
    obj.text("status")
    obj.text("notes", optional=True)
    for line in obj.lines():
        line.text("product_code", optional=True)
        line.text("description", blank=True)
        line.decimal("quantity")
        line.cents("unit_amount")
        line.decimal("unit_amount_decimal", optional=True)
        line.decimal("vat_percent")


def _check_sales_invoice(obj: _Fields) -> None:
    obj.text("series")
    obj.day("issue_date")
    obj.text("currency", pattern=_CURRENCY, hint="must be three capital letters (ISO 4217), e.g. USD")
    obj.flag("send_email")
    obj.text("status")
    customer = obj.nested("customer")
    customer.text("name")
    customer.text("tax_id")
    customer.text("email", optional=True)
    for line in obj.lines():
        line.text("sku", optional=True)
        line.text("description", blank=True)
        line.decimal("quantity")
        line.cents("unit_amount")
        line.decimal("unit_amount_decimal", optional=True)
        line.decimal("tax_rate")


_CHECKS = {
    "provider": _check_provider,
    "invoice": _check_invoice,
    "purchase_order": _check_purchase_order,
    "sales_invoice": _check_sales_invoice,
}


def check_object(document: Any) -> tuple[str, str]:
    """(kind, id) of an object BuildNexion can hold; ObjectRefused naming the first field that breaks the contract.

    Unknown fields are kept (a newer BuildNexion adds fields); `updated_at` is required of every kind but
    the provider, which has none.
    """
    obj = _Fields(document, "")
    kind = obj.get("object", optional=False)
    if kind not in _CHECKS:
        raise ObjectRefused("object", f"unknown object kind; known: {', '.join(_CHECKS)}")
    obj.text("id", pattern=_ID, hint="must be 1-128 letters, digits or ASCII punctuation")
    _CHECKS[kind](obj)
    if kind != "provider":
        obj.moment("updated_at")
    return str(kind), str(document["id"])


@dataclass(frozen=True)
class Subscription:
    """A registered webhook endpoint; during a rotation it signs with every secret it holds."""

    id: str
    url: str
    events: tuple[str, ...]
    secrets: tuple[str, ...]

    @property
    def secret(self) -> str:
        """The secret the registration answered with (the newest)."""
        return self.secrets[-1]

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribed to `event_type` (`*` takes all)."""
        return "*" in self.events or event_type in self.events


@dataclass(frozen=True)
class Delivery:
    """One attempt chain of one event to one endpoint."""

    subscription_id: str
    event_id: str
    status: int | None
    attempts: int
    response: Any


class BuildNexionPeer:
    """BuildNexion's API on a loopback port, with its objects in memory."""

    def __init__(
        self,
        api_key: str,
        webhook_secrets: Sequence[str],
        *,
        port: int = 0,
        max_attempts: int = 3,
        faults: FaultPlan | None = None,
    ):
        if not webhook_secrets:
            raise ValueError("the sandbox BuildNexion needs at least one webhook secret")
        self._api_key = api_key
        self._webhook_secrets = list(webhook_secrets)
        self._max_attempts = max_attempts
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._session = requests.Session()
        router = Router()
        for collection in COLLECTIONS:
            router.add("GET", f"/v1/{collection}/{{id}}", self._get_object(collection))
            if collection != "providers":
                router.add("GET", f"/v1/{collection}", self._list_objects(collection))
        router.add("GET", "/v1/invoices/{id}/pdf", self._get_invoice_pdf)
        router.add("POST", "/v1/webhooks", self._post_webhook)
        # Sandbox only: what `invoice-bridge local send` uses to hold the object of an event it sends.
        router.add("PUT", "/v1/sandbox/objects", self._put_object)
        # Faults (LOCAL_FAULTS) play on the API; the sandbox-only control route is exempt.
        self.faults = faults or FaultPlan(peer="buildnexion")
        self._suspended = 0
        wrapped = self.faults.wrap(
            router,
            exempt=self._exempt,
            error_reply=lambda status, code: _error(status, code or "api_error", "service unavailable"),
        )
        self._server = LocalHttpServer(wrapped, port=port)
        self.put_objects(json.loads((FIXTURES / "providers.json").read_text(encoding="utf-8")))

    @property
    def base_url(self) -> str:
        """The API base, as `BUILDNEXION_API_URL` takes it."""
        return f"{self._server.url}/v1"

    def start(self) -> None:
        """Serve."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()
        self._session.close()

    def put_objects(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Store objects as GET will return them; ObjectRefused (nothing stored) if one breaks the contract."""
        checked = [(check_object(obj), dict(obj)) for obj in objects]
        with self._lock:
            for key, obj in checked:
                self._objects[key] = obj

    @contextmanager
    def faults_suspended(self) -> Iterator[None]:
        """Answer every request without the fault plan while inside (a check reading what BuildNexion holds)."""
        with self._lock:
            self._suspended += 1
        try:
            yield
        finally:
            with self._lock:
                self._suspended -= 1

    def _exempt(self, request: Request) -> bool:
        with self._lock:
            suspended = self._suspended > 0
        return suspended or request.path.startswith("/v1/sandbox/")

    def subscribe(self, url: str, events: Sequence[str]) -> Subscription:
        """Register a webhook endpoint, as `POST /webhooks` does.

        The first registration of a URL gets the sandbox's configured secrets. Registering the same URL
        again rotates: a new secret is made and deliveries carry a `v1=` entry for the old and the new
        one, so a receiver that knows either keeps accepting them.
        """
        with self._lock:
            existing = next((s for s in self._subscriptions if s.url == url), None)
            if existing is None:
                subscription = Subscription(
                    f"we_{secrets.token_hex(6)}",
                    url,
                    tuple(events),
                    tuple(self._webhook_secrets[:1]) + tuple(self._webhook_secrets[1:]),
                )
                self._subscriptions.append(subscription)
                return Subscription(subscription.id, url, subscription.events, (self._webhook_secrets[0],))
            rotated = Subscription(
                existing.id, url, tuple(events), (*existing.secrets, f"whsec_{secrets.token_hex(16)}")
            )
            self._subscriptions[self._subscriptions.index(existing)] = rotated
            return rotated

    def deliver(self, envelope: Mapping[str, Any], *, store: bool = True) -> list[Delivery]:
        """Store the event's object (unless `store` is False: an event arriving after a newer version was
        made) and send the event, signed, to every endpoint that wants it."""
        if store:
            self.put_objects([envelope["data"]["object"]])
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        with self._lock:
            targets = [s for s in self._subscriptions if s.wants(str(envelope["type"]))]
        return [self._send(target, str(envelope["id"]), body) for target in targets]

    def _send(self, subscription: Subscription, event_id: str, body: bytes) -> Delivery:
        status: int | None = None
        document: Any = None
        attempts = 0
        while attempts < self._max_attempts:
            if attempts:
                time.sleep(RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1))  # BuildNexion backs off between retries
            attempts += 1
            try:
                response = sign_and_post(subscription.url, body, subscription.secrets, session=self._session)
            except requests.RequestException:
                status, document = None, None
                continue
            status = response.status_code
            try:
                document = response.json() if response.content else None
            except ValueError:
                document = response.text  # an endpoint (or a proxy before it) that answered with no JSON
            # BuildNexion retries 5xx and network failures; anything else is the endpoint's final word.
            if status < 500:
                break
        return Delivery(subscription.id, event_id, status, attempts, document)

    def _authorized(self, request: Request) -> bool:
        expected = f"Bearer {self._api_key}"
        return secrets.compare_digest((request.header("authorization") or "").encode(), expected.encode())

    def _get_object(self, collection: str) -> Any:
        kind = COLLECTIONS[collection]

        def handle(request: Request, params: dict[str, str]) -> Reply:
            self.calls[f"GET /{collection}/{{id}}"] += 1
            if not self._authorized(request):
                return _error(401, "unauthorized", "invalid API key")
            with self._lock:
                obj = self._objects.get((kind, params["id"]))
            if obj is None:
                return _error(404, "not_found", f"no {kind} {params['id']}")
            return Reply.json(200, obj)

        return handle

    def _list_objects(self, collection: str) -> Any:
        kind = COLLECTIONS[collection]

        def handle(request: Request, _params: dict[str, str]) -> Reply:
            self.calls[f"GET /{collection}"] += 1
            if not self._authorized(request):
                return _error(401, "unauthorized", "invalid API key")
            query = {k: v[-1] for k, v in request.query.items()}
            try:
                page = list_page(self.objects_of(kind), query)
            except ListParameterError as exc:
                return Reply.json(400, {"error": {"message": exc.message, "param": exc.param}})
            return Reply.json(200, page)

        return handle

    def objects_of(self, kind: str) -> list[dict[str, Any]]:
        """Every stored object of a kind (copies)."""
        with self._lock:
            return [dict(obj) for (k, _), obj in self._objects.items() if k == kind]

    def _get_invoice_pdf(self, request: Request, params: dict[str, str]) -> Reply:
        self.calls["GET /invoices/{id}/pdf"] += 1
        if not self._authorized(request):
            return _error(401, "unauthorized", "invalid API key")
        with self._lock:
            invoice = self._objects.get(("invoice", params["id"]))
        if invoice is None:
            return _error(404, "not_found", f"no invoice {params['id']}")
        return Reply(200, _minimal_pdf(str(invoice["invoice_number"])), {"Content-Type": "application/pdf"})

    def _put_object(self, request: Request, _params: dict[str, str]) -> Reply:
        self.calls["PUT /sandbox/objects"] += 1
        if not self._authorized(request):
            return _error(401, "unauthorized", "invalid API key")
        try:
            document = request.json()
        except ValueError:
            return _error(400, "invalid_request", "body is not JSON", "body")
        try:
            self.put_objects([document])
        except ObjectRefused as refused:
            return _error(400, "invalid_request", refused.message, refused.field)
        return Reply(204)

    def _post_webhook(self, request: Request, _params: dict[str, str]) -> Reply:
        self.calls["POST /webhooks"] += 1
        if not self._authorized(request):
            return _error(401, "unauthorized", "invalid API key")
        try:
            document = request.json()
        except ValueError:
            return _error(400, "invalid_request", "body is not JSON")
        try:
            url, events = _webhook_request(document)
        except ObjectRefused as refused:
            return _error(400, "invalid_request", refused.message, refused.field)
        subscription = self.subscribe(url, events)
        return Reply.json(
            200,
            {
                "id": subscription.id,
                "url": subscription.url,
                "events": list(subscription.events),
                "secret": subscription.secret,
            },
        )


def _webhook_request(document: Any) -> tuple[str, list[str]]:
    """`POST /webhooks` body: `url` http(s), `events` a non-empty list of event types (`*` for all)."""
    body = _Fields(document, "")
    body.text("url", pattern=re.compile(r"^https?://\S+$"), hint="must be an http:// or https:// URL")
    events = body.get("events", optional=False)
    if not isinstance(events, list) or not events:
        raise ObjectRefused("events", "must be a non-empty list of event types")
    for n, event in enumerate(events):
        if not isinstance(event, str) or not event:
            raise ObjectRefused(f"events[{n}]", "must be an event type, e.g. invoice.created, or *")
    return str(document["url"]), events


class ListParameterError(ValueError):
    """A list query parameter BuildNexion refuses with 400 `{"error": {"message", "param"}}`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def _sort_key(obj: Mapping[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(str(obj["updated_at"]).replace("Z", "+00:00")), str(obj["id"])


def list_page(objects: Iterable[Mapping[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of a list endpoint: `updated_since` (unix s), `limit` 1..100 (20), `starting_after` (id)."""
    unknown = set(query) - {"updated_since", "limit", "starting_after"}
    if unknown:
        raise ListParameterError(sorted(unknown)[0], "unknown parameter")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise ListParameterError("limit", "must be an integer from 1 to 100") from None
    if not 1 <= limit <= 100:
        raise ListParameterError("limit", "must be an integer from 1 to 100")
    since: datetime | None = None
    if "updated_since" in query:
        try:
            since = datetime.fromtimestamp(int(query["updated_since"]), tz=UTC)
        except (ValueError, OverflowError, OSError):
            raise ListParameterError("updated_since", "must be a unix timestamp in seconds") from None
    ordered = sorted((o for o in objects if since is None or _sort_key(o)[0] >= since), key=_sort_key)
    after = query.get("starting_after")
    if after is not None:
        positions = [i for i, o in enumerate(ordered) if o["id"] == after]
        if not positions:
            raise ListParameterError("starting_after", f"no object {after} in this list")
        ordered = ordered[positions[0] + 1 :]
    return {"object": "list", "data": ordered[:limit], "has_more": len(ordered) > limit}


def _error(status: int, kind: str, message: str, field: str | None = None) -> Reply:
    error: dict[str, Any] = {"type": kind, "message": message}
    if field:
        error["field"] = field
    return Reply.json(status, {"error": error})


def _minimal_pdf(title: str) -> bytes:
    # A one-page PDF good enough for an attachment upload; the text is the invoice number only.
    text = title.replace("(", "").replace(")", "").replace("\\", "")
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
