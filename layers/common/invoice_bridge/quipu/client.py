"""Quipu's API (seeds 001/002): OAuth2 client credentials, the vendor media type, JSON-API bodies and errors.

One `QuipuClient` per credential. Its access token lives in the state table so that every concurrent Lambda
uses the same one; it is renewed ahead of expiry by one renewer at a time (a lease), never used after it
expires, and dropped on a 401 (then the request is retried once with a new one). Every request, the token
request included, goes through the shared rate limiter (5 per 5 s per app id).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from invoice_bridge import taxid
from invoice_bridge.errors import PlatformError, RetryLater
from invoice_bridge.http import ApiClient, Deadline, ErrorDetail, segment
from invoice_bridge.keys import TOKEN_SK, token_pk
from invoice_bridge.ledger import Leases, StateTable
from invoice_bridge.money import dumps
from invoice_bridge.observability import count, logger

MEDIA_TYPE = "application/vnd.quipu.v1+json"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
TOKEN_SCOPE = "ecommerce"  # noqa: S105 - a scope name, not a secret
# An `expires_in` this large is an absolute epoch (the reference's own example), not a number of seconds.
EPOCH_THRESHOLD = 1_000_000_000
# A token is renewed when this share of its lifetime is left (at most RENEW_AHEAD_MAX seconds before expiry),
# and not used at all in its last SAFETY share (a request must reach Quipu before the token lapses).
RENEW_AHEAD_SHARE = 0.2
RENEW_AHEAD_MAX_SECONDS = 300.0
SAFETY_SHARE = 0.05
SAFETY_MAX_SECONDS = 15.0
RENEW_LEASE_SECONDS = 30.0
WAIT_FOR_RENEWER_SECONDS = 10.0
WAIT_POLL_SECONDS = 0.2
DUPLICATE_NUMBER = "duplicate_number"


def basic_credentials(app_id: str, app_secret: str) -> str:
    """`Basic <urlsafe base64(app_id:app_secret)>`, exactly as the reference builds it."""
    raw = f"{app_id}:{app_secret}".encode()
    return "Basic " + base64.urlsafe_b64encode(raw).decode("ascii")


def credential_digest(app_id: str) -> str:
    """A stable, non-reversible name for a credential in item keys (the app id is never stored)."""
    return hashlib.sha256(app_id.encode("utf-8")).hexdigest()[:20]


# -- the token -----------------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    """`POST /oauth/token`'s answer."""

    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr = Field(min_length=1)
    token_type: str = "bearer"  # noqa: S105 - a type name
    expires_in: int = Field(gt=0)
    created_at: int | None = None


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it lapses (epoch seconds, on our clock)."""

    value: SecretStr
    issued_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry."""
        return max(0.0, self.expires_at - self.issued_at)

    def usable(self, now: float) -> bool:
        """Whether a request sent now still reaches Quipu before the token lapses."""
        return self.expires_at - now > min(SAFETY_MAX_SECONDS, self.lifetime * SAFETY_SHARE)

    def due_for_renewal(self, now: float) -> bool:
        """Whether the token is close enough to expiry to be renewed now (whatever its lifetime)."""
        return self.expires_at - now <= min(RENEW_AHEAD_MAX_SECONDS, self.lifetime * RENEW_AHEAD_SHARE)


def token_from_response(document: Mapping[str, Any], requested_at: float) -> AccessToken:
    """The token and its expiry; `expires_in` may be seconds or an absolute epoch (both occur).

    With an epoch and `created_at`, the lifetime is their difference, applied from when we asked: our clock
    and Quipu's need not agree. An epoch without `created_at` is taken as it is.
    """
    try:
        parsed = TokenResponse.model_validate(document)
    except ValidationError:
        raise PlatformError("quipu", "token response without access_token/expires_in", retryable=True) from None
    if parsed.expires_in >= EPOCH_THRESHOLD:
        if parsed.created_at is not None and parsed.created_at < parsed.expires_in:
            expires_at = requested_at + (parsed.expires_in - parsed.created_at)
        else:
            expires_at = float(parsed.expires_in)
    else:
        expires_at = requested_at + parsed.expires_in
    if expires_at <= requested_at:
        raise PlatformError("quipu", "token response with an expiry in the past", retryable=True, code="token_expired")
    return AccessToken(parsed.access_token, requested_at, expires_at)


