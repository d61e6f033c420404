"""The sandbox Quipu, written from the reference alone (seeds 001/002) and as strict as it is.

- `POST /oauth/token`: `Authorization: Basic <base64url(app_id:app_secret)>` (the URL-safe alphabet only: a
  standard encoding with `+` or `/` is refused), `Content-Type: application/x-www-form-urlencoded`,
  `grant_type=client_credentials` and `scope=ecommerce`; tokens really expire; `expires_in` as an epoch, as the
  reference's example shows (or as seconds, by option);
- every API request needs `Accept: application/vnd.quipu.v1+json` (406) and a Bearer token (401); POST, PUT and
  PATCH need that media type as Content-Type (415; the multipart attachment upload excepted, as documented);
- JSON-API bodies: `data.type` must name the endpoint's type (409, as JSON-API says); attributes are typed as
  the reference shows them (money as decimal strings, quantities and percents as numbers or decimal strings,
  dates `YYYY-mm-dd`, enumerations), required ones must be there (no default quantity), read-only and unknown
  ones are refused (422 with `errors[].detail/source.pointer`, the reference's only error format);
- query parameters: the documented filters, sorts, `page[number]` and `include` only (400);
- a sliding limit of 5 requests in any 5 seconds per app id, token requests included: 429 with the `RateLimit-*`
  headers of draft-polli-ratelimit-headers-02 section 3, which the reference cites, and no `Retry-After`;
- contacts (filters `tax_id` (exact), `q`, `kind`, `country`, `email`; 20 a page, `meta.pagination_info`),
  invoices (filters `kind`, `contact_id`, `period`, `q`, `payment_status`; 20 a page; `include=items`), totals
  computed from the items, PATCH item semantics (with id: changed, without: added, unlisted: removed), the 422
  "number taken" per supplier per fiscal year, full and partial credit notes through `amended_invoice`,
  attachments (multipart).

Named fault kinds (sandbox/faults.py) played here: status_401, status_404, status_422, status_429,
token_revoked, contact_204, contact_pages, es_prefix. This module imports nothing of the product.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from sandbox.faults import FaultPlan
from sandbox.httpserver import Dispatcher, LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck
from sandbox.ratelimit import SlidingWindow

if TYPE_CHECKING:
    from sandbox.buildnexion import BuildNexionPeer
    from sandbox.settings import LocalSettings

MEDIA_TYPE = "application/vnd.quipu.v1+json"
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
PAGE_SIZE = 20
CENT = Decimal("0.01")
HUNDRED = Decimal(100)

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?")
# `filter[period]`: 2015, 2016-2, 2015-Q1 (the filters table) or 1Q-2015 (the conventions' example).
_PERIOD = re.compile(r"(?P<year>\d{4})(-(?P<part>[Qq][1-4]|0?[1-9]|1[0-2]))?|(?P<quarter>[1-4])[Qq]-(?P<qyear>\d{4})")
_BN_TAG = re.compile(r"bn:(\S+)")

INVOICE_KINDS = ("income", "expenses")
PAYMENT_METHODS = ("cash", "bank_transfer", "bank_card", "direct_debit", "paypal", "check", "factoring")
ITEM_KINDS = {"expenses": ("current", "assets"), "income": ("current", "reimbursement")}
PAYMENT_STATUSES = ("paid", "unpaid", "due", "pending")
CONTACT_KINDS = ("employee", "supplier", "client")
BOOK_ENTRY_TYPES = ("invoices", "tickets", "paysheets")

INVOICE_READ_ONLY = frozenset(
    {
        "payment_status",
        "total_amount",
        "total_amount_without_taxes",
        "vat_amount",
        "retention_amount",
        *(
            f"{side}_{name}"
            for side in ("issuing", "recipient")
            for name in ("name", "tax_id", "address", "phone", "town", "zip_code", "country_code")
        ),
        "download_pdf_url",
        "ephemeral_open_download_pdf_url",
    }
)
INVOICE_WRITABLE = frozenset(
    {"kind", "number", "issue_date", "due_dates", "paid_at", "payment_method", "last_sent_at", "tags", "notes"}
)
# relationship -> (the type its data names, to-many)
INVOICE_RELATIONSHIPS: dict[str, tuple[str, bool]] = {
    "contact": ("contacts", False),
    "accounting_category": ("accounting_categories", False),
    "accounting_subcategory": ("accounting_subcategories", False),
    "numeration": ("numbering_series", False),
    "analytic_categories": ("analytic_categories", True),
    "items": ("book_entry_items", True),
    "amended_invoice": ("invoices", False),
}
ITEM_PERCENTS = (
    "vat_percent",
    "retention_percent",
    "discount_percent",
    "deductible_vat_percent",
    "deductible_expense_percent",
)
ITEM_WRITABLE = frozenset({"concept", "unitary_amount", "quantity", "kind", "description", *ITEM_PERCENTS})
ITEM_READ_ONLY = frozenset(
    {
        "vat_amount",
        "retention_amount",
        "discount_amount",
        "deductible_vat_amount",
        "decuctible_vat_amount",
        "total_amount",
    }
)
CONTACT_TEXT = (
    "name",
    "tax_id",
    "phone",
    "email",
    "address",
    "town",
    "zip_code",
    "country_code",
    "bank_account_number",
    "bank_account_swift_bic",
)
CONTACT_WRITABLE = frozenset({*CONTACT_TEXT, "client_number", "supplier_number", "is_supplier_of_direct_goods"})
CONTACT_READ_ONLY = frozenset(
    {
        "total_paid_incomes",
        "total_unpaid_incomes",
        "total_incomes",
        "total_paid_expenses",
        "total_unpaid_expenses",
        "total_expenses",
        "is_client",
        "is_supplier",
        "is_employee",
        "deletable",
    }
)
CONTACT_FILTERS = ("q", "kind", "tax_id", "country", "email")
CONTACT_SORTS = ("name", "total_paid_income", "total_unpaid_income", "total_paid_expenses", "total_unpaid_expenses")
INVOICE_FILTERS = ("type", "kind", "q", "period", "payment_status", "contact_id", "field_query")
INVOICE_SORTS = ("number", "issue_date", "counterpart_name", "total_amount", "total_amount_without_taxes")


@dataclass
class QuipuOptions:
    """How the sandbox behaves; tests shorten the timings."""

    app_id: str = "sandbox-quipu-app"
    app_secret: str = "sandbox-quipu-secret"  # noqa: S105 - the sandbox default, as LocalSettings
    token_lifetime_seconds: float = 7200.0
    expires_in_form: str = "epoch"  # "epoch" (the reference's example) or "seconds"
    limit: int = 5
    window_seconds: float = 5.0
    owner_slug: str = ""
    processing_delay_seconds: float = 0.0
    port: int = 0


@dataclass
class Item:
    """A book entry item."""

    id: str
    concept: str
    unitary_amount: Decimal
    quantity: Decimal
    vat_percent: Decimal
    retention_percent: Decimal
    description: str = ""
    kind: str = "current"
    discount_percent: Decimal = Decimal(0)

    def amounts(self) -> tuple[Decimal, Decimal, Decimal]:
        """(base after discount, VAT, retention), unrounded."""
        base = self.unitary_amount * self.quantity * (HUNDRED - self.discount_percent) / HUNDRED
        return base, base * self.vat_percent / HUNDRED, base * self.retention_percent / HUNDRED

    def resource(self) -> dict[str, Any]:
        """As `included` shows it (every number a decimal string)."""
        base, vat, retention = self.amounts()
        return {
            "id": self.id,
            "type": "book_entry_items",
            "attributes": {
                "concept": self.concept,
                "unitary_amount": str(self.unitary_amount),
                "quantity": str(self.quantity),
                "kind": self.kind,
                "vat_amount": str(vat),
                "retention_amount": str(retention),
                "discount_amount": str(self.unitary_amount * self.quantity - base),
                "total_amount": str(base + vat - retention),
                "vat_percent": str(self.vat_percent),
                "retention_percent": str(self.retention_percent),
                "discount_percent": str(self.discount_percent),
                "description": self.description,
            },
        }


@dataclass
class Invoice:
    """An invoice (book entry)."""

    id: str
    kind: str
    number: str | None
    issue_date: str
    contact_id: str | None
    due_dates: list[str] = field(default_factory=list)
    paid_at: str | None = None
    payment_method: str | None = None
    items: list[Item] = field(default_factory=list)
    amended_invoice_id: str | None = None
    amending_invoice_ids: list[str] = field(default_factory=list)
    tags: str = ""
    notes: str = ""

    def totals(self) -> dict[str, Decimal]:
        """Quipu's computed totals: base, VAT and retention each rounded to cents, the total their sum."""
        base = sum((i.amounts()[0] for i in self.items), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
        vat = sum((i.amounts()[1] for i in self.items), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
        retention = sum((i.amounts()[2] for i in self.items), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
        return {"base": base, "vat": vat, "retention": retention, "total": base + vat - retention}

    @property
    def total_cents(self) -> int:
        """The total in cents."""
        return int(self.totals()["total"] * 100)

    def marker(self) -> str:
        """Whose document this is: the BuildNexion id of a `bn:<id>` tag, else the number (for refusals)."""
        for tag in self.tags.split(","):
            found = _BN_TAG.fullmatch(tag.strip())
            if found:
                return found.group(1)
        return self.number or self.id


@dataclass
class Contact:
    """A contact."""

    id: str
    attributes: dict[str, Any]


Problem = tuple[str, str | None]  # (detail, JSON pointer into the body)


class ApiError(Exception):
    """An error answer, in the reference's format: `{"errors": [{"detail", "source": {...}}]}`."""

    def __init__(
        self,
        status: int,
        errors: Sequence[Problem],
        headers: dict[str, str] | None = None,
        *,
        source: str = "pointer",
    ):
        self.status = status
        self.errors = list(errors)
        self.headers = headers or {}
        # JSON-API names what an error is about: a body member (`pointer`), a query or form `parameter`, a `header`.
        self.source = source
        super().__init__(status)

    def reply(self) -> Reply:
        """The error document; `source` only where the error is about one place."""
        body = [
            {"detail": detail, **({"source": {self.source: where}} if where else {})} for detail, where in self.errors
        ]
        return _json(self.status, {"errors": body}, self.headers)


def _json(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": MEDIA_TYPE, **(headers or {})})


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepts(value: str | None) -> bool:
    return any(_media_type(part) == MEDIA_TYPE for part in (value or "").split(","))


def _valid_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _amount(value: Any, pointer: str, errors: list[Problem]) -> Decimal | None:
    """Money, as every example of the reference writes it: a decimal string ("0.50"), never a JSON number."""
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        return Decimal(value)
    errors.append(('must be a decimal string such as "0.50"', pointer))
    return None


def _number(value: Any, pointer: str, errors: list[Problem]) -> Decimal | None:
    """A quantity or percent: a JSON number (the reference's requests) or a plain decimal string (its answers)."""
    if isinstance(value, bool):
        errors.append(("is not a number", pointer))
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        return Decimal(value)
    errors.append(("is not a number", pointer))
    return None


def _iban_valid(text: str) -> bool:
    # The shape of an IBAN only: the reference's own create example succeeds with "ES92 3821 0601 2314 3339 5656",
    # whose check digits do not verify, so Quipu cannot be checking them.
    return bool(re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", text.replace(" ", "").upper()))


def _period_matches(period: str, issue_date: str) -> bool:
    found = _PERIOD.fullmatch(period)
    if not found:
        return False
    if found.group("quarter"):
        year, quarter = found.group("qyear"), int(found.group("quarter"))
        return issue_date.startswith(year) and (int(issue_date[5:7]) - 1) // 3 + 1 == quarter
    year, part = found.group("year"), found.group("part")
    if not issue_date.startswith(year):
        return False
    if not part:
        return True
    month = int(issue_date[5:7])
    if part.upper().startswith("Q"):
        return (month - 1) // 3 + 1 == int(part[1:])
    return int(part) == month


def _unknown(
    attributes: Mapping[str, Any], writable: frozenset[str], read_only: frozenset[str], base: str
) -> list[Problem]:
    problems: list[Problem] = []
    for name in attributes:
        if name in read_only:
            problems.append(("is read only", f"{base}/{name}"))
        elif name not in writable:
            problems.append(("is not an attribute of this resource", f"{base}/{name}"))
    return problems


class _ErrorsInOurFormat:
    """The router's own 404/405 (no route) rewritten in the reference's error format."""

    def __init__(self, inner: Dispatcher) -> None:
        self._inner = inner

    def dispatch(self, request: Request) -> Reply:
        """The inner reply; a routing refusal as `{"errors": [...]}`."""
        reply = self._inner.dispatch(request)
        if reply.status in (404, 405) and not reply.body.startswith(b'{"errors"'):
            detail = "Not found" if reply.status == 404 else f"{request.method} is not allowed on {request.path}"
            return ApiError(reply.status, [(detail, None)]).reply()
        return reply


FilterCheck = Callable[[str | None, str], bool]  # (sub-key of filter[name][sub], value) -> valid


def _plain(sub: str | None, _value: str) -> bool:
    return sub is None


def _one_of(values: Sequence[str]) -> FilterCheck:
    return lambda sub, value: sub is None and value in values


def _period_filter(sub: str | None, value: str) -> bool:
    if sub is None:
        return bool(_PERIOD.fullmatch(value))
    return sub in ("from", "to") and _valid_date(value)


CONTACT_FILTER_CHECKS: dict[str, FilterCheck] = {
    "q": _plain,
    "kind": _one_of(CONTACT_KINDS),
    "tax_id": _plain,
    "country": lambda sub, value: sub is None and bool(re.fullmatch(r"[a-z]{2}(,[a-z]{2})*", value)),
    "email": _plain,
}
INVOICE_FILTER_CHECKS: dict[str, FilterCheck] = {
    "type": _one_of(BOOK_ENTRY_TYPES),
    "kind": _one_of(INVOICE_KINDS),
    "q": _plain,
    "period": _period_filter,
    "payment_status": _one_of(PAYMENT_STATUSES),
    "contact_id": lambda sub, value: sub is None and value.isdigit(),
    "field_query": lambda sub, _value: sub in ("field", "term"),
}


class QuipuPeer:
    """Quipu's API on a loopback port, its data in memory."""

    def __init__(
        self,
        options: QuipuOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
        faults: FaultPlan | None = None,
    ) -> None:
        self.options = options or QuipuOptions()
        self.faults = faults or FaultPlan(peer="quipu")
        self._clock = clock
        self.limiter = SlidingWindow(self.options.limit, self.options.window_seconds)
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.arrivals: list[float] = []
        self.tokens: dict[str, float] = {}  # access token -> expiry epoch
        self.contacts: dict[str, Contact] = {}
        self.invoices: dict[str, Invoice] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self._ids = iter(range(100_001, 10**9))
        self._lock = threading.RLock()
        # contact_pages: whether a listing (its query without the page) is answered a contact a page.
        self._paged_listings: dict[tuple[tuple[str, tuple[str, ...]], ...], bool] = {}
        router = Router()
        router.add("POST", "/oauth/token", self._token)
        prefix = f"/{self.options.owner_slug}" if self.options.owner_slug else ""
        routes: Sequence[tuple[str, str, Callable[[Request, dict[str, str]], Reply]]] = [
            ("GET", "/contacts", self._list_contacts),
            ("POST", "/contacts", self._create_contact),
            ("GET", "/contacts/{id}", self._get_contact),
            ("GET", "/invoices", self._list_invoices),
            ("POST", "/invoices", self._create_invoice),
            ("GET", "/invoices/{id}", self._get_invoice),
            ("PATCH", "/invoices/{id}", self._patch_invoice),
            ("PUT", "/invoices/{id}", self._patch_invoice),
            ("DELETE", "/invoices/{id}", self._delete_invoice),
            ("POST", "/attachments", self._create_attachment),
            ("GET", "/attachments/{id}", self._get_attachment),
            ("DELETE", "/attachments/{id}", self._delete_attachment),
        ]
        for method, path, handler in routes:
            router.add(method, prefix + path, self._api(method, path, handler))
        self._server = LocalHttpServer(
            self.faults.wrap(_ErrorsInOurFormat(router), error_reply=_fault_reply), port=self.options.port
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What QUIPU_API_URL takes."""
        return self._server.url

    def start(self) -> None:
        """Serve."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def revoke_tokens(self) -> None:
        """Invalidate every token issued (Quipu answers 401 to them)."""
        with self._lock:
            self.tokens.clear()

    @property
    def rate_limited(self) -> int:
        """429s answered."""
        return self.statuses[429]

    def _new_id(self) -> str:
        return str(next(self._ids))

    # -- the edge ------------------------------------------------------------------------------------

    def _policy(self) -> str:
        window = self.options.window_seconds
        seconds = int(window) if float(window).is_integer() else window
        # draft-polli-ratelimit-headers-02 3.1: the limit, then its quota policy (`w` = the window in seconds).
        return f"{self.options.limit}, {self.options.limit};w={seconds}"

    def _limit(self, app_id: str) -> dict[str, str]:
        allowed, counted = self.limiter.hit(app_id)
        headers = {
            "RateLimit-Limit": self._policy(),
            "RateLimit-Remaining": counted["RateLimit-Remaining"],
            "RateLimit-Reset": counted["RateLimit-Reset"],
        }  # the reference's headers only: the shared limiter also writes a Retry-After Quipu does not send
        if not allowed:
            raise ApiError(429, [("Too many requests", None)], headers)
        if self.faults.draw("status_429"):
            refused = {
                **headers,
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(math.ceil(self.options.window_seconds)),
            }
            raise ApiError(429, [("Too many requests", None)], refused)
        return headers

    def _answer(self, key: str, run: Callable[[], Reply]) -> Reply:
        self.calls[key] += 1
        self.arrivals.append(self._clock())
        try:
            reply = run()
        except ApiError as exc:
            reply = exc.reply()
        self.statuses[reply.status] += 1
        return reply

    def _token(self, request: Request, _params: dict[str, str]) -> Reply:
        def run() -> Reply:
            app_id = self._basic_app_id(request)
            if self.faults.draw("status_401"):
                raise ApiError(401, [("invalid_client", "Authorization")], source="header")
            headers = self._limit(app_id)
            if _media_type(request.header("content-type")) != FORM_TYPE:
                raise ApiError(415, [(f"Content-Type must be {FORM_TYPE}", "Content-Type")], headers, source="header")
            try:
                form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(request.body))
            except (UnicodeDecodeError, ValueError):
                raise ApiError(400, [("The body is not a form", None)], headers) from None
            problems: list[Problem] = []
            if form.get("grant_type") != ["client_credentials"]:
                problems.append(("unsupported_grant_type: must be client_credentials", "grant_type"))
            if form.get("scope") != ["ecommerce"]:
                problems.append(("invalid_scope: must be ecommerce", "scope"))
            if problems:
                raise ApiError(400, problems, headers, source="parameter")
            now = self._clock()
            token = secrets.token_hex(32)
            with self._lock:
                self.tokens[token] = now + self.options.token_lifetime_seconds
            lifetime = round(self.options.token_lifetime_seconds)
            expires_in = int(now) + lifetime if self.options.expires_in_form == "epoch" else lifetime
            document = {
                "token_type": "bearer",
                "created_at": int(now),
                "access_token": token,
                "refresh_token": None,
                "expires_in": expires_in,
            }
            return Reply.json(200, document, headers)

        return self._answer("POST /oauth/token", run)

    def _basic_app_id(self, request: Request) -> str:
        header = request.header("authorization") or ""
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        refused = ApiError(
            401, [("invalid_client: Basic base64url(app_id:app_secret) expected", "Authorization")], source="header"
        )
        # The reference: "Applying Base64 (URL safe mode)". A standard encoding differs only where it writes
        # `+` or `/`; those characters are refused, as a URL-safe decoder refuses them.
        if scheme.lower() != "basic" or not _BASE64URL.fullmatch(credentials):
            raise refused
        try:
            padded = credentials.rstrip("=") + "=" * (-len(credentials.rstrip("=")) % 4)
            decoded = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise refused from None
        app_id, colon, app_secret = decoded.partition(":")
        if not (
            colon
            and secrets.compare_digest(app_id.encode(), self.options.app_id.encode())
            and secrets.compare_digest(app_secret.encode(), self.options.app_secret.encode())
        ):
            raise ApiError(401, [("invalid_client", "Authorization")], source="header")
        return app_id

    def _api(
        self, method: str, path: str, handler: Callable[[Request, dict[str, str]], Reply]
    ) -> Callable[[Request, dict[str, str]], Reply]:
        def route(request: Request, params: dict[str, str]) -> Reply:
            def run() -> Reply:
                header = request.header("authorization") or ""
                token = header[7:].strip() if header[:7].lower() == "bearer " else ""
                with self._lock:
                    expires_at = self.tokens.get(token)
                if expires_at is None or expires_at <= self._clock():
                    # Unauthenticated requests are not counted against the app's window (no app known).
                    raise ApiError(
                        401, [("The access token is invalid or has expired", "Authorization")], source="header"
                    )
                if self.faults.draw("status_401"):
                    raise ApiError(401, [("The access token is not accepted", "Authorization")], source="header")
                if self.faults.draw("token_revoked"):
                    self.revoke_tokens()
                    raise ApiError(401, [("The access token has been revoked", "Authorization")], source="header")
                headers = self._limit(self.options.app_id)
                if not _accepts(request.header("accept")):
                    raise ApiError(406, [(f"Accept must be {MEDIA_TYPE}", "Accept")], headers, source="header")
                content_type = _media_type(request.header("content-type"))
                wanted = MULTIPART_TYPE if path == "/attachments" and method == "POST" else MEDIA_TYPE
                if method in {"POST", "PATCH", "PUT"} and content_type != wanted:
                    raise ApiError(415, [(f"Content-Type must be {wanted}", "Content-Type")], headers, source="header")
                if self.options.processing_delay_seconds:
                    time.sleep(self.options.processing_delay_seconds)
                with self._lock:
                    try:
                        reply = handler(request, params)
                    except ApiError as exc:
                        exc.headers = {**headers, **exc.headers}
                        raise
                reply.headers.update(headers)
                return reply

            return self._answer(f"{method} {path}", run)

        return route

    @staticmethod
    def _body(request: Request, resource_type: str) -> dict[str, Any]:
        """The JSON-API `data` of a write, whose `type` must name the endpoint's resources (409 otherwise)."""
        try:
            document = json.loads(request.body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, [("The body is not valid JSON", None)]) from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise ApiError(400, [("A JSON-API document with a data object is required", "/data")])
        kind = data.get("type")
        if kind is None:
            raise ApiError(422, [("Can not be blank.", "/data/type")])
        if kind != resource_type:
            raise ApiError(409, [(f"type must be {resource_type}", "/data/type")])
        for member in ("attributes", "relationships"):
            if member in data and not isinstance(data[member], dict):
                raise ApiError(422, [("must be an object", f"/data/{member}")])
        return data

    @staticmethod
    def _query(
        request: Request, filters: Mapping[str, FilterCheck], sorts: Sequence[str], include: Sequence[str]
    ) -> dict[str, str]:
        """The query, each parameter documented for the endpoint and valid (400 naming it otherwise)."""
        problems: list[Problem] = []
        query: dict[str, str] = {}
        for name, values in parse_qs(request.query_string, keep_blank_values=True).items():
            if len(values) > 1:
                problems.append(("is given more than once", name))
                continue
            value = values[0]
            query[name] = value
            matched = re.fullmatch(r"filter\[(\w+)\](?:\[(\w+)\])?", name)
            if name == "page[number]":
                if not (value.isdigit() and int(value) >= 1):
                    problems.append(("must be a page number from 1", name))
            elif name == "sort":
                if any(c.strip().lstrip("-") not in sorts for c in value.split(",")):
                    problems.append((f"sorts by {', '.join(sorts)} only", name))
            elif name == "include":
                if any(part not in include for part in value.split(",")):
                    problems.append(
                        (
                            "names nothing that can be included"
                            if not include
                            else f"can include {', '.join(include)} only",
                            name,
                        )
                    )
            elif matched and matched.group(1) in filters:
                if not filters[matched.group(1)](matched.group(2), value):
                    problems.append(("is not a valid value for this filter", name))
            else:
                problems.append(("is not a parameter of this endpoint", name))
        if problems:
            raise ApiError(400, problems, source="parameter")
        return query

    @staticmethod
    def _page(query: Mapping[str, str], resources: list[Any], size: int) -> tuple[list[Any], dict[str, Any]]:
        number = int(query.get("page[number]", "1"))
        pages = max(1, -(-len(resources) // size))
        chosen = resources[(number - 1) * size : number * size]
        meta = {"pagination_info": {"total_pages": pages, "current_page": number, "total_results": len(resources)}}
        return chosen, meta

    # -- contacts ------------------------------------------------------------------------------------

    @staticmethod
    def _contact_resource(contact: Contact) -> dict[str, Any]:
        return {"id": contact.id, "type": "contacts", "attributes": contact.attributes}

    def _contact_page_size(self, query: Mapping[str, str]) -> int:
        # One decision per listing, taken on its first page, so its later pages agree with it.
        listing = tuple(sorted((k, (v,)) for k, v in query.items() if k != "page[number]"))
        if int(query.get("page[number]", "1")) == 1:
            self._paged_listings[listing] = self.faults.draw("contact_pages")
        return 1 if self._paged_listings.get(listing, False) else PAGE_SIZE

    def _list_contacts(self, request: Request, _params: dict[str, str]) -> Reply:
        query = self._query(request, CONTACT_FILTER_CHECKS, CONTACT_SORTS, ())
        found = list(self.contacts.values())
        if "filter[tax_id]" in query:
            # The reference says only "Filter contacts by their tax id": the sandbox matches the stored text
            # (case aside), so a contact stored as ESB12345678 is not found by B12345678.
            wanted = query["filter[tax_id]"].upper()
            found = [c for c in found if str(c.attributes.get("tax_id") or "").upper() == wanted]
        if "filter[q]" in query:
            term = query["filter[q]"].lower()
            found = [c for c in found if term in str(c.attributes.get("name", "")).lower()]
        if "filter[kind]" in query:
            found = [c for c in found if c.attributes.get(f"is_{query['filter[kind]']}")]
        if "filter[country]" in query:
            countries = query["filter[country]"].split(",")
            found = [c for c in found if c.attributes.get("country_code") in countries]
        if "filter[email]" in query:
            email = query["filter[email]"].lower()
            found = [c for c in found if str(c.attributes.get("email") or "").lower() == email]
        if query.get("sort", "").lstrip("-") == "name":
            found.sort(key=lambda c: str(c.attributes.get("name", "")), reverse=query["sort"].startswith("-"))
        chosen, meta = self._page(query, found, self._contact_page_size(query))
        return _json(200, {"data": [self._contact_resource(c) for c in chosen], "meta": meta})

    def _create_contact(self, request: Request, _params: dict[str, str]) -> Reply:
        data = self._body(request, "contacts")
        attributes = dict(data.get("attributes") or {})
        base = "/data/attributes"
        errors = _unknown(attributes, CONTACT_WRITABLE, CONTACT_READ_ONLY, base)
        if data.get("relationships"):
            errors.append(("contacts have no relationships", "/data/relationships"))
        for name in CONTACT_TEXT:
            if attributes.get(name) is not None and not isinstance(attributes[name], str):
                errors.append(("must be a string", f"{base}/{name}"))
        for name in ("client_number", "supplier_number"):
            value = attributes.get(name)
            if value is not None and not (
                (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())
            ):
                errors.append(("must be a whole number", f"{base}/{name}"))
        if "is_supplier_of_direct_goods" in attributes and not isinstance(
            attributes["is_supplier_of_direct_goods"], bool
        ):
            errors.append(("must be true or false", f"{base}/is_supplier_of_direct_goods"))
        contact_name = attributes.get("name")
        if not (isinstance(contact_name, str) and contact_name.strip()):
            errors.append(("Can not be blank.", f"{base}/name"))
        country = attributes.get("country_code")
        if isinstance(country, str) and country and not re.fullmatch(r"[a-z]{2}", country):
            errors.append(("must be an ISO 3166-1 alpha-2 code in downcase", f"{base}/country_code"))
        iban = attributes.get("bank_account_number")
        if isinstance(iban, str) and iban.strip() and not _iban_valid(iban):
            errors.append(
                (
                    "This Iban is not valid, please contact your bank and provide a new one.",
                    f"{base}/bank_account_number",
                )
            )
        if errors:
            raise ApiError(422, errors)
        tax_id = attributes.get("tax_id")
        if isinstance(tax_id, str) and tax_id and not tax_id.upper().startswith("ES") and self.faults.draw("es_prefix"):
            attributes["tax_id"] = f"ES{tax_id}"  # as the reference's own contacts are stored: ESB85033470
        contact = Contact(
            self._new_id(),
            {**attributes, "is_client": False, "is_supplier": True, "is_employee": False, "deletable": True},
        )
        self.contacts[contact.id] = contact
        if self.faults.draw("contact_204"):
            return Reply(204)  # the reference's "Example response (status: 204)": made, nothing to read back
        return _json(201, {"data": self._contact_resource(contact)})

    def _get_contact(self, request: Request, params: dict[str, str]) -> Reply:
        self._query(request, {}, (), ())
        contact = self.contacts.get(params["id"])
        if contact is None or self.faults.draw("status_404"):
            raise ApiError(404, [("Not found", None)])
        return _json(200, {"data": self._contact_resource(contact)})

    # -- invoices ------------------------------------------------------------------------------------

    def _resource(self, invoice: Invoice) -> dict[str, Any]:
        totals = invoice.totals()
        contact = self.contacts.get(invoice.contact_id or "")
        attributes: dict[str, Any] = {
            "kind": invoice.kind,
            "number": invoice.number,
            "issue_date": invoice.issue_date,
            "due_dates": invoice.due_dates,
            "paid_at": invoice.paid_at,
            "payment_method": invoice.payment_method,
            "payment_status": "paid" if invoice.paid_at else "unpaid",
            "total_amount": str(totals["total"]),
            "total_amount_without_taxes": str(totals["base"]),
            "vat_amount": str(totals["vat"]),
            "retention_amount": str(totals["retention"]),
            "issuing_name": contact.attributes.get("name") if contact else None,
            "issuing_tax_id": contact.attributes.get("tax_id") if contact else None,
            "tags": invoice.tags,
            "notes": invoice.notes,
        }
        relationships: dict[str, Any] = {
            "contact": {"data": {"type": "contacts", "id": invoice.contact_id} if invoice.contact_id else None},
            "items": {"data": [{"type": "book_entry_items", "id": i.id} for i in invoice.items]},
            "amended_invoice": {
                "data": {"type": "invoices", "id": invoice.amended_invoice_id} if invoice.amended_invoice_id else None
            },
            "amending_invoices": {"data": [{"type": "invoices", "id": i} for i in invoice.amending_invoice_ids]},
        }
        return {"id": invoice.id, "type": "invoices", "attributes": attributes, "relationships": relationships}

    def _document(self, invoice: Invoice, status: int = 200, include: bool = True) -> Reply:
        body: dict[str, Any] = {"data": self._resource(invoice)}
        if include:
            body["included"] = [i.resource() for i in invoice.items]
        return _json(status, body)

    def _list_invoices(self, request: Request, _params: dict[str, str]) -> Reply:
        query = self._query(request, INVOICE_FILTER_CHECKS, INVOICE_SORTS, ("items",))
        found = list(self.invoices.values())
        if query.get("filter[type]", "invoices") != "invoices":
            found = []
        if "filter[kind]" in query:
            found = [i for i in found if i.kind == query["filter[kind]"]]
        if "filter[contact_id]" in query:
            found = [i for i in found if i.contact_id == query["filter[contact_id]"]]
        if "filter[period]" in query:
            found = [i for i in found if _period_matches(query["filter[period]"], i.issue_date)]
        if "filter[period][from]" in query:
            found = [i for i in found if i.issue_date >= query["filter[period][from]"]]
        if "filter[period][to]" in query:
            found = [i for i in found if i.issue_date <= query["filter[period][to]"]]
        if "filter[payment_status]" in query:
            paid = query["filter[payment_status]"] == "paid"
            found = [i for i in found if bool(i.paid_at) == paid]
        if "filter[q]" in query:
            term = query["filter[q]"].lower()
            found = [i for i in found if term in (i.number or "").lower() or term in i.tags.lower()]
        chosen, meta = self._page(query, found, PAGE_SIZE)
        body: dict[str, Any] = {"data": [self._resource(i) for i in chosen], "meta": meta}
        if "items" in query.get("include", "").split(","):
            body["included"] = [item.resource() for invoice in chosen for item in invoice.items]
        return _json(200, body)

    def _get_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        query = self._query(request, {}, (), ("items",))
        invoice = self._existing(params["id"])
        if self.faults.draw("status_404"):
            raise ApiError(404, [("Not found", None)])
        return self._document(invoice, include="items" in query.get("include", "").split(","))

    def _existing(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise ApiError(404, [("Not found", None)])
        return invoice

    def _items(self, data: Any, current: Sequence[Item], invoice_kind: str) -> tuple[list[Item], list[Problem]]:
        base_pointer = "/data/relationships/items/data"
        if not isinstance(data, list):
            return [], [("must be a list", base_pointer)]
        existing = {i.id: i for i in current}
        items: list[Item] = []
        errors: list[Problem] = []
        for index, entry in enumerate(data):
            pointer = f"{base_pointer}/{index}"
            if not isinstance(entry, dict):
                errors.append(("must be an object", pointer))
                continue
            if entry.get("type") != "book_entry_items":
                errors.append(("type must be book_entry_items", f"{pointer}/type"))
            attributes = entry.get("attributes", {})
            if not isinstance(attributes, dict):
                errors.append(("must be an object", f"{pointer}/attributes"))
                continue
            item_id = None if entry.get("id") is None else str(entry["id"])
            if item_id is not None and item_id not in existing:
                errors.append(("does not belong to this book entry", f"{pointer}/id"))
                continue
            known = existing.get(item_id) if item_id else None
            where = f"{pointer}/attributes"
            problems = _unknown(attributes, ITEM_WRITABLE, ITEM_READ_ONLY, where)
            for required in ("unitary_amount", "quantity"):
                if known is None and attributes.get(required) is None:
                    problems.append(("Can not be blank.", f"{where}/{required}"))
            unitary = (
                _amount(attributes["unitary_amount"], f"{where}/unitary_amount", problems)
                if attributes.get("unitary_amount") is not None
                else None
            )
            quantity = (
                _number(attributes["quantity"], f"{where}/quantity", problems)
                if attributes.get("quantity") is not None
                else None
            )
            percents: dict[str, Decimal] = {}
            for name in ITEM_PERCENTS:
                if name not in attributes:
                    continue
                value = _number(attributes[name], f"{where}/{name}", problems)
                if value is not None and not Decimal(0) <= value <= HUNDRED:
                    problems.append(("must be between 0 and 100", f"{where}/{name}"))
                elif value is not None:
                    percents[name] = value
            for name in ("concept", "description"):
                if name in attributes and not isinstance(attributes[name], str):
                    problems.append(("must be a string", f"{where}/{name}"))
            kind = attributes.get("kind", known.kind if known else "current")
            if kind not in ITEM_KINDS.get(invoice_kind, ("current",)):
                problems.append((f"must be {' or '.join(ITEM_KINDS.get(invoice_kind, ('current',)))}", f"{where}/kind"))
            if problems:
                errors.extend(problems)
                continue
            items.append(
                Item(
                    id=item_id or self._new_id(),
                    concept=str(attributes.get("concept", known.concept if known else "")),
                    # A new item without either was refused above: the fallbacks are an existing item's own.
                    unitary_amount=unitary if unitary is not None else (known.unitary_amount if known else Decimal(0)),
                    quantity=quantity if quantity is not None else (known.quantity if known else Decimal(0)),
                    vat_percent=percents.get("vat_percent", known.vat_percent if known else Decimal(0)),
                    retention_percent=percents.get(
                        "retention_percent", known.retention_percent if known else Decimal(0)
                    ),
                    description=str(attributes.get("description", known.description if known else "")),
                    kind=str(kind),
                    discount_percent=percents.get("discount_percent", known.discount_percent if known else Decimal(0)),
                )
            )
        return items, errors

    def _check_number(self, invoice: Invoice) -> None:
        if invoice.kind != "expenses" or not invoice.number or invoice.amended_invoice_id:
            return
        for other in self.invoices.values():
            if (
                other.id != invoice.id
                and other.kind == "expenses"
                and other.number == invoice.number
                and other.contact_id == invoice.contact_id
                and other.issue_date[:4] == invoice.issue_date[:4]
                and not other.amended_invoice_id
            ):
                raise ApiError(422, [("has already been taken", "/data/attributes/number")])

    @staticmethod
    def _linkage(relationships: Mapping[str, Any]) -> list[Problem]:
        """Every relationship documented, writable, and linking resources of its type."""
        errors: list[Problem] = []
        for name, value in relationships.items():
            pointer = f"/data/relationships/{name}"
            if name == "amending_invoices":
                errors.append(("is read only", pointer))
                continue
            if name not in INVOICE_RELATIONSHIPS:
                errors.append(("is not a relationship of invoices", pointer))
                continue
            if not isinstance(value, dict) or "data" not in value:
                errors.append(("must be an object with data", pointer))
                continue
            if name == "items":
                continue  # items carry attributes: checked one by one
            expected, many = INVOICE_RELATIONSHIPS[name]
            data = value["data"]
            links = data if many else [data]
            if many and not isinstance(data, list):
                errors.append(("must be a list", f"{pointer}/data"))
                continue
            for index, link in enumerate(links):
                where = f"{pointer}/data" + (f"/{index}" if many else "")
                if link is None and not many:
                    continue
                if not isinstance(link, dict):
                    errors.append(("must be a resource identifier", where))
                    continue
                if link.get("type") != expected:
                    errors.append((f"type must be {expected}", f"{where}/type"))
                identifier = link.get("id")
                if isinstance(identifier, bool) or not isinstance(identifier, str | int) or str(identifier) == "":
                    errors.append(("Can not be blank.", f"{where}/id"))
        return errors

    @staticmethod
    def _set_attributes(invoice: Invoice, attributes: Mapping[str, Any], creating: bool) -> list[Problem]:
        base = "/data/attributes"
        errors = _unknown(attributes, INVOICE_WRITABLE, INVOICE_READ_ONLY, base)
        if "kind" in attributes or creating:
            if attributes.get("kind") not in INVOICE_KINDS:
                blank = attributes.get("kind") is None
                errors.append(("Can not be blank." if blank else "must be income or expenses", f"{base}/kind"))
            else:
                invoice.kind = attributes["kind"]
        if "number" in attributes:
            number = attributes["number"]
            if number is not None and not isinstance(number, str):
                errors.append(("must be a string", f"{base}/number"))
            else:
                invoice.number = number or None
        if "issue_date" in attributes or creating:
            issue_date = attributes.get("issue_date")
            if issue_date is None or issue_date == "":
                errors.append(("Can not be blank.", f"{base}/issue_date"))
            elif not _valid_date(issue_date):
                errors.append(("is not a date with format YYYY-mm-dd", f"{base}/issue_date"))
            else:
                invoice.issue_date = issue_date
        if "due_dates" in attributes:
            due_dates = attributes["due_dates"]
            if not isinstance(due_dates, list):
                errors.append(("must be an array of dates with format YYYY-mm-dd", f"{base}/due_dates"))
            else:
                bad = [i for i, d in enumerate(due_dates) if not _valid_date(d)]
                errors.extend(("is not a date with format YYYY-mm-dd", f"{base}/due_dates/{i}") for i in bad)
                if not bad:
                    invoice.due_dates = list(due_dates)
        if "paid_at" in attributes:
            paid_at = attributes["paid_at"]
            if paid_at is not None and not _valid_date(paid_at):
                errors.append(("is not a date with format YYYY-mm-dd", f"{base}/paid_at"))
            else:
                invoice.paid_at = paid_at
        if "payment_method" in attributes:
            method = attributes["payment_method"]
            if method not in (None, "", *PAYMENT_METHODS):
                errors.append((f"must be one of {', '.join(PAYMENT_METHODS)}", f"{base}/payment_method"))
            else:
                invoice.payment_method = method or None
        if "last_sent_at" in attributes:
            sent = attributes["last_sent_at"]
            if sent is not None and (isinstance(sent, bool) or not isinstance(sent, int)):
                errors.append(("must be a unix timestamp", f"{base}/last_sent_at"))
        for name in ("tags", "notes"):
            if name in attributes:
                if attributes[name] is not None and not isinstance(attributes[name], str):
                    errors.append(("must be a string", f"{base}/{name}"))
                else:
                    setattr(invoice, name, attributes[name] or "")
        return errors

    def _apply(self, invoice: Invoice, data: dict[str, Any], creating: bool) -> None:
        attributes = data.get("attributes") or {}
        relationships = data.get("relationships") or {}
        errors = self._set_attributes(invoice, attributes, creating)
        errors += self._linkage(relationships)
        if "contact" in relationships:
            contact = (relationships["contact"] or {}).get("data") or {}
            invoice.contact_id = (
                None if not isinstance(contact, dict) or contact.get("id") is None else str(contact["id"])
            )
        if invoice.contact_id is None or invoice.contact_id not in self.contacts:
            errors.append(
                ("Can not be blank." if invoice.contact_id is None else "not found", "/data/relationships/contact")
            )
        if "items" in relationships and isinstance(relationships["items"], dict):
            invoice.items, problems = self._items(relationships["items"].get("data"), invoice.items, invoice.kind)
            errors += problems
        elif creating:
            # The reference: items "Must be included in the payload in POST/PATCH/PUT requests". Its own PATCH
            # example sends no items, so only a create must carry them.
            errors.append(("Must be included", "/data/relationships/items"))
        if errors:
            raise ApiError(422, errors)
        self._check_number(invoice)

    def _refuse_for_good(self, invoice: Invoice) -> None:
        """status_422: a valid document refused for good; the chaos checker expects it dead-lettered."""
        reason = "The accounting period is closed."
        self.faults.record_refusal(invoice.marker(), f"quipu 422: {reason}")
        raise ApiError(422, [(reason, "/data/attributes/issue_date")])

    def _create_invoice(self, request: Request, _params: dict[str, str]) -> Reply:
        data = self._body(request, "invoices")
        amended = ((data.get("relationships") or {}).get("amended_invoice") or {}).get("data")
        if amended:
            return self._credit_note(data)
        invoice = Invoice(id=self._new_id(), kind="", number=None, issue_date="", contact_id=None)
        self._apply(invoice, data, creating=True)
        if self.faults.draw("status_422"):
            self._refuse_for_good(invoice)
        self.invoices[invoice.id] = invoice
        return self._document(invoice, 201)

    def _credit_note(self, data: dict[str, Any]) -> Reply:
        relationships = data.get("relationships") or {}
        attributes = data.get("attributes") or {}
        errors = self._linkage(relationships)
        if errors:
            raise ApiError(422, errors)
        original = self.invoices.get(str(relationships["amended_invoice"]["data"]["id"]))
        if original is None:
            raise ApiError(422, [("not found", "/data/relationships/amended_invoice")])
        if original.amended_invoice_id:
            raise ApiError(422, [("a credit note can not be amended", "/data/relationships/amended_invoice")])
        note = Invoice(
            id=self._new_id(),
            kind=original.kind,
            number=None,
            issue_date=time.strftime("%Y-%m-%d", time.gmtime(self._clock())),
            contact_id=original.contact_id,
            amended_invoice_id=original.id,
        )
        errors = self._set_attributes(note, attributes, creating=False)
        if "items" in relationships:
            note.items, problems = self._items(relationships["items"].get("data"), [], original.kind)
            errors += problems
        else:
            if original.amending_invoice_ids:
                raise ApiError(422, [("is already fully amended", "/data/relationships/amended_invoice")])
            note.items = [
                Item(
                    self._new_id(),
                    i.concept,
                    i.unitary_amount,
                    -i.quantity,
                    i.vat_percent,
                    i.retention_percent,
                    i.description,
                    i.kind,
                    i.discount_percent,
                )
                for i in original.items
            ]
        if errors:
            raise ApiError(422, errors)
        self.invoices[note.id] = note
        original.amending_invoice_ids.append(note.id)
        return self._document(note, 201)

    def _patch_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        invoice = self._existing(params["id"])
        data = self._body(request, "invoices")
        if data.get("id") is not None and str(data["id"]) != invoice.id:
            raise ApiError(409, [("id does not match the URL", "/data/id")])
        draft = Invoice(**{**invoice.__dict__, "items": list(invoice.items), "due_dates": list(invoice.due_dates)})
        self._apply(draft, data, creating=False)
        if self.faults.draw("status_422"):
            self._refuse_for_good(draft)
        self.invoices[invoice.id] = draft
        return self._document(draft)

    def _delete_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        self._query(request, {}, (), ())
        invoice = self._existing(params["id"])
        del self.invoices[invoice.id]
        for note_id in invoice.amending_invoice_ids:
            self.invoices.pop(note_id, None)
        return Reply(204)

    # -- attachments ---------------------------------------------------------------------------------

    def _create_attachment(self, request: Request, _params: dict[str, str]) -> Reply:
        content_type = request.header("content-type") or ""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + request.body
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = (part.get_filename(), payload)
        book_entry_id = fields.get("book_entry_id", (None, b""))[1].decode("utf-8", "replace").strip()
        errors: list[tuple[str, str | None]] = []
        if book_entry_id not in self.invoices:
            errors.append(("Can not be blank." if not book_entry_id else "not found", "/data/relationships/book_entry"))
        if "file" not in fields or not fields["file"][1]:
            errors.append(("Can not be blank.", "/data/attributes/file"))
        if errors:
            raise ApiError(422, errors)
        attachment_id = self._new_id()
        filename = fields["file"][0] or "file"
        self.attachments[attachment_id] = {
            "book_entry_id": book_entry_id,
            "filename": filename,
            "content": fields["file"][1],
        }
        return _json(201, {"data": self._attachment_resource(attachment_id)})

    def _attachment_resource(self, attachment_id: str) -> dict[str, Any]:
        attachment = self.attachments[attachment_id]
        url = f"uploads/book_entry_attachments/{attachment_id}/{attachment['filename']}"
        return {
            "id": attachment_id,
            "type": "attachments",
            "attributes": {"url": url, "small_url": None, "thumbnail_url": None},
            "relationships": {"book_entry": {"data": {"id": attachment["book_entry_id"], "type": "invoices"}}},
        }

    def _get_attachment(self, request: Request, params: dict[str, str]) -> Reply:
        self._query(request, {}, (), ())
        if params["id"] not in self.attachments or self.faults.draw("status_404"):
            raise ApiError(404, [("Not found", None)])
        return _json(200, {"data": self._attachment_resource(params["id"])})

    def _delete_attachment(self, _request: Request, params: dict[str, str]) -> Reply:
        if self.attachments.pop(params["id"], None) is None:
            raise ApiError(404, [("Not found", None)])
        return Reply(204)

    # -- what the demo and tests check ---------------------------------------------------------------

    def expense_invoices(self, number: str) -> list[Invoice]:
        """Every expense invoice (not credit notes) with that number."""
        with self._lock:
            return [
                i
                for i in self.invoices.values()
                if i.kind == "expenses" and i.number == number and not i.amended_invoice_id
            ]

    def credit_notes(self, invoice_id: str) -> list[Invoice]:
        """The credit notes amending an invoice."""
        with self._lock:
            return [i for i in self.invoices.values() if i.amended_invoice_id == invoice_id]

    def contacts_with_tax_id(self, tax_id: str) -> list[Contact]:
        """Contacts with that tax id."""
        with self._lock:
            return [c for c in self.contacts.values() if str(c.attributes.get("tax_id", "")).upper() == tax_id.upper()]

    def demo_check(self, buildnexion: BuildNexionPeer, events: Sequence[Mapping[str, Any]]) -> DemoCheck:
        """Every supplier invoice sent is in Quipu once, with BuildNexion's total; a voided one is credited or gone."""
        del buildnexion  # the events carry the objects as BuildNexion's GET returns them
        latest: dict[str, Mapping[str, Any]] = {}
        for event in events:
            obj = event["data"]["object"]
            if obj.get("object") != "invoice":
                continue
            known = latest.get(obj["id"])
            if known is None or str(obj["updated_at"]) >= str(known["updated_at"]):
                latest[obj["id"]] = obj
        check = DemoCheck()
        for invoice_id, obj in sorted(latest.items()):
            problems = self._check_invoice(obj)
            if problems:
                check.problems.extend(f"{invoice_id} ({obj['invoice_number']}): {p}" for p in problems)
            else:
                check.synced += 1
        return check

    def _check_invoice(self, obj: Mapping[str, Any]) -> list[str]:
        found = self.expense_invoices(str(obj["invoice_number"]))
        voided = str(obj.get("status", "")).lower() in {"void", "voided"}
        if voided and not found:
            return []  # deleted
        if len(found) != 1:
            return [f"{len(found)} expense invoices in Quipu, expected 1"]
        (invoice,) = found
        problems = []
        if invoice.total_cents != obj["total_amount"]:
            problems.append(f"Quipu total {invoice.total_cents} != BuildNexion total {obj['total_amount']}")
        if voided:
            notes = self.credit_notes(invoice.id)
            if len(notes) != 1:
                problems.append(f"{len(notes)} credit notes, expected 1")
            elif notes[0].total_cents != -obj["total_amount"]:
                problems.append(f"credit note total {notes[0].total_cents} != -{obj['total_amount']}")
        return problems


def _fault_reply(status: int, code: str | None) -> Reply:
    return ApiError(status, [(code or "Service unavailable", None)]).reply()


def create_peer(settings: LocalSettings) -> QuipuPeer:
    """The sandbox Quipu for the local stack, with the stack's Quipu credentials and faults (LOCAL_FAULTS)."""
    return QuipuPeer(
        QuipuOptions(app_id=settings.quipu_app_id, app_secret=settings.quipu_app_secret),
        faults=settings.fault_settings().plan("quipu"),
    )
