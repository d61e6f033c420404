"""Sandbox tuimprenta.digital, written from its API reference (../shared/seeds/003_*.txt) and DESIGN.md alone.

Imports nothing of the product: its JSON money writer, result CSV and callback signature are its own, so a
misreading of the contract on our side cannot pass on both sides. Every choice where the reference is silent
is in docs/sandbox-tuimprenta.md. Faults (sandbox/faults.py) come after the key and the rate limit: seeded
ones from LOCAL_FAULTS (5xx, hangs, and the named kinds tuimprenta plays), and scripted ones for tests.
"""

from __future__ import annotations

import csv
import email.policy
import hashlib
import hmac
import io
import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import requests

from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck
from sandbox.ratelimit import SlidingWindow

if TYPE_CHECKING:
    from sandbox.buildnexion import BuildNexionPeer
    from sandbox.settings import LocalSettings

DEFAULT_PROCESSING_SECONDS = 3.0
MAX_BATCH = 1000  # DESIGN.md: at most 1,000 invoices a batch
CALLBACK_TIMEOUT = (3.05, 10)  # the reference asks receivers to answer in < 10 s
# DESIGN.md fixes the result CSV's header (the reference only says "invoice_id, status, errores, etc.").
RESULT_HEADER = ("index", "invoice_id", "status", "series", "number", "error_code", "error_message")
SIGNATURE_HEADER = "X-Tuimprenta-Signature"
FINISHED = frozenset({"completed", "failed", "partial"})
INVOICE_STATUSES = frozenset({"issued", "canceled", "draft"})
LIST_DEFAULT_LIMIT = 50  # the reference's own example asks for 50
LIST_MAX_LIMIT = 100
# ISO 4217 minor units where they are not 2. A unit price may carry this many places beyond them (DESIGN.md
# sends sub-cent unit prices with exactly their decimals: 903.8 cents is 9.038); totals keep the minor unit.
MINOR_UNITS = {"BHD": 3, "CLP": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3}
UNIT_PRICE_EXTRA_PLACES = 4
DEFAULT_CURRENCY = "USD"  # the reference's examples; a batch invoice may leave currency out
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")

# The fields the reference's schema summary shows an invoice taking (id, number, status, totals, links and
# created_at are the platform's own); anything else is refused, so a misspelt field cannot pass unnoticed.
INVOICE_FIELDS = frozenset({"series", "issue_date", "customer", "items", "currency", "send_email", "metadata"})
CUSTOMER_FIELDS = frozenset({"name", "tax_id", "email"})
ITEM_FIELDS = frozenset({"sku", "description", "qty", "unit_price", "tax_rate"})
BATCH_FIELDS = frozenset({"type", "payload", "callback_url"})

# Error types and codes by status. The reference shows one error ({"type": "validation_error", "code": "E1001"}
# for a missing tax_id); the others follow its pattern.
ERROR_TYPES = {
    401: "authentication_error",
    402: "fiscal_error",
    404: "not_found_error",
    409: "idempotency_error",
    422: "validation_error",
    429: "rate_limit_error",
}
E_JSON = "E1000"  # the body is not a JSON object
E_REQUIRED = "E1001"  # a required field is missing (the reference's own example)
E_TYPE = "E1002"  # a field of the wrong JSON type
E_VALUE = "E1003"  # a value out of its range: a date, a currency, a rate, an enumeration
E_DECIMALS = "E1004"  # more decimals than the currency allows
E_SIZE = "E1005"  # a batch of no invoice or of more than 1,000
E_UNKNOWN = "E1006"  # a field the schema does not have
E_MEDIA = "E1007"  # a JSON write without Content-Type: application/json
E_FISCAL = "E4020"
E_NOT_FOUND = "E4040"
E_IDEMPOTENCY = "E4090"
E_STATE = "E4091"  # the resource is not in a state that allows the request (an invoice canceled already)
E_RATE = "E4290"


def error_reply(status: int, message: str, code: str, field_name: str | None = None, kind: str | None = None) -> Reply:
    """The reference's error format: `{"error": {"type", "message", "field", "code"}}`."""
    kind = kind or ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return Reply.json(status, {"error": {"type": kind, "message": message, "field": field_name, "code": code}})


def sign(secret: str, body: bytes) -> str:
    """`X-Tuimprenta-Signature`: `sha256=` and the hex HMAC-SHA256 of the raw body under the webhook secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def json_text(document: Any) -> str:
    """JSON whose Decimal values are bare numbers with exactly their digits (12.50 stays 12.50)."""
    if isinstance(document, Decimal):
        return format(document, "f")
    if isinstance(document, Mapping):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{json_text(v)}" for k, v in document.items())
            + "}"
        )
    if isinstance(document, list | tuple):
        return "[" + ",".join(json_text(v) for v in document) + "]"
    if isinstance(document, float):
        raise TypeError("the sandbox writes money from Decimal, never float")
    return json.dumps(document, ensure_ascii=False)


def _json_reply(status: int, document: Any) -> Reply:
    return Reply(status, json_text(document).encode(), {"Content-Type": "application/json"})


def minor_units(currency: str) -> int:
    """The decimals of `currency`'s minor unit (ISO 4217; 2 for the codes not listed)."""
    return MINOR_UNITS.get(currency, 2)


