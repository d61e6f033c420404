"""The sandbox Quipu, faithful to the reference (seeds 001/002) in what the bundle relies on.

- `POST /oauth/token`: client credentials with `Authorization: Basic urlsafe_b64(app_id:app_secret)`,
  `scope=ecommerce`; tokens really expire (lifetime configurable); `expires_in` as an epoch, as the
  reference's example shows (or as seconds, by option);
- every request needs `Accept: application/vnd.quipu.v1+json` (406) and writes need it as Content-Type (415;
  the token form and the multipart attachment upload excepted);
- a sliding limit of 5 requests in any 5 seconds per app id, token requests included: 429 with RateLimit-*
  headers and Retry-After;
- contacts (filters `tax_id`, `q`, `kind`; 20 a page), invoices (filters `kind`, `contact_id`, `period`, `q`;
  20 a page; `include=items`), totals computed from the items, PATCH item semantics (with id: changed,
  without: added, unlisted: removed), 422s as `errors[].detail/source.pointer` (duplicate number per
  supplier per fiscal year, validation), full credit notes through `amended_invoice`, attachments.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck
from sandbox.ratelimit import SlidingWindow

if TYPE_CHECKING:
    from sandbox.buildnexion import BuildNexionPeer
    from sandbox.settings import LocalSettings

MEDIA_TYPE = "application/vnd.quipu.v1+json"
PAGE_SIZE = 20
CENT = Decimal("0.01")


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

    def amounts(self) -> tuple[Decimal, Decimal, Decimal]:
        """(base, VAT, retention), unrounded."""
        base = self.unitary_amount * self.quantity
        return base, base * self.vat_percent / 100, base * self.retention_percent / 100

    def resource(self) -> dict[str, Any]:
        """As `included` shows it."""
        base, vat, retention = self.amounts()
        return {
            "id": self.id,
            "type": "book_entry_items",
            "attributes": {
                "concept": self.concept,
                "unitary_amount": str(self.unitary_amount),
                "quantity": str(self.quantity),
                "vat_amount": str(vat),
                "retention_amount": str(retention),
                "total_amount": str(base + vat - retention),
                "vat_percent": str(self.vat_percent),
                "retention_percent": str(self.retention_percent),
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


@dataclass
class Contact:
    """A contact."""

    id: str
    attributes: dict[str, Any]


class ApiError(Exception):
    """An error answer."""

    def __init__(self, status: int, errors: list[tuple[str, str | None]], headers: dict[str, str] | None = None):
        self.status = status
        self.errors = errors
        self.headers = headers or {}
        super().__init__(status)

    def reply(self) -> Reply:
        """`{"errors": [{"detail", "source": {"pointer"}}]}`."""
        body = [
            {"detail": detail, **({"source": {"pointer": pointer}} if pointer else {})}
            for detail, pointer in self.errors
        ]
        return Reply.json(self.status, {"errors": body}, self.headers)


def _decimal(value: Any, pointer: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ApiError(422, [("is not a number", pointer)])
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ApiError(422, [("is not a number", pointer)]) from None
    if not number.is_finite():
        raise ApiError(422, [("is not a number", pointer)])
    return number


def _period_matches(period: str, issue_date: str) -> bool:
    year, _, part = period.partition("-")
    if not issue_date.startswith(year):
        return False
    if not part:
        return True
    month = int(issue_date[5:7])
    if part.upper().startswith("Q") and part[1:].isdigit():
        return (month - 1) // 3 + 1 == int(part[1:])
    return part.isdigit() and int(part) == month


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
        self._server = LocalHttpServer(self.faults.wrap(router, error_reply=_fault_reply), port=self.options.port)

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

    def _limit(self, app_id: str) -> dict[str, str]:
        allowed, headers = self.limiter.hit(app_id)
        if not allowed:
            raise ApiError(429, [("Too many requests", None)], headers)
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
            headers = self._limit(app_id)
            form = parse_qs(request.body.decode("utf-8", "replace"))
            if form.get("grant_type") != ["client_credentials"]:
                return Reply.json(400, {"error": "unsupported_grant_type"}, headers)
            if form.get("scope", ["ecommerce"]) != ["ecommerce"]:
                return Reply.json(400, {"error": "invalid_scope"}, headers)
            now = self._clock()
            token = secrets.token_hex(32)
            expires_at = now + self.options.token_lifetime_seconds
            with self._lock:
                self.tokens[token] = expires_at
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
        if scheme.lower() != "basic":
            raise ApiError(401, [("invalid_client", None)])
        try:
            decoded = base64.urlsafe_b64decode(credentials.strip().encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApiError(401, [("invalid_client", None)]) from None
        app_id, _, app_secret = decoded.partition(":")
        if not (
            secrets.compare_digest(app_id.encode(), self.options.app_id.encode())
            and secrets.compare_digest(app_secret.encode(), self.options.app_secret.encode())
        ):
            raise ApiError(401, [("invalid_client", None)])
        return app_id

    def _api(
        self, method: str, path: str, handler: Callable[[Request, dict[str, str]], Reply]
    ) -> Callable[[Request, dict[str, str]], Reply]:
        def route(request: Request, params: dict[str, str]) -> Reply:
            def run() -> Reply:
                header = request.header("authorization") or ""
                token = header[7:].strip() if header.lower().startswith("bearer ") else ""
                with self._lock:
                    expires_at = self.tokens.get(token)
                if expires_at is None or expires_at <= self._clock():
                    # Unauthenticated requests are not counted against the app's window (no app known).
                    raise ApiError(401, [("The access token is invalid or has expired", None)])
                headers = self._limit(self.options.app_id)
                if MEDIA_TYPE not in (request.header("accept") or ""):
                    raise ApiError(406, [(f"Accept must be {MEDIA_TYPE}", None)], headers)
                content_type = request.header("content-type") or ""
                multipart = path == "/attachments" and content_type.startswith("multipart/form-data")
                if method in {"POST", "PATCH", "PUT"} and not multipart and not content_type.startswith(MEDIA_TYPE):
                    raise ApiError(415, [(f"Content-Type must be {MEDIA_TYPE}", None)], headers)
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
    def _body(request: Request) -> dict[str, Any]:
        try:
            document = json.loads(request.body, parse_float=Decimal)
        except ValueError:
            raise ApiError(400, [("The body is not valid JSON", None)]) from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise ApiError(400, [("A JSON-API document with data is required", "/data")])
        return data

    @staticmethod
    def _page(request: Request, resources: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        try:
            number = max(1, int(request.query.get("page[number]", ["1"])[0]))
        except ValueError:
            raise ApiError(400, [("page[number] must be a number", None)]) from None
        pages = max(1, -(-len(resources) // PAGE_SIZE))
        chosen = resources[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        meta = {"pagination_info": {"total_pages": pages, "current_page": number, "total_results": len(resources)}}
        return chosen, meta

    # -- contacts ------------------------------------------------------------------------------------

    @staticmethod
    def _contact_resource(contact: Contact) -> dict[str, Any]:
        return {"id": contact.id, "type": "contacts", "attributes": contact.attributes}

    def _list_contacts(self, request: Request, _params: dict[str, str]) -> Reply:
        query = request.query
        found = list(self.contacts.values())
        if "filter[tax_id]" in query:
            wanted = query["filter[tax_id]"][0].upper()
            found = [c for c in found if str(c.attributes.get("tax_id") or "").upper() == wanted]
        if "filter[q]" in query:
            term = query["filter[q]"][0].lower()
            found = [c for c in found if term in str(c.attributes.get("name", "")).lower()]
        if "filter[kind]" in query:
            kind = query["filter[kind]"][0]
            found = [c for c in found if c.attributes.get(f"is_{kind}")]
        chosen, meta = self._page(request, found)
        return Reply.json(200, {"data": [self._contact_resource(c) for c in chosen], "meta": meta})

    def _create_contact(self, request: Request, _params: dict[str, str]) -> Reply:
        data = self._body(request)
        attributes = dict(data.get("attributes") or {})
        errors: list[tuple[str, str | None]] = []
        if not str(attributes.get("name") or "").strip():
            errors.append(("Can not be blank.", "/data/attributes/name"))
        if errors:
            raise ApiError(422, errors)
        contact = Contact(
            self._new_id(),
            {
                **{k: v for k, v in attributes.items() if isinstance(v, str | int | bool) or v is None},
                "is_client": False,
                "is_supplier": True,
                "is_employee": False,
                "deletable": True,
            },
        )
        self.contacts[contact.id] = contact
        return Reply.json(201, {"data": self._contact_resource(contact)})

    def _get_contact(self, _request: Request, params: dict[str, str]) -> Reply:
        contact = self.contacts.get(params["id"])
        if contact is None:
            raise ApiError(404, [("Not found", None)])
        return Reply.json(200, {"data": self._contact_resource(contact)})

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
        return Reply.json(status, body)

    def _list_invoices(self, request: Request, _params: dict[str, str]) -> Reply:
        query = request.query
        found = list(self.invoices.values())
        if "filter[kind]" in query:
            found = [i for i in found if i.kind == query["filter[kind]"][0]]
        if "filter[contact_id]" in query:
            found = [i for i in found if i.contact_id == query["filter[contact_id]"][0]]
        if "filter[period]" in query:
            found = [i for i in found if _period_matches(query["filter[period]"][0], i.issue_date)]
        if "filter[q]" in query:
            term = query["filter[q]"][0].lower()
            found = [i for i in found if term in (i.number or "").lower()]
        chosen, meta = self._page(request, found)
        body: dict[str, Any] = {"data": [self._resource(i) for i in chosen], "meta": meta}
        if "items" in query.get("include", [""])[0].split(","):
            body["included"] = [item.resource() for invoice in chosen for item in invoice.items]
        return Reply.json(200, body)

    def _get_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        invoice = self._existing(params["id"])
        return self._document(invoice, include="items" in request.query.get("include", [""])[0].split(","))

    def _existing(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise ApiError(404, [("Not found", None)])
        return invoice

    def _items(self, data: Any, current: Sequence[Item]) -> list[Item]:
        if not isinstance(data, list):
            raise ApiError(422, [("must be a list", "/data/relationships/items/data")])
        existing = {i.id: i for i in current}
        items: list[Item] = []
        errors: list[tuple[str, str | None]] = []
        for index, entry in enumerate(data):
            pointer = f"/data/relationships/items/data/{index}"
            attributes = entry.get("attributes") or {} if isinstance(entry, dict) else {}
            item_id = str(entry["id"]) if isinstance(entry, dict) and entry.get("id") is not None else None
            if item_id is not None and item_id not in existing:
                errors.append(("does not belong to this book entry", f"{pointer}/id"))
                continue
            base = existing.get(item_id) if item_id else None
            try:
                item = Item(
                    id=item_id or self._new_id(),
                    concept=str(attributes.get("concept", base.concept if base else "")),
                    unitary_amount=_decimal(
                        attributes.get("unitary_amount", base.unitary_amount if base else None),
                        f"{pointer}/attributes/unitary_amount",
                    ),
                    quantity=_decimal(
                        attributes.get("quantity", base.quantity if base else 1), f"{pointer}/attributes/quantity"
                    ),
                    vat_percent=_decimal(
                        attributes.get("vat_percent", base.vat_percent if base else 0),
                        f"{pointer}/attributes/vat_percent",
                    ),
                    retention_percent=_decimal(
                        attributes.get("retention_percent", base.retention_percent if base else 0),
                        f"{pointer}/attributes/retention_percent",
                    ),
                    description=str(attributes.get("description", base.description if base else "")),
                )
            except ApiError as exc:
                errors.extend(exc.errors)
                continue
            for name in ("vat_percent", "retention_percent"):
                value = getattr(item, name)
                if not Decimal(0) <= value <= Decimal(100):
                    errors.append(("must be between 0 and 100", f"{pointer}/attributes/{name}"))
            items.append(item)
        if errors:
            raise ApiError(422, errors)
        return items

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

    def _apply(self, invoice: Invoice, data: dict[str, Any], creating: bool) -> None:
        attributes = data.get("attributes") or {}
        relationships = data.get("relationships") or {}
        errors: list[tuple[str, str | None]] = []
        if "kind" in attributes or creating:
            if attributes.get("kind") not in {"income", "expenses"}:
                errors.append(("must be income or expenses", "/data/attributes/kind"))
            else:
                invoice.kind = attributes["kind"]
        if "number" in attributes:
            invoice.number = None if attributes["number"] is None else str(attributes["number"])
        if "issue_date" in attributes or creating:
            issue_date = str(attributes.get("issue_date") or "")
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", issue_date):
                errors.append(
                    ("Can not be blank." if not issue_date else "is not a date", "/data/attributes/issue_date")
                )
            else:
                invoice.issue_date = issue_date
        if "due_dates" in attributes:
            invoice.due_dates = [str(d) for d in attributes["due_dates"] or []]
        if "paid_at" in attributes:
            invoice.paid_at = None if attributes["paid_at"] is None else str(attributes["paid_at"])
        for name in ("tags", "notes"):
            if name in attributes:
                setattr(invoice, name, str(attributes[name] or ""))
        if "contact" in relationships:
            contact = (relationships["contact"] or {}).get("data") or {}
            invoice.contact_id = str(contact["id"]) if contact.get("id") is not None else None
        if invoice.contact_id is None or invoice.contact_id not in self.contacts:
            errors.append(
                ("Can not be blank." if invoice.contact_id is None else "not found", "/data/relationships/contact")
            )
        if "items" in relationships:
            try:
                invoice.items = self._items((relationships["items"] or {}).get("data"), invoice.items)
            except ApiError as exc:
                errors.extend(exc.errors)
        elif creating:
            errors.append(("Must be included", "/data/relationships/items"))
        if errors:
            raise ApiError(422, errors)
        self._check_number(invoice)

    def _create_invoice(self, request: Request, _params: dict[str, str]) -> Reply:
        data = self._body(request)
        amended = ((data.get("relationships") or {}).get("amended_invoice") or {}).get("data")
        if amended:
            return self._credit_note(str(amended.get("id")), data)
        invoice = Invoice(id=self._new_id(), kind="", number=None, issue_date="", contact_id=None)
        self._apply(invoice, data, creating=True)
        self.invoices[invoice.id] = invoice
        return self._document(invoice, 201)

    def _credit_note(self, original_id: str, data: dict[str, Any]) -> Reply:
        original = self.invoices.get(original_id)
        if original is None:
            raise ApiError(422, [("not found", "/data/relationships/amended_invoice")])
        if original.amended_invoice_id:
            raise ApiError(422, [("a credit note can not be amended", "/data/relationships/amended_invoice")])
        relationships = data.get("relationships") or {}
        if "items" in relationships:
            items = self._items((relationships["items"] or {}).get("data"), [])
        else:
            if original.amending_invoice_ids:
                raise ApiError(422, [("is already fully amended", "/data/relationships/amended_invoice")])
            items = [
                Item(
                    self._new_id(),
                    i.concept,
                    i.unitary_amount,
                    -i.quantity,
                    i.vat_percent,
                    i.retention_percent,
                    i.description,
                )
                for i in original.items
            ]
        attributes = data.get("attributes") or {}
        note = Invoice(
            id=self._new_id(),
            kind=original.kind,
            number=str(attributes["number"]) if attributes.get("number") else None,
            issue_date=str(attributes.get("issue_date") or time.strftime("%Y-%m-%d", time.gmtime(self._clock()))),
            contact_id=original.contact_id,
            items=items,
            amended_invoice_id=original.id,
        )
        self.invoices[note.id] = note
        original.amending_invoice_ids.append(note.id)
        return self._document(note, 201)

    def _patch_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        invoice = self._existing(params["id"])
        data = self._body(request)
        if data.get("id") is not None and str(data["id"]) != invoice.id:
            raise ApiError(409, [("id does not match the URL", "/data/id")])
        draft = Invoice(**{**invoice.__dict__, "items": list(invoice.items), "due_dates": list(invoice.due_dates)})
        self._apply(draft, data, creating=False)
        self.invoices[invoice.id] = draft
        return self._document(draft)

    def _delete_invoice(self, _request: Request, params: dict[str, str]) -> Reply:
        invoice = self._existing(params["id"])
        del self.invoices[invoice.id]
        for note_id in invoice.amending_invoice_ids:
            self.invoices.pop(note_id, None)
        return Reply(204)

    # -- attachments ---------------------------------------------------------------------------------

    def _create_attachment(self, request: Request, _params: dict[str, str]) -> Reply:
        content_type = request.header("content-type") or ""
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(415, [("Content-Type must be multipart/form-data", None)])
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
        return Reply.json(201, {"data": self._attachment_resource(attachment_id)})

    def _attachment_resource(self, attachment_id: str) -> dict[str, Any]:
        attachment = self.attachments[attachment_id]
        url = f"uploads/book_entry_attachments/{attachment_id}/{attachment['filename']}"
        return {
            "id": attachment_id,
            "type": "attachments",
            "attributes": {"url": url, "small_url": None, "thumbnail_url": None},
            "relationships": {"book_entry": {"data": {"id": attachment["book_entry_id"], "type": "invoices"}}},
        }

    def _get_attachment(self, _request: Request, params: dict[str, str]) -> Reply:
        if params["id"] not in self.attachments:
            raise ApiError(404, [("Not found", None)])
        return Reply.json(200, {"data": self._attachment_resource(params["id"])})

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
