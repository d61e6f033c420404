"""Sandbox tuimprenta.digital: batches queued → processing → completed/partial/failed, the result CSV of
DESIGN.md, idempotency keys, per-invoice validation, 60 requests a minute with X-RateLimit-* headers,
signed callbacks, cancels. Faults (sandbox/faults.py) come after the key and the rate limit: seeded ones
from LOCAL_FAULTS, and scripted ones for tests (`fail_next`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests

from invoice_bridge.money import dumps
from invoice_bridge.tuimprenta.results import HEADER
from invoice_bridge.tuimprenta.webhook import SIGNATURE_HEADER, compute_signature
from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck
from sandbox.ratelimit import SlidingWindow

if TYPE_CHECKING:
    from sandbox.buildnexion import BuildNexionPeer
    from sandbox.settings import LocalSettings

DEFAULT_PROCESSING_SECONDS = 3.0
MAX_BATCH = 1000
CALLBACK_TIMEOUT = (3.05, 10)


def _error(status: int, kind: str, message: str, code: str, field_name: str | None = None) -> Reply:
    error: dict[str, Any] = {"type": kind, "message": message, "code": code}
    if field_name:
        error["field"] = field_name
    return Reply.json(status, {"error": error})


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class IssuedInvoice:
    """An invoice the sandbox issued."""

    id: str
    series: str
    number: int
    document: dict[str, Any]
    status: str = "issued"
    cancel_reason: str | None = None
    issued_at: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, Any]:
        """`GET /invoices/{id}`."""
        return {
            "id": self.id,
            "series": self.series,
            "number": self.number,
            "issue_date": self.document.get("issue_date"),
            "customer": self.document.get("customer"),
            "items": self.document.get("items"),
            "currency": self.document.get("currency"),
            "status": self.status,
            "metadata": self.document.get("metadata") or {},
        }


@dataclass
class SandboxBatch:
    """A batch and its timeline (seconds on the peer's monotonic clock)."""

    id: str
    payload: list[dict[str, Any]]
    callback_url: str | None
    created: float
    created_at: str
    queued_until: float
    done_at: float
    status: str = "queued"
    rows: list[dict[str, str]] = field(default_factory=list)
    failed: int = 0
    callback_sent: bool = False


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
        faults: FaultPlan | None = None,
    ) -> None:
        self._api_key = api_key
        self.faults = faults or FaultPlan(peer="tuimprenta")
        self._webhook_secret = webhook_secret
        self.processing_seconds = processing_seconds
        self.send_callbacks = send_callbacks
        self._clock = clock
        self._limit = SlidingWindow(rate_limit, rate_window_seconds, header_prefix="X-RateLimit", clock=clock)
        self._lock = threading.RLock()
        self.batches: dict[str, SandboxBatch] = {}
        self.invoices: dict[str, IssuedInvoice] = {}
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}  # key → (body hash, status, answer)
        self._numbers: Counter[str] = Counter()
        # Invoice indexes (by buildnexion_id) whose row reads failed with a retryable code, once.
        self.flaky_ids: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.callbacks_sent = 0
        self._session = requests.Session()
        self._timers: list[threading.Timer] = []
        router = Router()
        router.add("POST", "/v1/batches", self._route("POST /batches", self._post_batch))
        router.add("GET", "/v1/batches/{id}", self._route("GET /batches/{id}", self._get_batch))
        router.add("GET", "/v1/batches/{id}/result.csv", self._route("GET /batches/{id}/result", self._get_result))
        router.add("GET", "/v1/batches/{id}/result", self._route("GET /batches/{id}/result", self._get_result))
        router.add("GET", "/v1/invoices/{id}", self._route("GET /invoices/{id}", self._get_invoice))
        router.add("POST", "/v1/invoices/{id}/cancel", self._route("POST /invoices/{id}/cancel", self._cancel_invoice))
        self._server = LocalHttpServer(router, port=port)

    @property
    def base_url(self) -> str:
        """What TUIMPRENTA_API_URL takes."""
        return f"{self._server.url}/v1"

    @property
    def rate_limited(self) -> int:
        """How many requests were answered 429."""
        return self._limit.rejected

    def start(self) -> None:
        """Serve."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving and drop pending callbacks."""
        for timer in self._timers:
            timer.cancel()
        self._server.stop()
        self._session.close()

    # -- what tests and the demo read ------------------------------------------------------------------

    def issued_for(self, buildnexion_id: str) -> list[IssuedInvoice]:
        """Every invoice issued for a BuildNexion sales invoice (exactly once means a list of one)."""
        with self._lock:
            return [
                i
                for i in self.invoices.values()
                if (i.document.get("metadata") or {}).get("buildnexion_id") == buildnexion_id
            ]

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
            expected = f"Bearer {self._api_key}"
            if not secrets.compare_digest((request.header("authorization") or "").encode(), expected.encode()):
                return _error(401, "authentication_error", "API key inválida", "E4010")
            allowed, headers = self._limit.hit(self._api_key)
            if not allowed:
                reply = _error(429, "rate_limit_error", "Demasiadas solicitudes", "E4290")
            else:
                reply = self.faults.apply(
                    request, lambda: handler(request, params), route=route, error_reply=_fault_reply
                )
            reply.headers.update(headers)
            return reply

        return serve

    def _post_batch(self, request: Request, _params: dict[str, str]) -> Reply:
        key = request.header("idempotency-key")
        if not key:
            return _error(422, "validation_error", "Idempotency-Key es requerido", "E1000", "Idempotency-Key")
        digest = hashlib.sha256(request.body).hexdigest()
        with self._lock:
            seen = self._idempotency.get(key)
            if seen is not None:
                if seen[0] != digest:
                    return _error(409, "idempotency_error", "Idempotency-Key usada con otro cuerpo", "E4090")
                return Reply(seen[1], seen[2], {"Content-Type": "application/json"})
        try:
            # Decimal, not float: the sandbox checks the exact digits the client sent.
            document = json.loads(request.body, parse_float=Decimal)
        except ValueError:
            return _error(422, "validation_error", "el cuerpo no es JSON", "E1001")
        if not isinstance(document, dict):
            return _error(422, "validation_error", "el cuerpo no es un objeto JSON", "E1001")
        payload = document.get("payload") if isinstance(document, dict) else None
        if document.get("type") != "invoice.create" or not isinstance(payload, list):
            return _error(422, "validation_error", "type invoice.create y payload son requeridos", "E1002", "payload")
        if not 1 <= len(payload) <= MAX_BATCH:
            return _error(422, "validation_error", f"un lote lleva de 1 a {MAX_BATCH} facturas", "E1003", "payload")
        callback = document.get("callback_url")
        now = self._clock()
        batch = SandboxBatch(
            id=f"batch_{secrets.token_hex(8)}",
            payload=[p if isinstance(p, dict) else {} for p in payload],
            callback_url=callback if isinstance(callback, str) else None,
            created=now,
            created_at=_now_iso(),
            queued_until=now + self.processing_seconds / 3,
            done_at=now + self.processing_seconds,
        )
        answer = json.dumps(self._batch_json(batch)).encode()
        with self._lock:
            self.batches[batch.id] = batch
            self._idempotency[key] = (digest, 201, answer)
        timer = threading.Timer(max(0.0, self.processing_seconds), self._finish_and_notify, args=(batch.id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return Reply(201, answer, {"Content-Type": "application/json"})

    def _advance(self, batch: SandboxBatch) -> None:
        """Move the batch along its timeline; on completion issue or refuse each invoice."""
        now = self._clock()
        if batch.status in {"completed", "partial", "failed"}:
            return
        if now < batch.queued_until:
            batch.status = "queued"
            return
        if now < batch.done_at:
            batch.status = "processing"
            return
        for index, document in enumerate(batch.payload):
            batch.rows.append(self._process(index, document))
        batch.failed = sum(1 for r in batch.rows if r["status"] == "failed")
        if batch.failed == 0:
            batch.status = "completed"
        elif batch.failed == len(batch.rows):
            batch.status = "failed"
        else:
            batch.status = "partial"

    def _process(self, index: int, document: Mapping[str, Any]) -> dict[str, str]:
        row = dict.fromkeys(HEADER, "")
        row["index"] = str(index)
        customer = document.get("customer") if isinstance(document.get("customer"), dict) else {}
        buildnexion_id = str((document.get("metadata") or {}).get("buildnexion_id", ""))
        tax_id = customer.get("tax_id") if isinstance(customer, dict) else None
        problem: tuple[str, str] | None = None
        if buildnexion_id in self.flaky_ids:
            self.flaky_ids.discard(buildnexion_id)
            problem = ("internal_error", "error interno, reintente")
        elif not isinstance(tax_id, str) or not tax_id.strip():
            problem = ("E1001", 'El campo tax_id es requerido, "customer.tax_id", revise el cliente')
        elif not document.get("items"):
            problem = ("E1004", "La factura no tiene renglones")
        elif not document.get("series"):
            problem = ("E1005", "El campo series es requerido")
        if problem:
            row.update(status="failed", error_code=problem[0], error_message=problem[1])
            return row
        series = str(document["series"])
        self._numbers[series] += 1
        invoice = IssuedInvoice(f"inv_{secrets.token_hex(8)}", series, self._numbers[series], dict(document))
        self.invoices[invoice.id] = invoice
        row.update(status="issued", invoice_id=invoice.id, series=series, number=str(invoice.number))
        return row

    def _batch_json(self, batch: SandboxBatch) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": batch.id,
            "type": "invoice.create",
            "status": batch.status,
            "counts": {
                "queued": len(batch.payload),
                "processed": len(batch.rows) - batch.failed,
                "failed": batch.failed,
            },
            "created_at": batch.created_at,
        }
        if batch.status in {"completed", "partial", "failed"}:
            document["result_url"] = f"{self.base_url}/batches/{batch.id}/result.csv"
        return document

    def _finish_and_notify(self, batch_id: str) -> None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return
            self._advance(batch)
            if batch.status not in {"completed", "partial", "failed"} or batch.callback_sent:
                return
            batch.callback_sent = True
            url = batch.callback_url
            event = {
                "id": f"evt_{secrets.token_hex(8)}",
                "type": f"batch.{batch.status}",
                "data": {"batch_id": batch.id, "status": batch.status, "counts": self._batch_json(batch)["counts"]},
                "created_at": _now_iso(),
            }
        if not (url and self.send_callbacks):
            return
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: compute_signature(self._webhook_secret, body)}
        try:
            self._session.post(url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT)
            self.callbacks_sent += 1
        except requests.RequestException:
            return  # a lost callback costs the poller latency only

    def _get_batch(self, request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            batch = self.batches.get(params["id"])
            if batch is None:
                return _error(404, "not_found", f"no existe el lote {params['id']}", "E4040")
            self._advance(batch)
            return Reply.json(200, self._batch_json(batch))

    def _get_result(self, request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            batch = self.batches.get(params["id"])
            if batch is None:
                return _error(404, "not_found", f"no existe el lote {params['id']}", "E4040")
            self._advance(batch)
            if batch.status not in {"completed", "partial", "failed"}:
                return _error(409, "conflict", "el lote no ha terminado", "E4091")
            rows = list(batch.rows)
        random.shuffle(rows)  # rows may come in any order
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(HEADER), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return Reply(200, out.getvalue().encode(), {"Content-Type": "text/csv"})

    def _get_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            invoice = self.invoices.get(params["id"])
            if invoice is None:
                return _error(404, "not_found", f"no existe la factura {params['id']}", "E4040")
            return _money_json(200, invoice.as_json())

    def _cancel_invoice(self, request: Request, params: dict[str, str]) -> Reply:
        key = request.header("idempotency-key")
        with self._lock:
            invoice = self.invoices.get(params["id"])
            if invoice is None:
                return _error(404, "not_found", f"no existe la factura {params['id']}", "E4040")
            if invoice.status == "canceled" and not key:
                return _error(409, "conflict", "la factura ya está anulada", "E4092")
            try:
                reason = request.json().get("reason")
            except (ValueError, AttributeError):
                reason = None
            invoice.status = "canceled"
            invoice.cancel_reason = str(reason or "")
            return _money_json(200, invoice.as_json())

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


def _fault_reply(status: int, _code: str | None) -> Reply:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    reply = _error(status, kind, "fallo inyectado", f"E{status}0")
    if status == 429:
        reply.headers["Retry-After"] = "1"
    return reply


def _money_json(status: int, document: Any) -> Reply:
    return Reply(status, dumps(document).encode(), {"Content-Type": "application/json"})


def _amount_problem(obj: Mapping[str, Any], invoice: IssuedInvoice) -> str | None:
    items = invoice.document.get("items") or []
    if len(items) != len(obj["lines"]):
        return f"{len(items)} items for {len(obj['lines'])} lines"
    for line, sent in zip(obj["lines"], items, strict=True):
        cents = Decimal(line.get("unit_amount_decimal") or line["unit_amount"])
        if not isinstance(sent.get("unit_price"), Decimal) or sent["unit_price"] * 100 != cents:
            return f"unit price {sent['unit_price']} for {cents} cents"
        if Decimal(str(sent.get("qty"))) != Decimal(line["quantity"]):
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