class Invalid(Exception):
    """A request the reference says is refused: the field, the message, the code."""

    def __init__(
        self, field_name: str | None, message: str, code: str, status: int = 422, kind: str | None = None
    ) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.code = code
        self.status = status
        self.kind = kind

    def reply(self) -> Reply:
        """The error answer."""
        return error_reply(self.status, self.message, self.code, self.field, self.kind)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The body as JSON with numbers as Decimal (the exact digits sent); NaN, Infinity, duplicate keys refused."""
    try:
        return json.loads(
            body.decode("utf-8"),
            parse_float=Decimal,
            parse_constant=_no_constants,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(None, f"el cuerpo no es JSON válido: {exc}", E_JSON) from None


def _require_json_media(request: Request) -> None:
    media = (request.header("content-type") or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Invalid("Content-Type", "se requiere Content-Type: application/json", E_MEDIA)


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _object(value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(where or None, "debe ser un objeto JSON", E_TYPE)
    for key in value:
        if key not in allowed:
            raise Invalid(_at(where, key), f"el campo {key} no existe", E_UNKNOWN)
    return value


def _present(document: Mapping[str, Any], name: str, where: str, *, required: bool) -> Any:
    """The field's value; None when it may be left out; a JSON null counts as missing."""
    value = document.get(name)
    if value is None and (required or name in document):
        raise Invalid(_at(where, name), f"El campo {name} es requerido", E_REQUIRED)
    return value


