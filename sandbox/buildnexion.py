"""Sandbox BuildNexion (docs/buildnexion-contract.md), and a sender that signs webhooks as BuildNexion does."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, Field, ValidationError

from invoice_bridge.buildnexion.models import OBJECT_MODELS
from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, signature_header
from invoice_bridge.config import describe_validation_error
from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router

DEFAULT_API_KEY = "bn_test_sandbox_api_key"
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox_local_only_0000000000"  # noqa: S105 - public sandbox default
FIXTURES = Path(__file__).parent / "fixtures"
SEND_TIMEOUT = (3.05, 10)
RETRY_BACKOFF_SECONDS = 0.2
COLLECTIONS = {
    "providers": "provider",
    "invoices": "invoice",
    "purchase_orders": "purchase_order",
    "sales_invoices": "sales_invoice",
}


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


class WebhookRequest(BaseModel):
    """`POST /webhooks` body."""

    url: str = Field(pattern=r"^https?://")
    events: list[str] = Field(min_length=1)


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
        wrapped = self.faults.wrap(
            router,
            exempt=lambda request: request.path.startswith("/v1/sandbox/"),
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
        """Store objects as GET will return them; each is validated against the contract's models."""
        for obj in objects:
            kind = obj.get("object")
            model = OBJECT_MODELS.get(str(kind))
            if model is None:
                raise ValueError(f"unknown BuildNexion object kind {kind!r}")
            model.model_validate(obj)
            with self._lock:
                self._objects[(str(kind), str(obj["id"]))] = dict(obj)

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
            self.put_objects([request.json()])
        except (ValueError, ValidationError) as exc:
            return _error(400, "invalid_request", str(exc).splitlines()[0])
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
            parsed = WebhookRequest.model_validate(document)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            return _error(400, "invalid_request", message, field)
        subscription = self.subscribe(parsed.url, parsed.events)
        return Reply.json(
            200,
            {
                "id": subscription.id,
                "url": subscription.url,
                "events": list(subscription.events),
                "secret": subscription.secret,
            },
        )


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
