"""Sandbox FacturaDirecta: the purchase-orders XML API of reference 004 and DESIGN.md's providers endpoints.

Basic auth `{token}:x`; providers (`GET /api/providers.xml?taxCode=`, `POST /api/providers.xml`) and
purchase orders (list with `provider`, `status`, `tag`/`tagCond`, `limit` ≤ 250 and `start`; get; create;
update, which replaces lines whole and touches only the elements sent; delete; the template). Totals are
computed as the reference says: line total = quantity * unit price at `lineTotalDecimals`, net = sum of
line totals, taxN/base = sum of the lines with applyTaxN, taxN/total = base * rate / 100, gross = net +
taxes. Bad input answers the reference's error document with `INVALID_INPUT_DATA`.

For tests: `write_delay_seconds` delays the answer of a write after it took effect (a client timeout
then leaves the document created), and `inject_failures` makes the next requests fail with a status.
Faults (sandbox/faults.py, seeded from LOCAL_FAULTS, and the injected ones) come after the credentials.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import requests
from lxml import etree

from invoice_bridge.buildnexion.models import Provider, PurchaseOrder
from invoice_bridge.facturadirecta.mapping import expected_totals, order_tag
from invoice_bridge.facturadirecta.xml import XmlBuilder, XmlDocumentError, build_error, parse, text_of
from invoice_bridge.money import decimal_string, normalize, parse_yyyymmdd, unit_price, yyyymmdd
from sandbox.faults import FaultPlan
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck
from sandbox.settings import LocalSettings

INVALID = "INVALID_INPUT_DATA"
XML = {"Content-Type": "application/xml; charset=utf-8"}
STATUSES = {"draft", "unavailable", "readyToDeliver", "delivered", "canceled", "pendingToReceive"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 250
TAX_SLOTS = 4
LINE_FLAGS = 6
UNKNOWN_ATTRIBUTE = "Se ha recibido un atributo personalizado que no existe en el objeto"
PROVIDER_FIELDS = ("name", "tradeName", "taxCode", "address1", "address2", "city", "province", "zipcode", "country")


class InputError(Exception):
    """Bad input: answered 400 INVALID_INPUT_DATA with this message."""


@dataclass
class StoredLine:
    id: str
    product_code: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    apply: frozenset[int]


@dataclass
class StoredOrder:
    id: str
    provider_id: str
    document_date: date
    document_serial: str
    document_number: int
    document_status: str
    currency: str
    notes: str
    taxes: dict[int, tuple[str, Decimal]]
    lines: list[StoredLine]
    tags: list[str]
    custom: dict[str, str]
    updated: datetime
    line_total_decimals: int = 2

    def line_total(self, line: StoredLine) -> Decimal:
        return (line.quantity * line.unit_price).quantize(
            Decimal(1).scaleb(-self.line_total_decimals), rounding=ROUND_HALF_UP
        )

    def totals(self) -> tuple[Decimal, dict[int, tuple[Decimal, Decimal]], Decimal]:
        """(net, {slot: (base, total)}, gross), as the reference computes them."""
        net = sum((self.line_total(line) for line in self.lines), Decimal(0))
        taxes: dict[int, tuple[Decimal, Decimal]] = {}
        for slot, (_name, rate) in sorted(self.taxes.items()):
            base = sum((self.line_total(line) for line in self.lines if slot in line.apply), Decimal(0))
            total = (base * rate / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            taxes[slot] = (base, total)
        gross = net + sum((t for _b, t in taxes.values()), Decimal(0))
        return net, taxes, gross


@dataclass
class State:
    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    orders: dict[str, StoredOrder] = field(default_factory=dict)


def _money(value: Decimal) -> str:
    return decimal_string(value, min_places=2)


class FacturaDirectaPeer:
    """FacturaDirecta's XML API on a loopback port, its data in memory."""

    def __init__(
        self,
        api_token: str,
        *,
        account: str = "sandbox",
        buildnexion_api_key: str | None = None,
        custom_attribute_labels: Sequence[str] = ("Obra", "Referencia interna"),
        write_delay_seconds: float = 0.0,
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.faults = faults or FaultPlan(peer="facturadirecta")
        self._expected_auth = "Basic " + base64.b64encode(f"{api_token}:x".encode()).decode("ascii")
        self.account = account
        self._buildnexion_api_key = buildnexion_api_key
        self.custom_attribute_labels = tuple(custom_attribute_labels)
        self.write_delay_seconds = write_delay_seconds
        self.state = State()
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(101)
        self._lock = threading.RLock()
        router = Router()
        router.add("GET", "/api/providers.xml", self._list_providers)
        router.add("POST", "/api/providers.xml", self._create_provider)
        router.add("GET", "/api/providers/{id}.xml", self._get_provider)
        router.add("GET", "/api/purchaseOrders.xml", self._list_orders)
        router.add("POST", "/api/purchaseOrders.xml", self._create_order)
        router.add("PUT", "/api/purchaseOrders.xml", self._template)
        router.add("GET", "/api/purchaseOrders/{id}.xml", self._get_order)
        router.add("PUT", "/api/purchaseOrders/{id}.xml", self._update_order)
        router.add("DELETE", "/api/purchaseOrders/{id}.xml", self._delete_order)
        self._router = router
        outer = Router()
        for method in ("GET", "POST", "PUT", "DELETE"):
            outer.add(method, "/api/{rest}", self._serve)
            outer.add(method, "/api/{rest}/{id}", self._serve)
        self._server = LocalHttpServer(outer, port=port)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `FACTURADIRECTA_API_URL` takes."""
        return self._server.url

    def start(self) -> None:
        """Serve."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def inject_failures(
        self, status: int, count: int = 1, *, code: str = "INTERNAL_ERROR", method: str | None = None
    ) -> None:
        """The next `count` requests (of `method`, if given) answer `status` with the error document."""
        self.faults.fail_next(status, count, method=method, code=code)

    def add_custom_attribute(self, order_id: str, label: str, value: str) -> None:
        """Set a custom attribute as a FacturaDirecta user would in the web app."""
        with self._lock:
            self.state.orders[order_id].custom[label] = value

    def orders_tagged(self, tag: str) -> list[StoredOrder]:
        """Every order carrying `tag`."""
        with self._lock:
            return [o for o in self.state.orders.values() if tag in o.tags]

    # -- dispatch ------------------------------------------------------------------------------------

    def _serve(self, request: Request, _params: dict[str, str]) -> Reply:
        key = f"{request.method} {request.path}"
        for prefix in ("/api/purchaseOrders/", "/api/providers/"):
            if request.path.startswith(prefix) and request.path != prefix.rstrip("/") + ".xml":
                key = f"{request.method} {prefix}{{id}}.xml"
        self.calls[key] += 1
        if not secrets.compare_digest((request.header("authorization") or "").encode(), self._expected_auth.encode()):
            return _error(401, "INVALID_CREDENTIALS", "Token de acceso no válido")
        return self.faults.apply(request, lambda: self._dispatch(request), error_reply=_fault_reply)

    def _dispatch(self, request: Request) -> Reply:
        try:
            return self._router.dispatch(request)
        except InputError as exc:
            return _error(400, INVALID, str(exc))

    # -- providers -----------------------------------------------------------------------------------

    def _list_providers(self, request: Request, _params: dict[str, str]) -> Reply:
        query = request.query
        start, limit = _page(query)
        wanted = next(iter(query.get("taxCode") or []), None)
        with self._lock:
            found = [
                (pid, p)
                for pid, p in sorted(self.state.providers.items(), key=lambda kv: int(kv[0]))
                if wanted is None or _norm(p.get("taxCode", "")) == _norm(wanted)
            ]
        xml = XmlBuilder("providers")
        for pid, provider in found[start : start + limit]:
            self._provider_element(xml, xml.root, pid, provider)
        return Reply(200, xml.tobytes(), XML)

    def _provider_element(self, xml: XmlBuilder, parent: etree._Element, pid: str, provider: Mapping[str, str]) -> None:
        element = xml.element(parent, "provider")
        xml.cdata(element, "id", pid)
        for name in PROVIDER_FIELDS:
            xml.cdata(element, name, provider.get(name, ""))

    def _create_provider(self, request: Request, _params: dict[str, str]) -> Reply:
        root = _body(request, "provider")
        provider = {name: text_of(root, name) or "" for name in PROVIDER_FIELDS}
        if not provider["name"].strip():
            raise InputError("El nombre del proveedor es obligatorio")
        with self._lock:
            pid = str(next(self._ids))
            self.state.providers[pid] = provider
        self._delay_write()
        return self._provider_reply(pid, provider, 201)

    def _provider_reply(self, pid: str, provider: Mapping[str, str], status: int) -> Reply:
        xml = XmlBuilder("provider")
        xml.cdata(xml.root, "id", pid)
        for name in PROVIDER_FIELDS:
            xml.cdata(xml.root, name, provider.get(name, ""))
        return Reply(status, xml.tobytes(), XML)

    def _get_provider(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            provider = self.state.providers.get(params["id"])
        if provider is None:
            return _error(404, "NOT_FOUND", f"No existe el proveedor {params['id']}")
        return self._provider_reply(params["id"], provider, 200)

    # -- purchase orders -----------------------------------------------------------------------------

    def _list_orders(self, request: Request, _params: dict[str, str]) -> Reply:
        query = request.query
        start, limit = _page(query)
        tags = query.get("tag") or []
        cond = (query.get("tagCond") or ["and"])[0]
        if cond not in {"and", "or"}:
            raise InputError("tagCond debe ser and u or")
        statuses = set(query.get("status") or [])
        provider = next(iter(query.get("provider") or []), None)
        with self._lock:
            orders = sorted(self.state.orders.values(), key=lambda o: int(o.id))
            selected = [
                o
                for o in orders
                if (not tags or (all if cond == "and" else any)(t in o.tags for t in tags))
                and (not statuses or o.document_status in statuses)
                and (provider is None or o.provider_id == provider)
            ]
            xml = XmlBuilder("purchaseOrders")
            for order in selected[start : start + limit]:
                self._order_element(xml, xml.root, order)
        return Reply(200, xml.tobytes(), XML)

    def _get_order(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            order = self.state.orders.get(params["id"])
            if order is None:
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
            return self._order_reply(order, 200)

    def _delete_order(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            if self.state.orders.pop(params["id"], None) is None:
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
        xml = XmlBuilder("xml")
        xml.plain(xml.root, "httpStatus", "200")
        return Reply(200, xml.tobytes(), XML)

    def _template(self, _request: Request, _params: dict[str, str]) -> Reply:
        xml = XmlBuilder("purchaseOrder")
        provider = xml.element(xml.root, "provider")
        xml.cdata(provider, "id", "")
        for name in ("documentDate", "documentSerial", "documentNumber", "documentStatus", "currency"):
            xml.plain(xml.root, name, "")
        xml.cdata(xml.root, "notes", "")
        lines = xml.element(xml.element(xml.root, "documentLines"), "documentLine")
        for name in ("productCode", "description"):
            xml.cdata(lines, name, "")
        for name in ("quantity", "unitPrice", "applyTax1"):
            xml.plain(lines, name, "")
        return Reply(200, xml.tobytes(), XML)

    def _create_order(self, request: Request, _params: dict[str, str]) -> Reply:
        root = _body(request, "purchaseOrder")
        with self._lock:
            provider_id = (text_of(root, "provider/id") or "").strip()
            if not provider_id:
                raise InputError("El proveedor (purchaseOrder/provider/id) es obligatorio")
            order = StoredOrder(
                id=str(next(self._ids)),
                provider_id="",
                document_date=datetime.now(UTC).date(),
                document_serial="",
                document_number=0,
                document_status="pendingToReceive",
                currency="EUR",
                notes="",
                taxes={},
                lines=[],
                tags=[],
                custom={},
                updated=datetime.now(UTC),
            )
            self._apply(order, root, creating=True)
            self.state.orders[order.id] = order
            reply = self._order_reply(order, 201)
        self._delay_write()
        return reply

    def _update_order(self, request: Request, params: dict[str, str]) -> Reply:
        root = _body(request, "purchaseOrder")
        with self._lock:
            stored = self.state.orders.get(params["id"])
            if stored is None:
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
            body_id = (text_of(root, "id") or "").strip()
            if body_id and body_id != stored.id:
                raise InputError("El id del documento no coincide con el de la URL")
            # Validate on a copy: a refused update changes nothing.
            order = StoredOrder(
                **{
                    **stored.__dict__,
                    "taxes": dict(stored.taxes),
                    "lines": list(stored.lines),
                    "tags": list(stored.tags),
                    "custom": dict(stored.custom),
                }
            )
            self._apply(order, root, creating=False)
            order.updated = datetime.now(UTC)
            self.state.orders[order.id] = order
            reply = self._order_reply(order, 200)
        self._delay_write()
        return reply

    def _apply(self, order: StoredOrder, root: etree._Element, *, creating: bool) -> None:
        """Set the elements present in `root` on `order` (the reference's update semantics)."""
        provider_id = text_of(root, "provider/id")
        if provider_id is not None:
            if provider_id.strip() not in self.state.providers:
                raise InputError(f"No existe el proveedor {provider_id.strip()}")
            order.provider_id = provider_id.strip()
        text = text_of(root, "documentDate")
        if text is not None:
            try:
                order.document_date = parse_yyyymmdd(text.strip())
            except ValueError:
                raise InputError(f"Fecha no válida (AAAAMMDD): {text.strip()[:20]}") from None
        serial = text_of(root, "documentSerial")
        if serial is not None:
            order.document_serial = serial.strip()
        number = text_of(root, "documentNumber")
        if number is not None and number.strip():
            if not number.strip().isdigit() or int(number) < 1:
                raise InputError(f"Número de documento no válido: {number.strip()[:20]}")
            order.document_number = int(number)
        elif creating:
            order.document_number = 1 + max(
                (o.document_number for o in self.state.orders.values() if o.document_serial == order.document_serial),
                default=0,
            )
        status = text_of(root, "documentStatus")
        if status is not None:
            if status.strip() not in STATUSES:
                raise InputError(f"Estado no válido: {status.strip()[:30]}")
            order.document_status = status.strip()
        currency = text_of(root, "currency")
        if currency is not None:
            if len(currency.strip()) != 3 or not currency.strip().isalpha():
                raise InputError(f"Moneda no válida: {currency.strip()[:10]}")
            order.currency = currency.strip().upper()
        for slot in range(1, TAX_SLOTS + 1):
            tax = root.find(f"tax{slot}")
            if tax is not None:
                order.taxes[slot] = (text_of(tax, "name") or "", _decimal(tax, "rate", required=True))
        for slot in range(TAX_SLOTS + 1, LINE_FLAGS + 1):
            if root.find(f"tax{slot}") is not None:
                raise InputError(f"Solo existen los impuestos tax1 a tax{TAX_SLOTS}")
        notes = text_of(root, "notes")
        if notes is not None:
            order.notes = notes
        tags = root.find("tags")
        if tags is not None:
            order.tags = [t for t in (text_of(tag, ".") for tag in tags.findall("tag")) if t]
        lines = root.find("documentLines")
        if lines is not None:
            order.lines = [self._line(element) for element in lines.findall("documentLine")]
        custom = root.find("customAttributes")
        if custom is not None:
            for attribute in custom.findall("customAttribute"):
                label = text_of(attribute, "label") or ""
                if label not in self.custom_attribute_labels:
                    raise InputError(UNKNOWN_ATTRIBUTE)
                value = text_of(attribute, "value")
                if value is None:
                    order.custom.pop(label, None)
                else:
                    order.custom[label] = value

    def _line(self, element: etree._Element) -> StoredLine:
        description = text_of(element, "description")
        if description is None:
            raise InputError("Cada línea necesita una descripción")
        return StoredLine(
            id=str(next(self._ids)),
            product_code=text_of(element, "productCode"),
            description=description,
            quantity=_decimal(element, "quantity", required=True),
            unit_price=_decimal(element, "unitPrice", required=True),
            apply=frozenset(
                n for n in range(1, LINE_FLAGS + 1) if (text_of(element, f"applyTax{n}") or "").strip() == "true"
            ),
        )

    def _order_reply(self, order: StoredOrder, status: int) -> Reply:
        xml = XmlBuilder("purchaseOrder")
        self._fill_order(xml, xml.root, order)
        return Reply(status, xml.tobytes(), XML)

    def _order_element(self, xml: XmlBuilder, parent: etree._Element, order: StoredOrder) -> None:
        self._fill_order(xml, xml.element(parent, "purchaseOrder"), order)

    def _fill_order(self, xml: XmlBuilder, root: etree._Element, order: StoredOrder) -> None:
        net, taxes, gross = order.totals()
        xml.plain(root, "id", order.id)
        xml.plain(
            root, "updateDate", order.updated.strftime("%Y%m%d%H%M%S.") + f"{order.updated.microsecond // 1000:03d}"
        )
        self._provider_element(xml, root, order.provider_id, self.state.providers.get(order.provider_id, {}))
        xml.plain(root, "documentDate", yyyymmdd(order.document_date))
        xml.plain(root, "documentSerial", order.document_serial)
        xml.plain(root, "documentNumber", str(order.document_number))
        xml.cdata(root, "documentNumberFormatted", f"{order.document_serial}{order.document_number:04d}")
        xml.plain(root, "documentStatus", order.document_status)
        xml.plain(root, "currency", order.currency)
        xml.plain(root, "netTotal", _money(net))
        for slot, (name, rate) in sorted(order.taxes.items()):
            tax = xml.element(root, f"tax{slot}")
            xml.plain(tax, "name", name)
            xml.plain(tax, "base", _money(taxes[slot][0]))
            xml.plain(tax, "rate", _money(rate))
            xml.plain(tax, "total", _money(taxes[slot][1]))
        xml.plain(root, "grossTotal", _money(gross))
        xml.cdata(root, "notes", order.notes)
        xml.plain(root, "linePricesIncludeTaxes", "false")
        xml.plain(root, "hidePrices", "false")
        xml.plain(root, "lineTotalDecimals", str(order.line_total_decimals))
        if order.tags:
            tags = xml.element(root, "tags")
            for tag in order.tags:
                xml.cdata(tags, "tag", tag)
        if order.custom:
            custom = xml.element(root, "customAttributes")
            for label, value in order.custom.items():
                attribute = xml.element(custom, "customAttribute")
                xml.cdata(attribute, "label", label)
                xml.cdata(attribute, "value", value)
        lines = xml.element(root, "documentLines")
        for line in order.lines:
            element = xml.element(lines, "documentLine")
            xml.plain(element, "id", line.id)
            if line.product_code is not None:
                xml.cdata(element, "productCode", line.product_code)
            xml.cdata(element, "description", line.description)
            xml.plain(element, "quantity", decimal_string(line.quantity))
            xml.plain(element, "unitPrice", _money(line.unit_price))
            xml.plain(element, "totalPrice", _money(order.line_total(line)))
            for n in range(1, LINE_FLAGS + 1):
                xml.plain(element, f"applyTax{n}", "true" if n in line.apply else "false")
            xml.plain(element, "lineStatus", "pendingToReceive")

    def _delay_write(self) -> None:
        if self.write_delay_seconds > 0:
            time.sleep(self.write_delay_seconds)  # the platform being slow to answer, after the write took effect

    # -- make demo -----------------------------------------------------------------------------------

    def demo_check(self, buildnexion: Any, events: Sequence[Mapping[str, Any]]) -> DemoCheck:
        """Every purchase order of the events is here once, with BuildNexion's latest lines and totals."""
        check = DemoCheck()
        order_ids = list(dict.fromkeys(str(e["data"]["object"]["id"]) for e in events))
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self._buildnexion_api_key}"
            for order_id in order_ids:
                order = PurchaseOrder.model_validate_json(
                    session.get(f"{buildnexion.base_url}/purchase_orders/{order_id}", timeout=(3.05, 10)).content
                )
                provider = Provider.model_validate_json(
                    session.get(f"{buildnexion.base_url}/providers/{order.provider_id}", timeout=(3.05, 10)).content
                )
                problems = self.compare(order, provider)
                check.problems.extend(problems)
                check.synced += 0 if problems else 1
        with self._lock:
            codes = Counter(_norm(p.get("taxCode", "")) for p in self.state.providers.values())
        check.problems.extend(f"provider {code} created {n} times" for code, n in codes.items() if n > 1)
        return check

    def compare(self, order: PurchaseOrder, provider: Provider) -> list[str]:
        """What differs between BuildNexion's order and the one held here (empty when they agree)."""
        tagged = self.orders_tagged(order_tag(order.id))
        if len(tagged) != 1:
            return [f"{order.id}: {len(tagged)} purchase orders tagged {order_tag(order.id)}"]
        held = tagged[0]
        problems = []
        with self._lock:
            fd_provider = self.state.providers.get(held.provider_id, {})
        if fd_provider.get("name") != provider.name or _norm(fd_provider.get("taxCode", "")) != _norm(provider.nif):
            problems.append(f"{order.id}: provider is {fd_provider.get('name')!r}, expected {provider.name!r}")
        want = [
            (
                ln.product_code,
                ln.description,
                normalize(ln.quantity),
                unit_price(ln.unit_amount, ln.unit_amount_decimal),
                normalize(ln.vat_percent),
            )
            for ln in order.lines
        ]
        have = [
            (
                ln.product_code,
                ln.description,
                normalize(ln.quantity),
                ln.unit_price,
                tuple(normalize(held.taxes[s][1]) for s in sorted(ln.apply) if s in held.taxes),
            )
            for ln in held.lines
        ]
        if [(*w[:4], (w[4],)) for w in want] != have:
            problems.append(f"{order.id}: lines differ: expected {want}, found {have}")
        expected = expected_totals(order)
        net, taxes, gross = held.totals()
        tax = sum((t for _b, t in taxes.values()), Decimal(0))
        if (net, tax, gross) != (expected.net, expected.tax, expected.gross):
            problems.append(
                f"{order.id}: totals {net}/{tax}/{gross}, expected {expected.net}/{expected.tax}/{expected.gross}"
            )
        canceled = order.status == "canceled"
        if (held.document_status == "canceled") != canceled:
            problems.append(f"{order.id}: status {held.document_status}, BuildNexion says {order.status}")
        if held.notes != (order.notes or ""):
            problems.append(f"{order.id}: notes differ")
        if held.document_date != order.date:
            problems.append(f"{order.id}: date {held.document_date}, expected {order.date}")
        return problems


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, build_error(status, code, message), XML)


def _fault_reply(status: int, code: str | None) -> Reply:
    return _error(status, code or "INTERNAL_ERROR", "Error interno simulado")


def _body(request: Request, root_tag: str) -> etree._Element:
    try:
        return parse(request.body, root_tag)
    except XmlDocumentError as exc:
        raise InputError(f"XML no válido: {exc}") from None


def _decimal(parent: etree._Element, path: str, *, required: bool) -> Decimal:
    text = (text_of(parent, path) or "").strip()
    if not text and not required:
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"Número no válido en {path}: {text[:20]!r}") from None
    if not value.is_finite():
        raise InputError(f"Número no válido en {path}")
    return value


def _page(query: Mapping[str, list[str]]) -> tuple[int, int]:
    try:
        limit = int((query.get("limit") or [str(DEFAULT_LIMIT)])[0])
        start = int((query.get("start") or ["0"])[0])
    except ValueError:
        raise InputError("limit y start deben ser números enteros") from None
    if not 1 <= limit <= MAX_LIMIT or start < 0:
        raise InputError(f"limit debe estar entre 1 y {MAX_LIMIT} y start no puede ser negativo")
    return start, limit


def _norm(tax_code: str) -> str:
    return "".join(ch for ch in tax_code.upper() if ch.isalnum())


def create_peer(settings: LocalSettings) -> FacturaDirectaPeer:
    """The sandbox FacturaDirecta the local stack starts when `FACTURADIRECTA_API_URL` is unset."""
    return FacturaDirectaPeer(
        settings.facturadirecta_api_token,
        account=settings.facturadirecta_account,
        buildnexion_api_key=settings.buildnexion_api_key,
        faults=settings.fault_settings().plan("facturadirecta"),
    )