def _text(document: Mapping[str, Any], name: str, where: str, *, required: bool) -> str | None:
    value = _present(document, name, where, required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(_at(where, name), f"El campo {name} debe ser texto", E_TYPE)
    if required and not value.strip():
        raise Invalid(_at(where, name), f"El campo {name} es requerido", E_REQUIRED)
    return value


def _number(document: Mapping[str, Any], name: str, where: str, *, required: bool) -> Decimal | None:
    value = _present(document, name, where, required=required)
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a number. A string of digits is not a number either.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Invalid(_at(where, name), f"El campo {name} debe ser un número JSON", E_TYPE)
    return Decimal(value)


def _places(value: Decimal) -> int:
    exponent = int(value.as_tuple().exponent)
    return -exponent if exponent < 0 else 0


def validate_invoice(value: Any, where: str = "") -> dict[str, Any]:
    """An invoice of `POST /invoices` or a batch payload, checked field by field; the document with defaults."""
    document = _object(value, where, INVOICE_FIELDS)
    series = _text(document, "series", where, required=True)
    issue_date = _text(document, "issue_date", where, required=False)
    if issue_date is not None:
        try:
            if not _DATE.fullmatch(issue_date):
                raise ValueError(issue_date)
            date.fromisoformat(issue_date)
        except ValueError:
            raise Invalid(_at(where, "issue_date"), "issue_date debe ser una fecha AAAA-MM-DD", E_VALUE) from None
    currency = _text(document, "currency", where, required=False)
    if currency is not None and not _CURRENCY.fullmatch(currency):
        raise Invalid(_at(where, "currency"), "currency debe ser un código ISO 4217 (3 letras)", E_VALUE)
    currency = currency or DEFAULT_CURRENCY
    customer_where = _at(where, "customer")
    if "customer" not in document:
        raise Invalid(customer_where, "El campo customer es requerido", E_REQUIRED)
    customer = _object(document["customer"], customer_where, CUSTOMER_FIELDS)
    _text(customer, "name", customer_where, required=True)
    _text(customer, "tax_id", customer_where, required=True)
    email = _text(customer, "email", customer_where, required=False)
    if email is not None and "@" not in email:
        raise Invalid(_at(customer_where, "email"), "email no es una dirección de correo", E_VALUE)
    items = document.get("items")
    if items is None:
        raise Invalid(_at(where, "items"), "El campo items es requerido", E_REQUIRED)
    if not isinstance(items, list):
        raise Invalid(_at(where, "items"), "items debe ser una lista", E_TYPE)
    if not items:
        raise Invalid(_at(where, "items"), "la factura no tiene renglones", E_REQUIRED)
    checked_items = [_validate_item(item, f"{_at(where, 'items')}[{n}]", currency) for n, item in enumerate(items)]
    send_email = document.get("send_email")
    if send_email is not None and not isinstance(send_email, bool):
        raise Invalid(_at(where, "send_email"), "send_email debe ser true o false", E_TYPE)
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise Invalid(_at(where, "metadata"), "metadata debe ser un objeto", E_TYPE)
    for key, entry in metadata.items():
        if not isinstance(entry, str):
            raise Invalid(_at(_at(where, "metadata"), key), "los valores de metadata son texto", E_TYPE)
    return {
        "series": series,
        "issue_date": issue_date or datetime.now(UTC).date().isoformat(),
        "customer": dict(customer),
        "items": checked_items,
        "currency": currency,
        "send_email": bool(send_email),
        "metadata": dict(metadata),
    }


def _validate_item(value: Any, where: str, currency: str) -> dict[str, Any]:
    item = _object(value, where, ITEM_FIELDS)
    _text(item, "sku", where, required=False)
    _text(item, "description", where, required=True)
    qty = _number(item, "qty", where, required=True)
    assert qty is not None
    if not qty > 0:
        raise Invalid(_at(where, "qty"), "qty debe ser mayor que 0", E_VALUE)
    price = _number(item, "unit_price", where, required=True)
    assert price is not None
    allowed = minor_units(currency) + UNIT_PRICE_EXTRA_PLACES
    if _places(price) > allowed:
        raise Invalid(
            _at(where, "unit_price"), f"unit_price admite a lo sumo {allowed} decimales en {currency}", E_DECIMALS
        )
    rate = _number(item, "tax_rate", where, required=False)
    if rate is not None and not Decimal(0) <= rate <= Decimal(1):
        raise Invalid(_at(where, "tax_rate"), "tax_rate es una fracción entre 0 y 1", E_VALUE)
    checked = {k: v for k, v in item.items() if k in {"sku", "description"}}
    checked.update(qty=qty, unit_price=price, tax_rate=Decimal(0) if rate is None else rate)
    return checked


def totals(document: Mapping[str, Any]) -> dict[str, Decimal]:
    """Subtotal and tax from the items, each rounded half up to the currency's minor unit; total their sum."""
    unit = Decimal(1).scaleb(-minor_units(document["currency"]))
    subtotal = sum((i["qty"] * i["unit_price"] for i in document["items"]), Decimal(0))
    tax = sum((i["qty"] * i["unit_price"] * i["tax_rate"] for i in document["items"]), Decimal(0))
    subtotal = subtotal.quantize(unit, rounding=ROUND_HALF_UP)
    tax = tax.quantize(unit, rounding=ROUND_HALF_UP)
    return {"subtotal": subtotal, "tax": tax, "total": subtotal + tax}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class IssuedInvoice:
    """An invoice the sandbox issued; `document` is the validated invoice (numbers as Decimal)."""

    id: str
    series: str
    number: int
    document: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "issued"
    cancel_reason: str | None = None
    issued_at: float = field(default_factory=time.monotonic)

    @property
    def buildnexion_id(self) -> str | None:
        """`metadata.buildnexion_id`, where the client set one."""
        value = (self.document.get("metadata") or {}).get("buildnexion_id")
        return value if isinstance(value, str) else None

    def as_json(self, base_url: str) -> dict[str, Any]:
        """The reference's invoice schema."""
        return {
            "id": self.id,
            "series": self.series,
            "number": self.number,
            "issue_date": self.document["issue_date"],
            "customer": self.document["customer"],
            "items": self.document["items"],
            "currency": self.document["currency"],
            "status": self.status,
            "totals": totals(self.document),
            "links": {"pdf": f"{base_url}/invoices/{self.id}/pdf", "xml": f"{base_url}/invoices/{self.id}/xml"},
            "metadata": self.document["metadata"],
            "created_at": _iso(self.created_at),
        }


@dataclass
class SandboxBatch:
    """A batch and its timeline (seconds on the peer's monotonic clock)."""

    id: str
    payload: list[Any]
    callback_url: str | None
    created: float
    created_at: str
    queued_until: float
    done_at: float
    status: str = "queued"
    rows: list[dict[str, str]] = field(default_factory=list)
    failed: int = 0
    callback_sent: bool = False
    first_read_done: bool = False
    missing_index: int | None = None  # row_missing: the issued row the result file leaves out
    presigned: str | None = None  # result_elsewhere: the signature of the result's presigned URL


@dataclass
class _Stored:
    """An answer kept under an Idempotency-Key."""

    route: str
    digest: str
    status: int
    body: bytes


class TuimprentaPeer:
    """tuimprenta's API on a loopback port, with its batches and invoices in memory."""

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        *,
        port: int = 0,
        processing_seconds: float = DEFAULT_PROCESSING_SECONDS,
        rate_limit: int = 60,
        rate_window_seconds: float = 60.0,
        send_callbacks: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        faults: FaultPlan | None = None,
    ) -> None:
        self._api_key = api_key
        self.faults = faults or FaultPlan(peer="tuimprenta")
        self._webhook_secret = webhook_secret
        self.processing_seconds = processing_seconds
        self.send_callbacks = send_callbacks
        self._clock = clock
        self._wall_clock = wall_clock
        self._limit = SlidingWindow(rate_limit, rate_window_seconds, header_prefix="X-RateLimit", clock=clock)
        self._lock = threading.RLock()
        self.batches: dict[str, SandboxBatch] = {}
        self.invoices: dict[str, IssuedInvoice] = {}
        self._idempotency: dict[str, _Stored] = {}
        self._numbers: Counter[str] = Counter()
        self._sequence = 0
        self._downloads: dict[str, str] = {}  # result_redirect: download token -> batch id
        # The order of result rows: any (DESIGN.md), and the same for the same seed.
        self._order = random.Random(f"{self.faults.settings.seed}:tuimprenta:rows")  # noqa: S311 - not secrets
        # Invoice ids (metadata.buildnexion_id) whose row fails with a retryable code, once (a test's hook).
        self.flaky_ids: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.callbacks_sent = 0
        self.unkeyed_writes: Counter[str] = Counter()  # JSON writes sent without an Idempotency-Key, by route
        self.presigned_downloads = 0
        self.presigned_with_authorization = 0  # result_elsewhere: downloads that carried an Authorization header
        self._session = requests.Session()
        self._timers: list[threading.Timer] = []
        router = Router()
        for method, template, route, handler in (
            ("GET", "/v1/ping", "GET /ping", self._ping),
            ("POST", "/v1/invoices", "POST /invoices", self._post_invoice),
            ("GET", "/v1/invoices", "GET /invoices", self._list_invoices),
            ("GET", "/v1/invoices/{id}", "GET /invoices/{id}", self._get_invoice),
            ("GET", "/v1/invoices/{id}/pdf", "GET /invoices/{id}/pdf", self._get_pdf),
            ("GET", "/v1/invoices/{id}/xml", "GET /invoices/{id}/xml", self._get_xml),
            ("POST", "/v1/invoices/{id}/cancel", "POST /invoices/{id}/cancel", self._cancel_invoice),
            ("POST", "/v1/batches", "POST /batches", self._post_batch),
            ("GET", "/v1/batches/{id}", "GET /batches/{id}", self._get_batch),
            ("GET", "/v1/batches/{id}/result.csv", "GET /batches/{id}/result", self._get_result),
            ("GET", "/v1/batches/{id}/result", "GET /batches/{id}/result", self._get_result),
            ("GET", "/v1/downloads/{token}/result.csv", "GET /downloads/{token}", self._get_download),
        ):
            router.add(method, template, self._route(route, handler))
        self._server = LocalHttpServer(router, port=port)
        files = Router()
        files.add("GET", "/results/{id}/result.csv", self._get_presigned)
        self._files_server, self._files_host = _elsewhere(files)

    @property
    def base_url(self) -> str:
        """What TUIMPRENTA_API_URL takes."""
        return f"{self._server.url}/v1"

    @property
    def files_url(self) -> str:
        """The other host that serves presigned result files (result_elsewhere)."""
        return f"http://{self._files_host}:{self._files_server.port}"

    @property
    def rate_limited(self) -> int:
        """How many requests were answered 429 by the rate limit itself."""
        return self._limit.rejected

    def start(self) -> None:
        """Serve the API and the presigned files."""
        self._server.start()
        self._files_server.start()

    def stop(self) -> None:
        """Stop serving and drop pending callbacks."""
        for timer in self._timers:
            timer.cancel()
        self._server.stop()
        self._files_server.stop()
        self._session.close()

    # -- what tests and the demo read ------------------------------------------------------------------

    def issued_for(self, buildnexion_id: str) -> list[IssuedInvoice]:
        """Every invoice issued for a BuildNexion sales invoice (exactly once means a list of one)."""
        with self._lock:
            return [i for i in self.invoices.values() if i.buildnexion_id == buildnexion_id]

    def clock_reached(self, moment: float) -> bool:
        """Whether the peer's clock is at or past `moment` (a batch's `done_at`)."""
        return self._clock() >= moment

    def fail_next(self, route: str, *statuses: int) -> None:
        """Answer the next requests of `route` (e.g. "POST /batches") with these statuses."""
        for status in statuses:
            self.faults.fail_next(status, route=route)

    # -- the API ---------------------------------------------------------------------------------------

    def _route(self, route: str, handler: Callable[[Request, dict[str, str]], Reply]) -> Any:
        """`handler` behind the API key, the rate limit (X-RateLimit-* on every answer) and injected faults."""

        def serve(request: Request, params: dict[str, str]) -> Reply:
            self.calls[route] += 1
            expected = f"Bearer {self._api_key}".encode()
            given = (request.header("authorization") or "").encode()
            if self.faults.draw("status_401") or not secrets.compare_digest(given, expected):
                return error_reply(401, "No autorizado / API key inválida", "E4010")
            allowed, headers = self._limit.hit(self._api_key)
            headers.pop("Retry-After", None)  # the reference lists X-RateLimit-* only
            if not allowed:
                reply = error_reply(429, "Rate limit: 60 solicitudes por minuto", E_RATE)
            elif self.faults.draw("status_429"):
                reply = _fault_reply(429, None)
            else:
                reply = self.faults.apply(
                    request, lambda: self._answer(handler, request, params), route=route, error_reply=_fault_reply
                )
            for name, value in headers.items():
                reply.headers.setdefault(name, value)
            return reply

        return serve

    @staticmethod
    def _answer(handler: Callable[[Request, dict[str, str]], Reply], request: Request, params: dict[str, str]) -> Reply:
        try:
            return handler(request, params)
        except Invalid as exc:
            return exc.reply()

    def _ping(self, _request: Request, _params: dict[str, str]) -> Reply:
        return Reply.json(200, {"ok": True})

    def _replay(self, request: Request, route: str, digest: str | None = None) -> tuple[str | None, str, Reply | None]:
        """(key, body digest, the stored answer when the key was used with this body); 409 for another body."""
        key = request.header("idempotency-key")
        digest = digest or hashlib.sha256(request.body).hexdigest()
        if key is None:
            self.unkeyed_writes[route] += 1
            return None, digest, None
        if not key.strip() or len(key) > 255:
            raise Invalid("Idempotency-Key", "Idempotency-Key inválida", E_VALUE)
        seen = self._idempotency.get(key)
        if seen is None:
            return key, digest, None
        if seen.route != route or seen.digest != digest:
            raise Invalid("Idempotency-Key", "Idempotency-Key ya usada con otra solicitud", E_IDEMPOTENCY, status=409)
        return key, digest, Reply(seen.status, seen.body, {"Content-Type": "application/json"})

    def _keep(self, key: str | None, route: str, digest: str, reply: Reply) -> Reply:
        if key is not None:
            self._idempotency[key] = _Stored(route, digest, reply.status, reply.body)
        return reply

    def _conflict_fault(self) -> None:
        if self.faults.draw("status_409"):
            raise Invalid("Idempotency-Key", "Conflicto / idempotencia duplicada (fallo inyectado)", E_IDEMPOTENCY, 409)

    def _issue(self, document: dict[str, Any]) -> IssuedInvoice:
        self._sequence += 1
        series = document["series"]
        self._numbers[series] += 1
        # Ids sort in the order invoices were made: the listing's cursors follow it.
        invoice = IssuedInvoice(
            f"inv_{self._sequence:07d}{secrets.token_hex(3)}",
            series,
            self._numbers[series],
            document,
            created_at=self._wall_clock(),
        )
        self.invoices[invoice.id] = invoice
        return invoice

    def _post_invoice(self, request: Request, _params: dict[str, str]) -> Reply:
        _require_json_media(request)
        with self._lock:
            key, digest, replay = self._replay(request, "POST /invoices")
            if replay is not None:
                return replay
            self._conflict_fault()
            document = validate_invoice(parse_json(request.body))
            buildnexion_id = document["metadata"].get("buildnexion_id")
            if self.faults.draw("status_402"):
                if buildnexion_id:
                    self.faults.record_refusal(buildnexion_id, "tuimprenta 402: rechazado por validación fiscal")
                raise Invalid(None, "Rechazado por validación fiscal", E_FISCAL, status=402)
            if self.faults.draw("status_422"):
                if buildnexion_id:
                    self.faults.record_refusal(buildnexion_id, "tuimprenta 422: error de validación")
                raise Invalid(None, "Error de validación (fallo inyectado)", E_VALUE)
            invoice = self._issue(document)
            return self._keep(key, "POST /invoices", digest, _json_reply(201, invoice.as_json(self.base_url)))

    def _post_batch(self, request: Request, _params: dict[str, str]) -> Reply:
        media = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media == "multipart/form-data":
            document = batch_from_form(request)
            digest: str | None = hashlib.sha256(json_text(document).encode()).hexdigest()  # boundaries vary
        else:
            _require_json_media(request)
            document, digest = None, None
        with self._lock:
            key, digest, replay = self._replay(request, "POST /batches", digest)
            if replay is not None:
                return replay
            self._conflict_fault()
            if document is None:
                document = _object(parse_json(request.body), "", BATCH_FIELDS)
            if "type" not in document:
                raise Invalid("type", "El campo type es requerido", E_REQUIRED)
            if document["type"] != "invoice.create":
                raise Invalid("type", "type admite invoice.create", E_VALUE)
            payload = document.get("payload")
            if payload is None:
                raise Invalid("payload", "El campo payload es requerido", E_REQUIRED)
            if not isinstance(payload, list):
                raise Invalid("payload", "payload debe ser una lista de facturas", E_TYPE)
            if not 1 <= len(payload) <= MAX_BATCH:
                raise Invalid("payload", f"un lote lleva de 1 a {MAX_BATCH} facturas", E_SIZE)
            for n, element in enumerate(payload):
                if not isinstance(element, dict):
                    raise Invalid(f"payload[{n}]", "cada factura es un objeto JSON", E_TYPE)
            callback = document.get("callback_url")
            if callback is not None and (
                not isinstance(callback, str) or not callback.startswith(("https://", "http://"))
            ):
                raise Invalid("callback_url", "callback_url debe ser una URL http(s)", E_VALUE)
            now = self._clock()
            batch = SandboxBatch(
                id=f"batch_{secrets.token_hex(8)}",
                payload=payload,
                callback_url=callback,
                created=now,
                created_at=_iso(self._wall_clock()),
                queued_until=now + self.processing_seconds / 3,
                done_at=now + self.processing_seconds,
            )
            self.batches[batch.id] = batch
            reply = self._keep(key, "POST /batches", digest, _json_reply(201, self._batch_json(batch)))
        timer = threading.Timer(max(0.0, self.processing_seconds), self._finish_and_notify, args=(batch.id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return reply

    def _advance(self, batch: SandboxBatch) -> None:
        """Move the batch along its timeline; on completion issue or refuse each invoice."""
        now = self._clock()
        if batch.status in FINISHED:
            return
        if now < batch.queued_until:
            batch.status = "queued"
            return
        if now < batch.done_at:
            batch.status = "processing"
            return
        batch.rows = [self._process(index, element) for index, element in enumerate(batch.payload)]
        batch.failed = sum(1 for r in batch.rows if r["status"] == "failed")
        if batch.failed == 0:
            batch.status = "completed"
        elif batch.failed == len(batch.rows):
            batch.status = "failed"
        else:
            batch.status = "partial"
        issued = [int(r["index"]) for r in batch.rows if r["status"] == "issued"]
        if issued and self.faults.draw("row_missing"):
            batch.missing_index = issued[-1]
        if self.faults.draw("result_elsewhere"):
            batch.presigned = secrets.token_urlsafe(16)

    def _process(self, index: int, element: Any) -> dict[str, str]:
        row = dict.fromkeys(RESULT_HEADER, "")
        row["index"] = str(index)
        metadata = element.get("metadata") if isinstance(element, dict) else None
        buildnexion_id = metadata.get("buildnexion_id") if isinstance(metadata, dict) else None
        buildnexion_id = buildnexion_id if isinstance(buildnexion_id, str) else None
        if buildnexion_id is not None and buildnexion_id in self.flaky_ids:
            self.flaky_ids.discard(buildnexion_id)
            row.update(status="failed", error_code="internal_error", error_message="error interno, reintente")
            return row
        try:
            document = validate_invoice(element)
            if self.faults.draw("status_402"):
                if buildnexion_id:
                    self.faults.record_refusal(buildnexion_id, "tuimprenta 402: rechazado por validación fiscal")
                raise Invalid(None, "Rechazado por validación fiscal", E_FISCAL, status=402)
            if self.faults.draw("status_422"):
                if buildnexion_id:
                    self.faults.record_refusal(buildnexion_id, "tuimprenta 422: error de validación")
                raise Invalid(None, "Error de validación (fallo inyectado)", E_VALUE)
        except Invalid as exc:
            message = f"{exc.field}: {exc.message}" if exc.field else exc.message
            row.update(status="failed", error_code=exc.code, error_message=message)
            return row
        invoice = self._issue(document)
        row.update(status="issued", invoice_id=invoice.id, series=invoice.series, number=str(invoice.number))
        return row

    def _batch_json(self, batch: SandboxBatch) -> dict[str, Any]:
        issued = len(batch.rows) - batch.failed
        document: dict[str, Any] = {
            "id": batch.id,
            "type": "invoice.create",
            "status": batch.status,
            # The reference's example: queued 1000, processed 980, failed 20 (processed are the issued).
            "counts": {"queued": len(batch.payload), "processed": issued, "failed": batch.failed},
            "created_at": batch.created_at,
        }
        if batch.status in FINISHED:
            if batch.presigned is not None:
                document["result_url"] = (
                    f"{self.files_url}/results/{batch.id}/result.csv?X-Tuim-Signature={batch.presigned}"
                )
            else:
                document["result_url"] = f"{self.base_url}/batches/{batch.id}/result.csv"
        return document

    def _finish_and_notify(self, batch_id: str) -> None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return
            self._advance(batch)
            if batch.status not in FINISHED or batch.callback_sent:
                return
            batch.callback_sent = True
            url = batch.callback_url
            event = {
                "id": f"evt_{secrets.token_hex(8)}",
                "type": f"batch.{batch.status}",
                "data": {"batch_id": batch.id, "status": batch.status, "counts": self._batch_json(batch)["counts"]},
                "created_at": _iso(self._wall_clock()),
            }
        if not (url and self.send_callbacks):
            return
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._webhook_secret, body)}
        try:
            self._session.post(url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT)
            self.callbacks_sent += 1
        except requests.RequestException:
            return  # a lost callback costs the poller latency only

    def _batch_or_404(self, batch_id: str) -> SandboxBatch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise Invalid(None, f"no existe el lote {batch_id}", E_NOT_FOUND, status=404)
        return batch

    def _get_batch(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            batch = self._batch_or_404(params["id"])
            first, batch.first_read_done = not batch.first_read_done, True
            if (first and self.faults.draw("batch_404_once")) or self.faults.draw("status_404"):
                raise Invalid(None, f"no existe el lote {batch.id}", E_NOT_FOUND, status=404)
            self._advance(batch)
            return Reply.json(200, self._batch_json(batch))

    def _finished_batch(self, batch_id: str) -> SandboxBatch:
        batch = self._batch_or_404(batch_id)
        if self.faults.draw("status_404"):
            raise Invalid(None, f"no existe el lote {batch.id}", E_NOT_FOUND, status=404)
        self._advance(batch)
        if batch.status not in FINISHED:
            raise Invalid(None, f"el lote {batch.id} aún no tiene resultado", E_NOT_FOUND, status=404)
        return batch

    def _get_result(self, request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            batch = self._finished_batch(params["id"])
            if self.faults.draw("result_redirect"):
                # curl -L in the reference: the download may be answered elsewhere on the API's origin.
                token = secrets.token_urlsafe(12)
                self._downloads[token] = batch.id
                return Reply(302, b"", {"Location": f"{self.base_url}/downloads/{token}/result.csv"})
            return self._result(batch, request)

    def _get_download(self, request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            batch_id = self._downloads.get(params["token"])
            if batch_id is None:
                raise Invalid(None, "no existe la descarga", E_NOT_FOUND, status=404)
            return self._result(self._finished_batch(batch_id), request)

    def _get_presigned(self, request: Request, params: dict[str, str]) -> Reply:
        """The presigned result URL: the signature in the query is the credential, so no Authorization."""
        with self._lock:
            self.presigned_downloads += 1
            if request.header("authorization") is not None:
                # As S3 answers a presigned URL sent with credentials too; counted so tests see the leak.
                self.presigned_with_authorization += 1
                return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed")
            batch = self.batches.get(params["id"])
            signature = parse_qs(request.query_string).get("X-Tuim-Signature", [""])[0]
            if batch is None or batch.presigned is None or not secrets.compare_digest(signature, batch.presigned):
                return _s3_error(403, "AccessDenied", "Request signature does not match")
            return self._result(batch, request)

    def _result(self, batch: SandboxBatch, request: Request) -> Reply:
        rows = [r for r in batch.rows if int(r["index"]) != batch.missing_index]
        self._order.shuffle(rows)  # rows may come in any order
        if self.faults.draw("result_malformed"):
            # Alternately bytes that are not UTF-8 and a header that is not the documented one.
            if self.faults.injected["result_malformed"] % 2:
                return Reply(200, b"index,invoice_id,status\r\n0,\xff\xfe\xfa,issued\r\n", {"Content-Type": "text/csv"})
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(["idx", "id", "state"])
            writer.writerows([[r["index"], r["invoice_id"], r["status"]] for r in rows])
            return Reply(200, out.getvalue().encode(), {"Content-Type": "text/csv"})
        if "application/json" in (request.header("accept") or "") and request.path.endswith("/result"):
            return Reply.json(200, {"data": rows})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: quotes where a field needs them
        writer.writerow(RESULT_HEADER)
        writer.writerows([[r[name] for name in RESULT_HEADER] for r in rows])
        return Reply(200, out.getvalue().encode("utf-8"), {"Content-Type": "text/csv; charset=utf-8"})

    def _invoice_or_404(self, invoice_id: str, *, read: bool = True) -> IssuedInvoice:
        invoice = self.invoices.get(invoice_id)
        # status_404 plays a read of an existing invoice answered 404; a write (the cancel) is not drawn.
        if invoice is None or (read and self.faults.draw("status_404")):
            raise Invalid(None, f"no existe la factura {invoice_id}", E_NOT_FOUND, status=404)
        return invoice

    def _get_invoice(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            return _json_reply(200, self._invoice_or_404(params["id"]).as_json(self.base_url))

    def _get_pdf(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            invoice = self._invoice_or_404(params["id"])
            text = f"Factura {invoice.series}-{invoice.number}".encode("latin-1", "replace")
        return Reply(200, b"%PDF-1.4\n% " + text + b"\n%%EOF\n", {"Content-Type": "application/pdf"})

    def _get_xml(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            invoice = self._invoice_or_404(params["id"])
            amounts = totals(invoice.document)
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><factura id="{escape(invoice.id)}">'
                f"<serie>{escape(invoice.series)}</serie><numero>{invoice.number}</numero>"
                f"<estado>{escape(invoice.status)}</estado><total>{amounts['total']}</total></factura>"
            )
        return Reply(200, xml.encode("utf-8"), {"Content-Type": "application/xml"})

    def _list_invoices(self, request: Request, _params: dict[str, str]) -> Reply:
        """`GET /invoices?limit&starting_after&status&series&created_from`, oldest first, with cursors."""
        query = parse_qs(request.query_string, keep_blank_values=True)
        allowed = {"limit", "starting_after", "status", "series", "created_from"}
        for name, values in query.items():
            if name not in allowed:
                raise Invalid(name, f"parámetro desconocido {name}", E_UNKNOWN)
            if len(values) != 1:
                raise Invalid(name, f"{name} se da una sola vez", E_VALUE)
        one = {name: values[0] for name, values in query.items()}
        limit = LIST_DEFAULT_LIMIT
        if "limit" in one:
            if not one["limit"].isdigit() or not 1 <= int(one["limit"]) <= LIST_MAX_LIMIT:
                raise Invalid("limit", f"limit va de 1 a {LIST_MAX_LIMIT}", E_VALUE)
            limit = int(one["limit"])
        status = one.get("status")
        if status is not None and status not in INVOICE_STATUSES:
            raise Invalid("status", "status admite issued, canceled o draft", E_VALUE)
        created_from: date | None = None
        if "created_from" in one:
            try:
                if not _DATE.fullmatch(one["created_from"]):
                    raise ValueError(one["created_from"])
                created_from = date.fromisoformat(one["created_from"])
            except ValueError:
                raise Invalid("created_from", "created_from debe ser una fecha AAAA-MM-DD", E_VALUE) from None
        with self._lock:
            everything = sorted(self.invoices.values(), key=lambda i: i.id)
            cursor = one.get("starting_after")
            if cursor is not None and cursor not in self.invoices:
                raise Invalid("starting_after", f"no existe la factura {cursor}", E_VALUE)
            matching = [
                i
                for i in everything
                if (status is None or i.status == status)
                and ("series" not in one or i.series == one["series"])
                and (created_from is None or i.created_at.astimezone(UTC).date() >= created_from)
            ]
            start = 0 if cursor is None else sum(1 for i in matching if i.id <= cursor)
            page = matching[start : start + limit]
            more = start + limit < len(matching)
            document = {
                "data": [i.as_json(self.base_url) for i in page],
                # The value starting_after takes for the next page; null on the last one.
                "next_cursor": page[-1].id if page and more else None,
                # The first invoice of this page when earlier ones match; null on the first page.
                "prev_cursor": page[0].id if page and start > 0 else None,
            }
        return _json_reply(200, document)

    def _cancel_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        # The reference's own example sends the body with curl -d and no Content-Type: the type is not required.
        with self._lock:
            key, digest, replay = self._replay(request, f"POST /invoices/{params['id']}/cancel")
            if replay is not None:
                return replay
            self._conflict_fault()
            reason: str | None = None
            if request.body.strip():
                body = _object(parse_json(request.body), "", frozenset({"reason"}))
                reason = _text(body, "reason", "", required=False)
            invoice = self._invoice_or_404(params["id"], read=False)
            if self.faults.draw("status_422"):
                if invoice.buildnexion_id:
                    self.faults.record_refusal(invoice.buildnexion_id, "tuimprenta 422: anulación rechazada")
                raise Invalid(None, "Error de validación (fallo inyectado)", E_VALUE)
            if invoice.status == "canceled":
                raise Invalid(None, f"la factura {invoice.id} ya está anulada", E_STATE, 409, "conflict_error")
            invoice.status = "canceled"
            invoice.cancel_reason = reason or ""
            reply = _json_reply(200, invoice.as_json(self.base_url))
            return self._keep(key, f"POST /invoices/{params['id']}/cancel", digest, reply)

    # -- make demo -------------------------------------------------------------------------------------

    def demo_check(self, buildnexion: BuildNexionPeer, events: Sequence[Mapping[str, Any]]) -> DemoCheck:
        """Every valid sales invoice issued exactly once with BuildNexion's amounts; a canceled one not left issued."""
        check = DemoCheck()
        latest: dict[str, Mapping[str, Any]] = {}
        for event in events:
            obj = event["data"]["object"]
            if obj["id"] not in latest or obj["updated_at"] >= latest[obj["id"]]["data"]["object"]["updated_at"]:
                latest[obj["id"]] = event
        for object_id, event in sorted(latest.items()):
            obj = event["data"]["object"]
            found = self.issued_for(object_id)
            if len(found) > 1:
                check.problems.append(f"{object_id}: issued {len(found)} times")
                continue
            if object_id in self.faults.refused and not found:
                check.failed += 1  # a fault kind refused it for good: not issued is right
                continue
            if event["type"] == "sales_invoice.canceled":
                if found and found[0].status != "canceled":
                    check.problems.append(f"{object_id}: canceled in BuildNexion but still issued in tuimprenta")
                else:
                    check.synced += 1
                continue
            if not str(obj.get("customer", {}).get("tax_id", "")).strip():
                if found:
                    check.problems.append(f"{object_id}: issued without a tax id")
                else:
                    check.failed += 1
                continue
            if not found:
                check.problems.append(f"{object_id}: not issued")
                continue
            problem = _amount_problem(obj, found[0])
            if problem:
                check.problems.append(f"{object_id}: {problem}")
            else:
                check.synced += 1
        return check


# The reference's CSV for multipart batches: one invoice of one item a row.
FORM_CSV_HEADER = (
    "series",
    "issue_date",
    "customer_name",
    "customer_tax_id",
    "customer_email",
    "item_description",
    "item_qty",
    "item_unit_price",
    "tax_rate",
    "currency",
    "metadata_order_id",
)
_CSV_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def batch_from_form(request: Request) -> dict[str, Any]:
    """A multipart/form-data batch: a `file` (CSV of the reference's columns, or a JSON array of invoices)
    and optional `type` and `callback_url` fields, as the JSON batch it stands for."""
    head = f"Content-Type: {request.header('content-type')}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    if not message.is_multipart():
        raise Invalid("Content-Type", "multipart/form-data sin partes legibles", E_MEDIA)
    fields: dict[str, str] = {}
    attached: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(content, bytes):
            raise Invalid(None, "una parte del formulario no tiene nombre", E_JSON)
        if name == "file":
            kind = part.get_content_type()
            filename = (part.get_filename() or "").lower()
            attached = ("json" if kind == "application/json" or filename.endswith(".json") else "csv", content)
        elif name in {"type", "callback_url"}:
            fields[name] = content.decode("utf-8", "replace")
        else:
            raise Invalid(name, f"el campo {name} no existe", E_UNKNOWN)
    if attached is None:
        raise Invalid("file", "El campo file es requerido", E_REQUIRED)
    kind, content = attached
    payload = parse_json(content) if kind == "json" else _invoices_from_csv(content)
    document: dict[str, Any] = {"type": fields.get("type", "invoice.create"), "payload": payload}
    if "callback_url" in fields:
        document["callback_url"] = fields["callback_url"]
    return document


def _invoices_from_csv(content: bytes) -> list[dict[str, Any]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("file", "el CSV no es UTF-8", E_JSON) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != FORM_CSV_HEADER:
        raise Invalid("file", f"el CSV lleva las columnas {','.join(FORM_CSV_HEADER)}", E_VALUE)
    invoices = []
    for row in reader:

        def number(column: str, row: dict[str, str] = row) -> Decimal | str:
            # A cell that is not a plain decimal stays text, which the invoice's validation refuses by field.
            value = (row.get(column) or "").strip()
            return Decimal(value) if _CSV_NUMBER.fullmatch(value) else value

        customer = {"name": row["customer_name"], "tax_id": row["customer_tax_id"]}
        if row["customer_email"]:
            customer["email"] = row["customer_email"]
        item: dict[str, Any] = {
            "description": row["item_description"],
            "qty": number("item_qty"),
            "unit_price": number("item_unit_price"),
        }
        if row["tax_rate"]:
            item["tax_rate"] = number("tax_rate")
        invoice: dict[str, Any] = {"series": row["series"], "customer": customer, "items": [item]}
        for column, name in (("issue_date", "issue_date"), ("currency", "currency")):
            if row[column]:
                invoice[name] = row[column]
        if row["metadata_order_id"]:
            invoice["metadata"] = {"order_id": row["metadata_order_id"]}
        invoices.append(invoice)
    return invoices


def _elsewhere(router: Router) -> tuple[LocalHttpServer, str]:
    """A server on another loopback host (127.0.0.2) when the system allows it, else another port."""
    for host in ("127.0.0.2", "127.0.0.1"):
        try:
            return LocalHttpServer(router, host=host), host
        except OSError:
            continue
    raise OSError("no loopback address for the presigned result server")


def _s3_error(status: int, code: str, message: str) -> Reply:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Reply(status, body.encode(), {"Content-Type": "application/xml"})


def _fault_reply(status: int, _code: str | None) -> Reply:
    reply = error_reply(status, "fallo inyectado", f"E{status}0")
    if status == 429:
        # The window is full: nothing remains, and the reset is one second away (an injected 429 is short).
        reply.headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"})
    return reply


def _amount_problem(obj: Mapping[str, Any], invoice: IssuedInvoice) -> str | None:
    items = invoice.document.get("items") or []
    if len(items) != len(obj["lines"]):
        return f"{len(items)} items for {len(obj['lines'])} lines"
    for line, sent in zip(obj["lines"], items, strict=True):
        try:
            cents = Decimal(line.get("unit_amount_decimal") or line["unit_amount"])
            quantity = Decimal(line["quantity"])
        except (InvalidOperation, TypeError):
            return f"BuildNexion line not readable: {line!r}"
        if sent["unit_price"] * 100 != cents:
            return f"unit price {sent['unit_price']} for {cents} cents"
        if sent["qty"] != quantity:
            return f"quantity {sent['qty']} for {line['quantity']}"
    return None


def create_peer(settings: LocalSettings) -> TuimprentaPeer:
    """The peer the local stack starts when TUIMPRENTA_API_URL is unset."""
    return TuimprentaPeer(
        settings.tuimprenta_api_key,
        settings.tuimprenta_webhook_secret,
        processing_seconds=settings.tuimprenta_processing_seconds,
        faults=settings.fault_settings().plan("tuimprenta"),
    )
