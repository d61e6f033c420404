"""Sandbox FacturaDirecta, written from reference 004 (purchase orders, XML) and DESIGN.md's choices alone.

It shares no code with the product: its own XML parsing and building (lxml), its own decimal, boolean and
AAAAMMDD date reading, its own totals arithmetic. What the reference says, it enforces:

- Basic auth `{token}:x`; writes carry `Content-Type: application/xml` and every request accepts XML (the
  reference's curl lines send `Accept: application/xml`; no Accept header means anything);
- documents hold only the elements the reference shows (plus DESIGN.md's `<tags><tag/></tags>`); an unknown
  element, an attribute or a repeated single element is refused; booleans are `true` or `false`; decimals
  are plain (`1e3` is refused); dates are real AAAAMMDD dates; `provider/id` is required and must exist;
- document taxes live in `tax1`..`tax4` (name and rate); lines flag `applyTax1`..`applyTax6`, and a flag set
  for a slot the order does not define is refused; totals are computed as the reference says: line total =
  quantity * unit price at `lineTotalDecimals`, net = their sum, taxN/base = the lines with applyTaxN,
  taxN/total = base * rate / 100, gross = net + taxes;
- an update changes only the elements sent, replaces the lines whole, and merges custom attributes;
- lists page with `start` (default 0) and `limit` (default 100, at most 250) and filter as the reference lists;
- every refusal is the reference's `<xml><httpStatus/><errorCode/><errorMessage/></xml>`.

Where the reference is silent (its providers endpoints, which DESIGN.md names): `taxCode` finds every provider
whose code contains the one asked for, ignoring case, spaces and punctuation, as a search box does; the
client keeps the exact match. Line `description`, `quantity` and `unitPrice` are required;
`linePricesIncludeTaxes=true` is refused, because the reference does not say how totals are computed then.

Fault kinds (sandbox/faults.py) played here: `status_401` (a request refused after its credentials passed),
`status_404` (a read of an existing order or provider), `status_422` (a valid purchase order write refused
INVALID_INPUT_DATA, recorded with `record_refusal` under its BuildNexion id), `provider_pages` (a provider
list answered one provider at a time: the client must page with `start`). For tests: `write_delay_seconds`
delays the answer of a write after it took effect, `inject_failures` makes the next requests fail.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

import requests
from lxml import etree

from sandbox.faults import FaultPlan, FaultSettings
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from sandbox.peers import DemoCheck

PEER = "facturadirecta"
XML_MEDIA_TYPE = "application/xml"
REPLY_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
INVALID = "INVALID_INPUT_DATA"
DEFAULT_LIMIT = 100
MAX_LIMIT = 250
TAX_SLOTS = 4  # "En los atributos tax1, tax2, tax3 y tax4"
LINE_FLAGS = 6  # the reference's lines carry applyTax1..applyTax6
MAX_LINE_TOTAL_DECIMALS = 6
# The status filter's options, plus pendingToReceive, which the reference's own documents carry.
STATUSES = frozenset({"draft", "unavailable", "readyToDeliver", "delivered", "canceled", "pendingToReceive"})
DEFAULT_STATUS = "pendingToReceive"
UNKNOWN_ATTRIBUTE = "Se ha recibido un atributo personalizado que no existe en el objeto"
PROVIDER_FIELDS = (
    "legalType",
    "name",
    "tradeName",
    "taxCode",
    "address1",
    "address2",
    "city",
    "province",
    "zipcode",
    "country",
    "website",
    "timezone",
    "defaultLanguage",
)
CENT = Decimal("0.01")
READ_TIMEOUT = (3.05, 10)

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
_DATE = re.compile(r"[0-9]{8}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_NUMBER_LENGTH = 32


class InputError(Exception):
    """A request the reference says is refused: 400 INVALID_INPUT_DATA with this message."""


# -- the documents' shape ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """An element the reference shows: a value (no children) or a group of named children."""

    children: Mapping[str, Node] | None = None
    many: bool = False  # may appear more than once under its parent


LEAF = Node()


def _group(*, many: bool = False, **children: Node) -> Node:
    return Node(children, many)


PROVIDER_NODE = Node({"id": LEAF} | dict.fromkeys(PROVIDER_FIELDS, LEAF))
TAX_NODE = _group(name=LEAF, base=LEAF, rate=LEAF, total=LEAF)
LINE_NODE = Node(
    dict.fromkeys(
        (
            "id",
            "productId",
            "productCode",
            "description",
            "quantity",
            "unitPrice",
            "totalPrice",
            "lineStatus",
            *(f"applyTax{n}" for n in range(1, LINE_FLAGS + 1)),
        ),
        LEAF,
    ),
    many=True,
)
ORDER_NODE = Node(
    dict.fromkeys(
        (
            "id",
            "updateDate",
            "documentDate",
            "documentSerial",
            "documentNumber",
            "documentNumberFormatted",
            "documentStatus",
            "currency",
            "netTotal",
            "grossTotal",
            "notes",
            "linePricesIncludeTaxes",
            "hidePrices",
            "lineTotalDecimals",
        ),
        LEAF,
    )
    | {f"tax{n}": TAX_NODE for n in range(1, TAX_SLOTS + 1)}
    | {
        "owner": _group(id=LEAF, email=LEAF),
        "provider": PROVIDER_NODE,
        "documentLines": _group(documentLine=LINE_NODE),
        "customAttributes": _group(customAttribute=_group(many=True, label=LEAF, value=LEAF)),
        "tags": _group(tag=Node(many=True)),  # DESIGN.md's marker `bn:<id>`; the reference filters by tag
    }
)


def _check_shape(element: etree._Element, node: Node, path: str) -> None:
    """Refuse anything the reference does not show: unknown elements, attributes, repeats, stray text."""
    if element.attrib:
        raise InputError(f"{path}: no admite atributos ({', '.join(str(a) for a in element.attrib)})")
    if node.children is None:
        if len(element):
            raise InputError(f"{path}: se esperaba un valor, no elementos")
        return
    if (element.text or "").strip():
        raise InputError(f"{path}: texto no esperado")
    seen: set[str] = set()
    for child in element:
        tag = str(child.tag)
        spec = node.children.get(tag)
        if spec is None:
            raise InputError(f"Elemento desconocido: {path}/{tag}")
        if tag in seen and not spec.many:
            raise InputError(f"{path}/{tag} aparece más de una vez")
        seen.add(tag)
        if (child.tail or "").strip():
            raise InputError(f"{path}: texto no esperado tras {tag}")
        _check_shape(child, spec, f"{path}/{tag}")


def _parse(body: bytes, root_tag: str, node: Node) -> etree._Element:
    if not body.strip():
        raise InputError(f"Se esperaba un documento <{root_tag}> y el cuerpo está vacío")
    # No entities, no DTD, no network: a parser per call (lxml parsers are not shared across threads).
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"XML mal formado: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:
        raise InputError("No se admite DOCTYPE")
    if root.tag != root_tag:
        raise InputError(f"Se esperaba <{root_tag}> y se recibió <{root.tag!s}>")
    _check_shape(root, node, root_tag)
    return root


def _text(parent: etree._Element, tag: str) -> str | None:
    """The text of the child `tag` (CDATA joined), None when it is absent."""
    child = parent.find(tag)
    return None if child is None else "".join(str(part) for part in child.itertext())


def _decimal(text: str | None, path: str) -> Decimal:
    """A plain decimal (`-12.50`): no exponent, no spaces, no `+`, ASCII digits only."""
    if text is None or not text:
        raise InputError(f"{path} es obligatorio")
    if len(text) > _MAX_NUMBER_LENGTH or not _DECIMAL.fullmatch(text):
        raise InputError(f"{path}: número no válido: {text[:20]!r}")
    return Decimal(text)


def _boolean(text: str, path: str) -> bool:
    if text not in ("true", "false"):
        raise InputError(f"{path}: debe ser true o false: {text[:20]!r}")
    return text == "true"


def _date(text: str, path: str) -> date:
    """AAAAMMDD, a date that exists."""
    if not _DATE.fullmatch(text):
        raise InputError(f"{path}: fecha no válida (AAAAMMDD): {text[:20]!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InputError(f"{path}: fecha no válida (AAAAMMDD): {text!r}") from None


def _positive_integer(text: str, path: str) -> int:
    if not _INTEGER.fullmatch(text) or len(text) > 18 or int(text) < 1:
        raise InputError(f"{path}: número no válido: {text[:20]!r}")
    return int(text)


def _aaaammdd(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _plain(value: Decimal, min_places: int = 0) -> str:
    """`value` without exponent and with at least `min_places` decimals (money: 2)."""
    text = format(value, "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0") if len(fraction) > min_places else fraction
    fraction = fraction.ljust(min_places, "0")
    return f"{whole}.{fraction}" if fraction else whole


def _round(value: Decimal, places: int = 2) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def tax_code_key(tax_code: str) -> str:
    """A tax code as a person compares it: upper case, letters and digits only."""
    return "".join(ch for ch in tax_code.upper() if ch.isalnum())


# -- building answers ----------------------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None, *, cdata: bool = False) -> etree._Element:
    child = etree.SubElement(parent, tag)
    if text is not None:
        clean = _NOT_XML.sub("", text)
        # The reference writes free text in CDATA; a text holding `]]>` cannot be one section, so it goes escaped.
        child.text = etree.CDATA(clean) if cdata and "]]>" not in clean else clean
    return child


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def error_document(status: int, code: str, message: str) -> bytes:
    """`<xml><httpStatus/><errorCode/><errorMessage/></xml>`, as the reference shows it."""
    root = etree.Element("xml")
    _sub(root, "httpStatus", str(status))
    _sub(root, "errorCode", code)
    _sub(root, "errorMessage", message, cdata=True)
    return _serialize(root)


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, error_document(status, code, message), dict(REPLY_HEADERS))


def _fault_reply(status: int, code: str | None) -> Reply:
    return _error(status, code or "INTERNAL_ERROR", "Error interno simulado")


# -- state ---------------------------------------------------------------------------------------------


@dataclass
class StoredLine:
    """A document line as held."""

    id: str
    product_code: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    apply: frozenset[int]
    product_id: str | None = None
    line_status: str = DEFAULT_STATUS


@dataclass
class StoredOrder:
    """A purchase order as held; `taxes` maps a slot to (name, rate)."""

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
    hide_prices: bool = False

    def copy(self) -> StoredOrder:
        """A copy whose collections can change without touching this one."""
        return replace(
            self, taxes=dict(self.taxes), lines=list(self.lines), tags=list(self.tags), custom=dict(self.custom)
        )

    def line_total(self, line: StoredLine) -> Decimal:
        """quantity * unit price at `lineTotalDecimals`."""
        return _round(line.quantity * line.unit_price, self.line_total_decimals)

    def totals(self) -> tuple[Decimal, dict[int, tuple[Decimal, Decimal]], Decimal]:
        """(net, {slot: (base, total)}, gross), as the reference computes them."""
        net = sum((self.line_total(line) for line in self.lines), Decimal(0))
        taxes: dict[int, tuple[Decimal, Decimal]] = {}
        for slot, (_name, rate) in sorted(self.taxes.items()):
            base = sum((self.line_total(line) for line in self.lines if slot in line.apply), Decimal(0))
            taxes[slot] = (base, _round(base * rate / 100))
        gross = net + sum((total for _base, total in taxes.values()), Decimal(0))
        return net, taxes, gross

    @property
    def number_formatted(self) -> str:
        """Serial and number as the reference's example prints them (`0033`)."""
        return f"{self.document_serial}{self.document_number:04d}"