class TokenStore:
    """The shared token in the state table: pk `token#quipu#<digest>`, sk `token`."""

    def __init__(self, table: StateTable, app_id: str) -> None:
        self._table = table
        self._pk = token_pk("quipu", credential_digest(app_id))

    @property
    def lease_name(self) -> str:
        """The lease held by the one renewer."""
        return self._pk

    def get(self) -> AccessToken | None:
        """The shared token, if any."""
        item = self._table.get(self._pk, TOKEN_SK)
        if not item:
            return None
        return AccessToken(
            SecretStr(item["access_token"]["S"]), float(item["issued_at"]["N"]), float(item["expires_at"]["N"])
        )

    def put(self, token: AccessToken) -> None:
        """Share a fresh token (the renewer holds the lease)."""
        self._table.put(
            {
                "pk": {"S": self._pk},
                "sk": {"S": TOKEN_SK},
                "access_token": {"S": token.value.get_secret_value()},
                "issued_at": {"N": f"{token.issued_at:.3f}"},
                "expires_at": {"N": f"{token.expires_at:.3f}"},
                "ttl": {"N": str(int(token.expires_at) + 3600)},
            }
        )

    def drop(self, token: AccessToken) -> None:
        """Forget `token` (Quipu refused it), unless another worker already replaced it."""
        self._table.delete_if(self._pk, TOKEN_SK, "access_token = :t", {":t": {"S": token.value.get_secret_value()}})


# -- JSON-API documents --------------------------------------------------------------------------------