@dataclass
class State:
    """Everything the account holds."""

    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    orders: dict[str, StoredOrder] = field(default_factory=dict)


class PeerSettings(Protocol):
    """What `create_peer` reads of the local stack's settings."""

    @property
    def facturadirecta_api_token(self) -> str:
        """The API token."""

    @property
    def facturadirecta_account(self) -> str:
        """The account name."""

    @property
    def buildnexion_api_key(self) -> str:
        """For `demo_check`'s reads of BuildNexion."""

    def fault_settings(self) -> FaultSettings:
        """LOCAL_FAULTS, read."""


# -- the peer ------------------------------------------------------------------------------------------


class FacturaDirectaPeer:
    """FacturaDirecta's XML API on a loopback port, its data in memory."""

    def __init__(
        self,
        api_token: str,
        *,
        account: str = "sandbox",
        owner_email: str = "admin@sandbox.example",
        buildnexion_api_key: str | None = None,
        custom_attribute_labels: Sequence[str] = ("Obra", "Referencia interna"),
        write_delay_seconds: float = 0.0,
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.faults = faults or FaultPlan(peer=PEER)
        self._expected_auth = "Basic " + base64.b64encode(f"{api_token}:x".encode()).decode("ascii")
        self.account = account
        self.owner_email = owner_email
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
        self._server = LocalHttpServer(_Outer(self._serve), port=port)

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

    def add_provider(self, **fields: str) -> str:
        """A provider made in the web app (not through the API); its id."""
        unknown = set(fields) - set(PROVIDER_FIELDS)
        if unknown:
            raise ValueError(f"not provider fields: {sorted(unknown)}")
        with self._lock:
            pid = str(next(self._ids))
            self.state.providers[pid] = dict(fields)
        return pid

    def orders_tagged(self, tag: str) -> list[StoredOrder]:
        """Every order carrying `tag`."""
        with self._lock:
            return [o for o in self.state.orders.values() if tag in o.tags]

    # -- dispatch ------------------------------------------------------------------------------------

    def _serve(self, request: Request) -> Reply:
        key = f"{request.method} {request.path}"
        for prefix in ("/api/purchaseOrders/", "/api/providers/"):
            if request.path.startswith(prefix):
                key = f"{request.method} {prefix}{{id}}.xml"
        self.calls[key] += 1
        if not secrets.compare_digest((request.header("authorization") or "").encode(), self._expected_auth.encode()):
            return _error(401, "INVALID_CREDENTIALS", "Token de acceso no válido")
        if self.faults.draw("status_401"):
            return _error(401, "INVALID_CREDENTIALS", "Token de acceso no válido")
        return self.faults.apply(request, lambda: self._dispatch(request), error_reply=_fault_reply)

    def _dispatch(self, request: Request) -> Reply:
        if not _accepts_xml(request.header("accept")):
            return _error(406, "NOT_ACCEPTABLE", "Esta API solo responde application/xml")
        try:
            reply = self._router.dispatch(request)
        except _UnsupportedMedia as exc:
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type debe ser application/xml: {exc}")
        except InputError as exc:
            return _error(400, INVALID, str(exc))
        if reply.headers.get("Content-Type") == "application/json":  # the router's own 404 and 405
            if reply.status == 405:
                return _error(405, "METHOD_NOT_ALLOWED", f"Método {request.method} no permitido en {request.path}")
            return _error(404, "NOT_FOUND", f"No existe el recurso {request.path}")
        return reply

    def _document(self, request: Request, root_tag: str, node: Node) -> etree._Element:
        """The request's XML body: sent as XML (the reference's Content-Type), shaped as the reference shows."""
        media, params = _media_type(request.header("content-type"))
        if media != XML_MEDIA_TYPE:
            raise _UnsupportedMedia(request.header("content-type"))
        charset = params.get("charset", "utf-8").lower()
        if charset != "utf-8":
            raise _UnsupportedMedia(request.header("content-type"))
        return _parse(request.body, root_tag, node)

    # -- providers -----------------------------------------------------------------------------------

    def _list_providers(self, request: Request, _params: dict[str, str]) -> Reply:
        query = _Query(request, single=("start", "limit", "taxCode"))
        start, limit = query.page()
        wanted = query.one("taxCode")
        if self.faults.draw("provider_pages"):
            limit = 1
        with self._lock:
            found = [
                (pid, dict(p))
                for pid, p in sorted(self.state.providers.items(), key=lambda kv: int(kv[0]))
                if wanted is None or tax_code_key(wanted) in tax_code_key(p.get("taxCode", ""))
            ]
        root = etree.Element("providers")
        for pid, provider in found[start : start + limit]:
            self._fill_provider(etree.SubElement(root, "provider"), pid, provider)
        return Reply(200, _serialize(root), dict(REPLY_HEADERS))

    @staticmethod
    def _fill_provider(element: etree._Element, pid: str, provider: Mapping[str, str]) -> None:
        _sub(element, "id", pid, cdata=True)
        for name in PROVIDER_FIELDS:
            _sub(element, name, provider.get(name, ""), cdata=True)

    def _provider_reply(self, pid: str, provider: Mapping[str, str], status: int) -> Reply:
        root = etree.Element("provider")
        self._fill_provider(root, pid, provider)
        return Reply(status, _serialize(root), dict(REPLY_HEADERS))

    def _create_provider(self, request: Request, _params: dict[str, str]) -> Reply:
        root = self._document(request, "provider", PROVIDER_NODE)
        provider = {name: value for name in PROVIDER_FIELDS if (value := _text(root, name)) is not None}
        if not provider.get("name", "").strip():
            raise InputError("provider/name es obligatorio")
        country = provider.get("country", "")
        if country and not _COUNTRY.fullmatch(country):
            raise InputError(f"provider/country: código de país no válido: {country[:10]!r}")
        with self._lock:
            pid = str(next(self._ids))
            self.state.providers[pid] = provider
        self._delay_write()
        return self._provider_reply(pid, provider, 201)

    def _get_provider(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            provider = self.state.providers.get(params["id"])
        if provider is None or self.faults.draw("status_404"):
            return _error(404, "NOT_FOUND", f"No existe el proveedor {params['id']}")
        return self._provider_reply(params["id"], provider, 200)

    # -- purchase orders: reads ----------------------------------------------------------------------

    def _list_orders(self, request: Request, _params: dict[str, str]) -> Reply:
        query = _Query(
            request,
            single=(
                "start",
                "limit",
                "provider",
                "fromDate",
                "toDate",
                "documentNumber",
                "documentNumberFormatted",
                "tagCond",
                "sent",
                "ownerEmail",
            ),
            multiple=("status", "documentSerial", "tag"),
            unmodelled=("subject", "client"),
        )
        start, limit = query.page()
        keep = self._order_filter(query)
        with self._lock:
            selected = [o for o in sorted(self.state.orders.values(), key=lambda o: int(o.id)) if keep(o)]
            root = etree.Element("purchaseOrders")
            for order in selected[start : start + limit]:
                self._fill_order(etree.SubElement(root, "purchaseOrder"), order)
        return Reply(200, _serialize(root), dict(REPLY_HEADERS))

    def _order_filter(self, query: _Query) -> Callable[[StoredOrder], bool]:
        """The reference's filters, each read and checked before any order is looked at."""
        checks: list[Callable[[StoredOrder], bool]] = []
        provider = query.one("provider")
        if provider is not None:
            checks.append(lambda o: o.provider_id == provider)
        statuses = query.many("status")
        for status in statuses:
            if status not in STATUSES:
                raise InputError(f"status: estado no válido: {status[:30]!r}")
        if statuses:
            checks.append(lambda o: o.document_status in statuses)
        from_text, to_text = query.one("fromDate"), query.one("toDate")
        if from_text is not None:
            since = _date(from_text, "fromDate")
            checks.append(lambda o: o.document_date >= since)
        if to_text is not None:
            until = _date(to_text, "toDate")
            checks.append(lambda o: o.document_date <= until)
        serials = query.many("documentSerial")
        if serials:
            checks.append(lambda o: o.document_serial in serials)
        number_text = query.one("documentNumber")
        if number_text is not None:
            number = _positive_integer(number_text, "documentNumber")
            checks.append(lambda o: o.document_number == number)
        formatted = query.one("documentNumberFormatted")
        if formatted is not None:
            checks.append(lambda o: o.number_formatted == formatted)
        tags = query.many("tag")
        condition = query.one("tagCond") or "and"
        if condition not in ("and", "or"):
            raise InputError(f"tagCond debe ser and u or: {condition[:10]!r}")
        if tags:
            combine = all if condition == "and" else any
            checks.append(lambda o: combine(t in o.tags for t in tags))
        if query.one("sent") == "true":  # nothing is ever sent by email here; other values are ignored
            checks.append(lambda _o: False)
        owner = query.one("ownerEmail")
        if owner is not None:
            checks.append(lambda _o: owner == self.owner_email)
        return lambda order: all(check(order) for check in checks)

    def _get_order(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            order = self.state.orders.get(params["id"])
            if order is None or self.faults.draw("status_404"):
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
            return self._order_reply(order, 200)

    def _template(self, _request: Request, _params: dict[str, str]) -> Reply:
        root = etree.Element("purchaseOrder")
        _sub(etree.SubElement(root, "provider"), "id", "", cdata=True)
        for name in ("documentDate", "documentSerial", "documentNumber", "documentStatus", "currency"):
            _sub(root, name, "")
        _sub(root, "tax1")
        _sub(root, "notes", "", cdata=True)
        line = etree.SubElement(etree.SubElement(root, "documentLines"), "documentLine")
        for name in ("productCode", "description"):
            _sub(line, name, "", cdata=True)
        for name in ("quantity", "unitPrice", "applyTax1"):
            _sub(line, name, "")
        return Reply(200, _serialize(root), dict(REPLY_HEADERS))

    # -- purchase orders: writes ---------------------------------------------------------------------

    def _create_order(self, request: Request, _params: dict[str, str]) -> Reply:
        root = self._document(request, "purchaseOrder", ORDER_NODE)
        provider_id = _text(root, "provider/id")
        if root.find("provider") is None or not provider_id:
            raise InputError("El proveedor (purchaseOrder/provider/id) es obligatorio")
        now = datetime.now(UTC)
        with self._lock:
            order = StoredOrder(
                id="",
                provider_id="",
                document_date=now.date(),
                document_serial="",
                document_number=0,
                document_status=DEFAULT_STATUS,
                currency="EUR",
                notes="",
                taxes={},
                lines=[],
                tags=[],
                custom={},
                updated=now,
            )
            self._apply(order, root)
            if order.document_number == 0:
                order.document_number = 1 + max(
                    (
                        o.document_number
                        for o in self.state.orders.values()
                        if o.document_serial == order.document_serial
                    ),
                    default=0,
                )
            self._refuse_drawn(order)
            order.id = str(next(self._ids))
            order.lines = [replace(line, id=str(next(self._ids))) for line in order.lines]
            self.state.orders[order.id] = order
            reply = self._order_reply(order, 201)
        self._delay_write()
        return reply

    def _update_order(self, request: Request, params: dict[str, str]) -> Reply:
        root = self._document(request, "purchaseOrder", ORDER_NODE)
        with self._lock:
            stored = self.state.orders.get(params["id"])
            if stored is None:
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
            body_id = _text(root, "id")
            if body_id and body_id != stored.id:
                raise InputError("El id del documento no coincide con el de la URL")
            order = stored.copy()  # a refused update changes nothing
            self._apply(order, root)
            self._refuse_drawn(order)
            if root.find("documentLines") is not None:
                order.lines = [replace(line, id=str(next(self._ids))) for line in order.lines]
            order.updated = datetime.now(UTC)
            self.state.orders[order.id] = order
            reply = self._order_reply(order, 200)
        self._delay_write()
        return reply

    def _refuse_drawn(self, order: StoredOrder) -> None:
        """`status_422`: a valid write refused for good; the refusal noted under the BuildNexion id."""
        if not self.faults.draw("status_422"):
            return
        marker = next((t.removeprefix("bn:") for t in order.tags if t.startswith("bn:")), None)
        reason = "INVALID_INPUT_DATA: Datos de entrada no válidos (fallo simulado)"
        self.faults.record_refusal(marker or order.number_formatted, reason)
        raise InputError("Datos de entrada no válidos (fallo simulado)")

    def _delete_order(self, _request: Request, params: dict[str, str]) -> Reply:
        with self._lock:
            if self.state.orders.pop(params["id"], None) is None:
                return _error(404, "NOT_FOUND", f"No existe la orden de compra {params['id']}")
        root = etree.Element("xml")
        _sub(root, "httpStatus", "200")
        return Reply(200, _serialize(root), dict(REPLY_HEADERS))

    def _apply(self, order: StoredOrder, root: etree._Element) -> None:
        """Set on `order` the elements present in `root` (the reference's update semantics), checked."""
        if root.find("provider") is not None:
            provider_id = _text(root, "provider/id")
            if not provider_id:
                raise InputError("purchaseOrder/provider/id es obligatorio")
            if provider_id not in self.state.providers:
                raise InputError(f"No existe el proveedor {provider_id[:20]}")
            order.provider_id = provider_id
        text = _text(root, "documentDate")
        if text:  # empty, as in the template: not indicated
            order.document_date = _date(text, "documentDate")
        serial = _text(root, "documentSerial")
        if serial is not None:
            order.document_serial = serial
        number = _text(root, "documentNumber")
        if number:
            order.document_number = _positive_integer(number, "documentNumber")
        status = _text(root, "documentStatus")
        if status is not None:
            if status not in STATUSES:
                raise InputError(f"documentStatus: estado no válido: {status[:30]!r}")
            order.document_status = status
        currency = _text(root, "currency")
        if currency is not None:
            if not _CURRENCY.fullmatch(currency):
                raise InputError(f"currency: moneda no válida (ISO 4217): {currency[:10]!r}")
            order.currency = currency
        for computed in ("netTotal", "grossTotal"):  # computed by the platform: checked, then ignored
            value = _text(root, computed)
            if value is not None:
                _decimal(value, computed)
        for slot in range(1, TAX_SLOTS + 1):
            tax = root.find(f"tax{slot}")
            if tax is not None:
                name = _text(tax, "name")
                if not name:
                    raise InputError(f"tax{slot}/name es obligatorio")
                for computed in ("base", "total"):
                    value = _text(tax, computed)
                    if value is not None:
                        _decimal(value, f"tax{slot}/{computed}")
                order.taxes[slot] = (name, _decimal(_text(tax, "rate"), f"tax{slot}/rate"))
        notes = _text(root, "notes")
        if notes is not None:
            order.notes = notes
        includes = _text(root, "linePricesIncludeTaxes")
        if includes is not None and _boolean(includes, "linePricesIncludeTaxes"):
            raise InputError("linePricesIncludeTaxes=true: el sandbox no calcula totales con impuestos incluidos")
        hide = _text(root, "hidePrices")
        if hide is not None:
            order.hide_prices = _boolean(hide, "hidePrices")
        decimals = _text(root, "lineTotalDecimals")
        if decimals is not None:
            if not _INTEGER.fullmatch(decimals) or int(decimals) > MAX_LINE_TOTAL_DECIMALS:
                raise InputError(f"lineTotalDecimals: valor no válido: {decimals[:10]!r}")
            order.line_total_decimals = int(decimals)
        tags = root.find("tags")
        if tags is not None:
            texts = ["".join(str(p) for p in tag.itertext()) for tag in tags.findall("tag")]
            if any(not t for t in texts):
                raise InputError("tags/tag: etiqueta vacía")
            order.tags = list(dict.fromkeys(texts))
        lines = root.find("documentLines")
        if lines is not None:
            order.lines = [_line(element, n) for n, element in enumerate(lines.findall("documentLine"), start=1)]
        custom = root.find("customAttributes")
        if custom is not None:
            for attribute in custom.findall("customAttribute"):
                label = _text(attribute, "label")
                if not label:
                    raise InputError("customAttribute/label es obligatorio")
                if label not in self.custom_attribute_labels:
                    raise InputError(UNKNOWN_ATTRIBUTE)
                value = _text(attribute, "value")
                if value:
                    order.custom[label] = value
                else:
                    order.custom.pop(label, None)
        for n, line in enumerate(order.lines, start=1):
            missing = sorted(line.apply - set(order.taxes))
            if missing:
                raise InputError(f"documentLine {n}: applyTax{missing[0]} sin impuesto tax{missing[0]} en la orden")

    def _order_reply(self, order: StoredOrder, status: int) -> Reply:
        root = etree.Element("purchaseOrder")
        self._fill_order(root, order)
        return Reply(status, _serialize(root), dict(REPLY_HEADERS))

    def _fill_order(self, root: etree._Element, order: StoredOrder) -> None:
        net, taxes, gross = order.totals()
        _sub(root, "id", order.id)
        owner = etree.SubElement(root, "owner")
        _sub(owner, "id", "1")
        _sub(owner, "email", self.owner_email, cdata=True)
        stamp = order.updated.astimezone(UTC)
        _sub(root, "updateDate", stamp.strftime("%Y%m%d%H%M%S.") + f"{stamp.microsecond // 1000:03d}")
        self._fill_provider(etree.SubElement(root, "provider"), order.provider_id, self._provider(order.provider_id))
        _sub(root, "documentDate", _aaaammdd(order.document_date))
        _sub(root, "documentSerial", order.document_serial)
        _sub(root, "documentNumber", str(order.document_number))
        _sub(root, "documentNumberFormatted", order.number_formatted, cdata=True)
        _sub(root, "documentStatus", order.document_status)
        _sub(root, "currency", order.currency)
        _sub(root, "netTotal", _plain(net, 2))
        for slot, (name, rate) in sorted(order.taxes.items()):
            tax = etree.SubElement(root, f"tax{slot}")
            _sub(tax, "name", name)
            _sub(tax, "base", _plain(taxes[slot][0], 2))
            _sub(tax, "rate", _plain(rate, 2))
            _sub(tax, "total", _plain(taxes[slot][1], 2))
        _sub(root, "grossTotal", _plain(gross, 2))
        _sub(root, "notes", order.notes, cdata=True)
        _sub(root, "linePricesIncludeTaxes", "false")
        _sub(root, "hidePrices", "true" if order.hide_prices else "false")
        _sub(root, "lineTotalDecimals", str(order.line_total_decimals))
        if order.custom:
            custom = etree.SubElement(root, "customAttributes")
            for label, value in order.custom.items():
                attribute = etree.SubElement(custom, "customAttribute")
                _sub(attribute, "label", label, cdata=True)
                _sub(attribute, "value", value, cdata=True)
        if order.tags:
            tags = etree.SubElement(root, "tags")
            for tag in order.tags:
                _sub(tags, "tag", tag, cdata=True)
        lines = etree.SubElement(root, "documentLines")
        for line in order.lines:
            element = etree.SubElement(lines, "documentLine")
            _sub(element, "id", line.id)
            if line.product_id is not None:
                _sub(element, "productId", line.product_id)
            if line.product_code is not None:
                _sub(element, "productCode", line.product_code, cdata=True)
            _sub(element, "description", line.description, cdata=True)
            _sub(element, "quantity", _plain(line.quantity))
            _sub(element, "unitPrice", _plain(line.unit_price, 2))
            _sub(element, "totalPrice", _plain(order.line_total(line), 2))
            for n in range(1, LINE_FLAGS + 1):
                _sub(element, f"applyTax{n}", "true" if n in line.apply else "false")
            _sub(element, "lineStatus", line.line_status)

    def _provider(self, pid: str) -> dict[str, str]:
        with self._lock:
            return dict(self.state.providers.get(pid, {}))

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
                order = _read_json(session, f"{buildnexion.base_url}/purchase_orders/{order_id}")
                provider = (
                    _read_json(session, f"{buildnexion.base_url}/providers/{order['provider_id']}")
                    if isinstance(order, dict) and "provider_id" in order
                    else None
                )
                if not isinstance(order, dict) or not isinstance(provider, dict):
                    check.problems.append(f"{order_id}: BuildNexion did not answer the order and its provider")
                    continue
                problems = self.compare(order, provider)
                check.problems.extend(problems)
                check.synced += 0 if problems else 1
        with self._lock:
            codes = Counter(tax_code_key(p.get("taxCode", "")) for p in self.state.providers.values())
        check.problems.extend(f"provider {code} created {n} times" for code, n in codes.items() if n > 1)
        return check

    def compare(self, order: Mapping[str, Any], provider: Mapping[str, Any]) -> list[str]:
        """What differs between BuildNexion's order (its JSON, DESIGN.md) and the one held here."""
        order_id = str(order["id"])
        tagged = self.orders_tagged(f"bn:{order_id}")
        if len(tagged) != 1:
            return [f"{order_id}: {len(tagged)} purchase orders tagged bn:{order_id}"]
        held = tagged[0]
        problems = []
        fd_provider = self._provider(held.provider_id)
        if fd_provider.get("name") != provider.get("name") or tax_code_key(
            fd_provider.get("taxCode", "")
        ) != tax_code_key(str(provider.get("nif", ""))):
            problems.append(f"{order_id}: provider is {fd_provider.get('name')!r}, expected {provider.get('name')!r}")
        want = [_bn_line(line) for line in order.get("lines") or []]
        have = [
            (
                ln.product_code,
                ln.description,
                ln.quantity,
                ln.unit_price,
                tuple(held.taxes[s][1] for s in sorted(ln.apply) if s in held.taxes),
            )
            for ln in held.lines
        ]
        # Decimals compare by value: 84.5 == 84.50.
        if want != have:
            problems.append(f"{order_id}: lines differ: expected {want}, found {have}")
        expected = _bn_totals(order.get("lines") or [])
        net, taxes, gross = held.totals()
        found = (net, sum((t for _b, t in taxes.values()), Decimal(0)), gross)
        if found != expected:
            problems.append(f"{order_id}: totals {found}, expected {expected}")
        if (held.document_status == "canceled") != (order.get("status") == "canceled"):
            problems.append(f"{order_id}: status {held.document_status}, BuildNexion says {order.get('status')}")
        if held.notes != (order.get("notes") or ""):
            problems.append(f"{order_id}: notes differ")
        if held.document_date.isoformat() != order.get("date"):
            problems.append(f"{order_id}: date {held.document_date}, expected {order.get('date')}")
        return problems


class _UnsupportedMedia(Exception):
    """A write whose body is not declared as UTF-8 XML."""


class _Outer:
    """Every path of the server goes to the peer, which answers unknown ones in its own error format."""

    def __init__(self, serve: Callable[[Request], Reply]) -> None:
        self._serve = serve

    def dispatch(self, request: Request) -> Reply:
        """The peer's reply."""
        return self._serve(request)


class _Query:
    """A list's query string, read as the reference lists its parameters (others are refused)."""

    def __init__(
        self,
        request: Request,
        *,
        single: Sequence[str],
        multiple: Sequence[str] = (),
        unmodelled: Sequence[str] = (),
    ) -> None:
        self._values = request.query
        for name, values in self._values.items():
            if name in unmodelled:
                raise InputError(f"El filtro {name} no está disponible en el sandbox")
            if name not in single and name not in multiple:
                raise InputError(f"Parámetro desconocido: {name[:40]}")
            if name in single and len(values) > 1:
                raise InputError(f"El parámetro {name} aparece más de una vez")

    def one(self, name: str) -> str | None:
        """A single-valued parameter."""
        values = self._values.get(name)
        return values[0] if values else None

    def many(self, name: str) -> list[str]:
        """A parameter the reference marks `(múltiple)`."""
        return list(self._values.get(name, []))

    def page(self) -> tuple[int, int]:
        """(start, limit): start from 0, limit 1..250, by default 0 and 100."""
        start_text, limit_text = self.one("start"), self.one("limit")
        start = 0 if start_text is None else _whole(start_text, "start")
        limit = DEFAULT_LIMIT if limit_text is None else _whole(limit_text, "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"limit debe estar entre 1 y {MAX_LIMIT}")
        return start, limit


def _whole(text: str, name: str) -> int:
    if not _INTEGER.fullmatch(text) or len(text) > 9:
        raise InputError(f"{name} debe ser un número entero no negativo")
    return int(text)


def _line(element: etree._Element, n: int) -> StoredLine:
    path = f"documentLine {n}"
    description = _text(element, "description")
    if not description:
        raise InputError(f"{path}: description es obligatorio")
    product_id = _text(element, "productId")
    if product_id is not None and not _INTEGER.fullmatch(product_id):
        raise InputError(f"{path}: productId no válido: {product_id[:20]!r}")
    total = _text(element, "totalPrice")
    if total is not None:  # computed by the platform: checked, then ignored
        _decimal(total, f"{path}/totalPrice")
    status = _text(element, "lineStatus")
    if status is not None and status not in STATUSES:
        raise InputError(f"{path}: lineStatus no válido: {status[:30]!r}")
    flags = {n: _text(element, f"applyTax{n}") for n in range(1, LINE_FLAGS + 1)}
    return StoredLine(
        id="",
        product_code=_text(element, "productCode"),
        description=description,
        quantity=_decimal(_text(element, "quantity"), f"{path}/quantity"),
        unit_price=_decimal(_text(element, "unitPrice"), f"{path}/unitPrice"),
        apply=frozenset(n for n, text in flags.items() if text is not None and _boolean(text, f"{path}/applyTax{n}")),
        product_id=product_id,
        line_status=status or DEFAULT_STATUS,
    )


def _media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`type/subtype` in lower case and its parameters."""
    if header is None:
        return "", {}
    media, *rest = header.split(";")
    params = {}
    for part in rest:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _accepts_xml(header: str | None) -> bool:
    """Whether an Accept header admits application/xml (no header admits anything)."""
    if header is None or not header.strip():
        return True
    for entry in header.split(","):
        media, params = _media_type(entry)
        if media in ("*/*", "application/*", XML_MEDIA_TYPE) and params.get("q", "1").strip() not in (
            "0",
            "0.0",
            "0.00",
            "0.000",
        ):
            return True
    return False


def _read_json(session: requests.Session, url: str, tries: int = 4) -> Any:
    """A BuildNexion object, read again after a 5xx or a dropped connection (its peer may fault); None if not."""
    for _ in range(tries):
        try:
            response = session.get(url, timeout=READ_TIMEOUT)
        except requests.RequestException:
            continue
        if response.status_code >= 500:
            continue
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None
    return None


def _bn_price(line: Mapping[str, Any]) -> Decimal:
    """A BuildNexion unit price in currency units: `unit_amount_decimal` (cents, sub-cent) when given."""
    sub_cent = line.get("unit_amount_decimal")
    cents = Decimal(str(sub_cent)) if sub_cent is not None else Decimal(int(line["unit_amount"]))
    return cents / 100


def _bn_line(line: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        line.get("product_code"),
        line.get("description"),
        Decimal(str(line["quantity"])),
        _bn_price(line),
        (Decimal(str(line["vat_percent"])),),
    )


def _bn_totals(lines: Sequence[Mapping[str, Any]]) -> tuple[Decimal, Decimal, Decimal]:
    """(net, tax, gross) of BuildNexion's lines, computed as the reference says FacturaDirecta computes them."""
    net = Decimal(0)
    bases: dict[Decimal, Decimal] = {}
    for line in lines:
        total = _round(Decimal(str(line["quantity"])) * _bn_price(line))
        net += total
        rate = Decimal(str(line["vat_percent"]))
        bases[rate] = bases.get(rate, Decimal(0)) + total
    tax = sum((_round(base * rate / 100) for rate, base in bases.items()), Decimal(0))
    return net, tax, net + tax


def create_peer(settings: PeerSettings) -> FacturaDirectaPeer:
    """The sandbox FacturaDirecta the local stack starts when `FACTURADIRECTA_API_URL` is unset."""
    return FacturaDirectaPeer(
        settings.facturadirecta_api_token,
        account=settings.facturadirecta_account,
        buildnexion_api_key=settings.buildnexion_api_key,
        faults=settings.fault_settings().plan(PEER),
    )