class Resource(BaseModel):
    """One JSON-API resource object."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    relationships: dict[str, Any] = Field(default_factory=dict)

    def related_ids(self, name: str) -> list[str]:
        """Ids of a relationship (one or many)."""
        data = (self.relationships.get(name) or {}).get("data")
        if isinstance(data, dict):
            return [str(data["id"])]
        if isinstance(data, list):
            return [str(d["id"]) for d in data if isinstance(d, dict) and "id" in d]
        return []


class Document(BaseModel):
    """A JSON-API response: one resource or a page of them, with sideloaded `included` resources."""

    model_config = ConfigDict(extra="ignore")

    data: Resource | list[Resource] | None = None
    included: list[Resource] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def resources(self) -> list[Resource]:
        """`data` as a list."""
        if self.data is None:
            return []
        return self.data if isinstance(self.data, list) else [self.data]

    def total_pages(self) -> int:
        """`meta.pagination_info.total_pages` (1 when absent)."""
        info = self.meta.get("pagination_info") or {}
        try:
            return max(1, int(info.get("total_pages") or 1))
        except (TypeError, ValueError):
            return 1


@dataclass(frozen=True)
class RemoteItem:
    """A book entry item as Quipu holds it."""

    id: str
    concept: str


@dataclass(frozen=True)
class RemoteInvoice:
    """An invoice as Quipu answered it: what the sync needs of it."""

    id: str
    number: str | None
    kind: str | None
    contact_id: str | None
    total_amount: Decimal | None
    items: tuple[RemoteItem, ...]
    amending_invoice_ids: tuple[str, ...]
    tags: tuple[str, ...] = ()


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, float | bool):
        return None  # Quipu writes money as decimal strings; a float here would already be rounded
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def remote_invoice(resource: Resource, included: list[Resource]) -> RemoteInvoice:
    """An invoice resource with its sideloaded items."""
    by_id = {(r.type, r.id): r for r in included}
    items = []
    for item_id in resource.related_ids("items"):
        item = by_id.get(("book_entry_items", item_id))
        items.append(RemoteItem(item_id, str(item.attributes.get("concept", "")) if item else ""))
    contact = resource.related_ids("contact")
    return RemoteInvoice(
        id=resource.id,
        number=None if resource.attributes.get("number") is None else str(resource.attributes["number"]),
        kind=resource.attributes.get("kind"),
        contact_id=contact[0] if contact else None,
        total_amount=_decimal(resource.attributes.get("total_amount")),
        items=tuple(items),
        amending_invoice_ids=tuple(resource.related_ids("amending_invoices")),
        # The reference: "a list of strings separated by comma" ("vip client, important").
        tags=tuple(t.strip() for t in str(resource.attributes.get("tags") or "").split(",") if t.strip()),
    )


# -- the client ----------------------------------------------------------------------------------------


class QuipuClient(ApiClient):
    """Quipu's API for one app id: token, media type, owner prefix, typed errors, the shared limiter."""

    platform: ClassVar[str] = "quipu"

    def __init__(
        self,
        base_url: str,
        app_id: SecretStr,
        app_secret: SecretStr,
        *,
        tokens: TokenStore,
        leases: Leases,
        owner_slug: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, clock=clock, sleep=sleep, **kwargs)
        self._app_id = app_id
        self._app_secret = app_secret
        self._tokens = tokens
        self._leases = leases
        self._prefix = f"/{owner_slug.strip('/')}" if owner_slug.strip("/") else ""
        self._token: AccessToken | None = None
        self._refused: set[str] = set()
        self._deadline: Deadline | None = None
        self.token_requests = 0

    # -- ApiClient hooks -----------------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """The vendor media type on every request."""
        return {"Accept": MEDIA_TYPE}

    def auth_headers(self) -> dict[str, str]:
        """The shared bearer token, renewed first when due."""
        token = self.access_token(self._deadline or Deadline(WAIT_FOR_RENEWER_SECONDS))
        return {"Authorization": f"Bearer {token.value.get_secret_value()}"}

    def parse_error(self, response: requests.Response) -> ErrorDetail:
        """`{"errors": [{"detail", "source": {"pointer"}}]}`; a 422 on the number is a duplicate number."""
        try:
            document = response.json()
        except ValueError:
            return ErrorDetail(message=response.reason or f"HTTP {response.status_code}")
        errors = document.get("errors") if isinstance(document, dict) else None
        if not isinstance(errors, list) or not errors:
            return super().parse_error(response)
        parts: list[str] = []
        pointers: list[str] = []
        for error in errors:
            if not isinstance(error, dict):
                continue
            detail = str(error.get("detail") or error.get("title") or "invalid")
            pointer = (error.get("source") or {}).get("pointer") if isinstance(error.get("source"), dict) else None
            if pointer:
                pointers.append(str(pointer))
                parts.append(f"{pointer}: {detail}")
            else:
                parts.append(detail)
        field = pointers[0].rsplit("/", 1)[-1] if pointers else None
        code = None
        if response.status_code == 422:
            code = DUPLICATE_NUMBER if any(p.endswith("/attributes/number") for p in pointers) else "validation"
        return ErrorDetail(message="; ".join(parts) or "invalid", code=code, field=field)

    def on_unauthorized(self) -> bool:
        """Quipu refused the token: forget it everywhere and try once more with a new one."""
        token = self._token
        self._token = None
        if token is not None:
            self._refused.add(token.value.get_secret_value())
            self._tokens.drop(token)
        count("QuipuTokenRefused")
        logger.info("quipu refused the access token; renewing it")
        self.access_token(self._deadline or Deadline(WAIT_FOR_RENEWER_SECONDS))  # before the retry takes its slot
        return True

    def request(self, method: str, path: str, *, deadline: Deadline, **kwargs: Any) -> requests.Response:
        """ApiClient.request, with the deadline kept for the token renewal it may need."""
        previous, self._deadline = self._deadline, deadline
        try:
            if kwargs.get("authenticate", True):
                # The token first: its own request takes its rate-limit slot before this one reserves one,
                # so every request leaves at the slot it reserved.
                self.access_token(deadline)
            return super().request(method, path, deadline=deadline, **kwargs)
        finally:
            self._deadline = previous

    # -- the token -----------------------------------------------------------------------------------

    def _acceptable(self, token: AccessToken | None, now: float) -> bool:
        return token is not None and token.value.get_secret_value() not in self._refused and token.usable(now)

    def access_token(self, deadline: Deadline) -> AccessToken:
        """A usable token: ours, the shared one, or a new one fetched by one renewer at a time."""
        now = self._clock()
        token = self._token
        if not (self._acceptable(token, now) and token is not None and not token.due_for_renewal(now)):
            token = self._tokens.get()
        if token is not None and self._acceptable(token, now) and not token.due_for_renewal(now):
            self._token = token
            return token
        owner = uuid.uuid4().hex
        if self._leases.acquire(self._tokens.lease_name, owner, RENEW_LEASE_SECONDS):
            try:
                shared = self._tokens.get()  # a renewer may have finished just before we took the lease
                if shared is not None and self._acceptable(shared, now) and not shared.due_for_renewal(now):
                    self._token = shared
                    return shared
                fresh = self._fetch_token(deadline)
                self._tokens.put(fresh)
                self._token = fresh
                return fresh
            finally:
                self._leases.release(self._tokens.lease_name, owner)
        if token is not None and self._acceptable(token, now):
            self._token = token  # still valid: use it while the renewer works
            return token
        return self._wait_for_renewer(deadline)

    def _wait_for_renewer(self, deadline: Deadline) -> AccessToken:
        waited = 0.0
        limit = min(WAIT_FOR_RENEWER_SECONDS, deadline.remaining())
        while waited < limit:
            self._sleep(WAIT_POLL_SECONDS)
            waited += WAIT_POLL_SECONDS
            token = self._tokens.get()
            if token is not None and self._acceptable(token, self._clock()):
                self._token = token
                return token
        raise RetryLater("quipu: another worker is renewing the access token", retry_after=2)

    def _fetch_token(self, deadline: Deadline) -> AccessToken:
        requested_at = self._clock()
        self.token_requests += 1
        response = self.request(
            "POST",
            self.base_url + TOKEN_PATH,  # never under the owner prefix
            deadline=deadline,
            data={"grant_type": "client_credentials", "scope": TOKEN_SCOPE},
            headers={
                "Authorization": basic_credentials(
                    self._app_id.get_secret_value(), self._app_secret.get_secret_value()
                ),
                "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
            },
            authenticate=False,
            retry_safe=True,
        )
        try:
            document = response.json()
        except ValueError:
            raise PlatformError(
                "quipu", "token response is not JSON", status=response.status_code, retryable=True
            ) from None
        token = token_from_response(document if isinstance(document, dict) else {}, requested_at)
        logger.info("quipu access token issued", extra={"expires_in_s": round(token.lifetime)})
        return token

    # -- resources -----------------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return f"{self._prefix}{path}"

    def _send(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        document: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        expected: tuple[int, ...] = (),
    ) -> requests.Response:
        return self.request(
            method,
            self._path(path),
            deadline=deadline,
            params=params,
            json_text=None if document is None else dumps(document),
            headers={"Content-Type": MEDIA_TYPE} if document is not None else None,
            expected=expected,
        )

    @staticmethod
    def _document(response: requests.Response) -> Document:
        if not response.content:
            return Document()
        try:
            return Document.model_validate_json(response.content)
        except ValidationError:
            raise PlatformError(
                "quipu", "response is not a JSON-API document", status=response.status_code, retryable=True
            ) from None

    def _pages(self, path: str, params: Mapping[str, str], deadline: Deadline) -> Iterator[Document]:
        page = 1
        while True:
            document = self._document(self._send("GET", path, deadline, params={**params, "page[number]": str(page)}))
            yield document
            if page >= document.total_pages() or not document.resources():
                return
            page += 1

    def find_contact(self, tax_id: str, deadline: Deadline) -> str | None:
        """`GET /contacts?filter[tax_id]=...`, bare then `ES`-prefixed, every page: the contact with that tax id.

        Quipu may hold a contact either way (its own examples store `ESB85033470`), and its filter is not
        documented as forgiving either form; none for a blank tax id.
        """
        wanted = taxid.normalise(tax_id)
        if not wanted:
            return None  # a blank tax id names no supplier, not a contact Quipu holds without a tax id
        for form in taxid.variants(tax_id):
            for document in self._pages("/contacts", {"filter[tax_id]": form}, deadline):
                for contact in document.resources():
                    if taxid.normalise(str(contact.attributes.get("tax_id") or "")) == wanted:
                        return contact.id
        return None

    def create_contact(self, attributes: Mapping[str, Any], deadline: Deadline) -> str:
        """`POST /contacts` with the tax id in its canonical form; the new contact's id (201 or the 204 variant)."""
        raw_tax_id = attributes.get("tax_id")
        if isinstance(raw_tax_id, str) and taxid.normalise(raw_tax_id):
            attributes = {**attributes, "tax_id": taxid.normalise(raw_tax_id)}
        response = self._send("POST", "/contacts", deadline, {"data": {"type": "contacts", "attributes": attributes}})
        resources = self._document(response).resources()
        if resources:
            return resources[0].id
        # The reference shows a create answered 204: then the id comes from a lookup.
        found = self.find_contact(str(attributes.get("tax_id", "")), deadline)
        if found is None:
            raise PlatformError("quipu", "contact created but not found by its tax id", retryable=True)
        return found

    def _invoice(self, response: requests.Response) -> RemoteInvoice:
        document = self._document(response)
        resources = document.resources()
        if not resources:
            raise PlatformError("quipu", "invoice response without data", status=response.status_code, retryable=True)
        return remote_invoice(resources[0], document.included)

    def create_invoice(self, document: Mapping[str, Any], deadline: Deadline) -> RemoteInvoice:
        """`POST /invoices` (never retried in-call: the ledger's intent decides after an unknown outcome)."""
        return self._invoice(self._send("POST", "/invoices", deadline, document))

    def update_invoice(self, invoice_id: str, document: Mapping[str, Any], deadline: Deadline) -> RemoteInvoice:
        """`PATCH /invoices/{id}`."""
        return self._invoice(self._send("PATCH", f"/invoices/{segment(invoice_id)}", deadline, document))

    def get_invoice(self, invoice_id: str, deadline: Deadline) -> RemoteInvoice | None:
        """`GET /invoices/{id}?include=items`; None when Quipu no longer has it."""
        response = self._send(
            "GET", f"/invoices/{segment(invoice_id)}", deadline, params={"include": "items"}, expected=(404,)
        )
        return None if response.status_code == 404 else self._invoice(response)

    def delete_invoice(self, invoice_id: str, deadline: Deadline) -> None:
        """`DELETE /invoices/{id}`; an invoice already gone is fine."""
        self._send("DELETE", f"/invoices/{segment(invoice_id)}", deadline, expected=(404,))

    def find_expense_invoice(self, contact_id: str, number: str, year: int, deadline: Deadline) -> RemoteInvoice | None:
        """The supplier's expense invoice with `number` in fiscal `year` (Quipu keeps that unique)."""
        params = {
            "filter[kind]": "expenses",
            "filter[contact_id]": contact_id,
            "filter[period]": str(year),
            "include": "items",
        }
        for document in self._pages("/invoices", params, deadline):
            for resource in document.resources():
                invoice = remote_invoice(resource, document.included)
                if invoice.number == number and invoice.contact_id in (None, contact_id):
                    return invoice
        return None

    def attach(self, book_entry_id: str, filename: str, content: bytes, deadline: Deadline) -> str:
        """`POST /attachments` (multipart: `file`, `book_entry_id`); the attachment's id."""
        response = self.request(
            "POST",
            self._path("/attachments"),
            deadline=deadline,
            files={"file": (filename, content, "application/pdf")},
            data={"book_entry_id": book_entry_id},
            timeout=(3.05, 20.0),
        )
        resources = self._document(response).resources()
        if not resources:
            raise PlatformError(
                "quipu", "attachment response without data", status=response.status_code, retryable=True
            )
        return resources[0].id


def normalize_tax_id(tax_id: str) -> str:
    """Tax ids compared as Quipu may write them (`invoice_bridge.taxid.normalise`, kept for the sync's keys)."""
    return taxid.normalise(tax_id)
