"""The XML of FacturaDirecta's API (reference 004): documents built and parsed with lxml.

Building: only the elements the reference documents (plus the `tags` element DESIGN.md's tag needs),
free text in CDATA where the reference shows CDATA. A CDATA section cannot hold `]]>`, so such text is
split into adjacent sections (`]]` ends one, `>` starts the next): a parser joins them back, so text
round-trips exactly (accents, `&`, `<`, quotes, `]]>`). Characters XML 1.0 cannot carry at all (control
characters other than tab and newlines) are dropped.

Parsing: a parser that expands no entities, loads no DTD and never touches the network; a document
with a DOCTYPE is refused outright (the platform never sends one).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

from invoice_bridge.facturadirecta.models import (
    LINE_TAX_FLAGS,
    ErrorDocument,
    LineRecord,
    ProviderDocument,
    ProviderRecord,
    PurchaseOrderDocument,
    PurchaseOrderRecord,
    TaxTotal,
)
from invoice_bridge.money import decimal_string, parse_yyyymmdd, yyyymmdd

_INVALID_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmlDocumentError(ValueError):
    """A document that is not the XML we expect (malformed, a DOCTYPE, a wrong root, a bad value)."""


def safe_parser() -> etree.XMLParser:
    """No entity expansion, no DTD, no network, no huge trees."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def clean_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry; `\\r\\n` as `\\n` (what any parser reads back)."""
    return _INVALID_XML_CHARS.sub("", text.replace("\r\n", "\n"))


def cdata_sections(text: str) -> str:
    """`text` as CDATA markup; `]]>` inside it splits the section so the text survives unchanged."""
    return "<![CDATA[" + clean_text(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


class XmlBuilder:
    """An lxml tree whose CDATA texts are written as (possibly split) sections at serialisation."""

    def __init__(self, root_tag: str) -> None:
        self.root = etree.Element(root_tag)
        self._cdata: dict[str, str] = {}

    def element(self, parent: etree._Element, tag: str) -> etree._Element:
        """An empty child element."""
        return etree.SubElement(parent, tag)

    def plain(self, parent: etree._Element, tag: str, text: str) -> etree._Element:
        """A child with escaped text (numbers, dates, codes)."""
        child = etree.SubElement(parent, tag)
        child.text = clean_text(text)
        return child

    def cdata(self, parent: etree._Element, tag: str, text: str) -> etree._Element:
        """A child whose text goes out in CDATA."""
        child = etree.SubElement(parent, tag)
        marker = f"cdata{uuid.uuid4().hex}"
        self._cdata[marker] = text
        child.text = etree.CDATA(marker)
        return child

    def tobytes(self) -> bytes:
        """The document, UTF-8, with its XML declaration."""
        out = etree.tostring(self.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        for marker, text in self._cdata.items():
            out = out.replace(f"<![CDATA[{marker}]]>".encode(), cdata_sections(text).encode("utf-8"), 1)
        return bytes(out)


def amount(value: Decimal) -> str:
    """Money as the reference writes it: at least two decimals, never exponent notation."""
    return decimal_string(value, min_places=2)


def build_purchase_order(document: PurchaseOrderDocument, remote_id: str | None = None) -> bytes:
    """`<purchaseOrder>` for POST (no id) or PUT (with the id, as the reference's update example)."""
    xml = XmlBuilder("purchaseOrder")
    root = xml.root
    if remote_id is not None:
        xml.plain(root, "id", remote_id)
    provider = xml.element(root, "provider")
    xml.cdata(provider, "id", document.provider_id)
    xml.plain(root, "documentDate", yyyymmdd(document.document_date))
    if document.document_serial is not None:
        xml.plain(root, "documentSerial", document.document_serial)
    if document.document_number is not None:
        xml.plain(root, "documentNumber", str(document.document_number))
    if document.document_status is not None:
        xml.plain(root, "documentStatus", document.document_status)
    xml.plain(root, "currency", document.currency)
    for slot, tax in enumerate(document.taxes, start=1):
        element = xml.element(root, f"tax{slot}")
        xml.plain(element, "name", tax.name)
        xml.plain(element, "rate", amount(tax.rate))
    xml.cdata(root, "notes", document.notes or "")
    if document.tags:
        tags = xml.element(root, "tags")
        for tag in document.tags:
            xml.cdata(tags, "tag", tag)
    lines = xml.element(root, "documentLines")
    for line in document.lines:
        element = xml.element(lines, "documentLine")
        if line.product_code is not None:
            xml.cdata(element, "productCode", line.product_code)
        xml.cdata(element, "description", line.description)
        xml.plain(element, "quantity", decimal_string(line.quantity))
        xml.plain(element, "unitPrice", amount(line.unit_price))
        for slot in range(1, len(document.taxes) + 1):
            xml.plain(element, f"applyTax{slot}", "true" if line.tax_slot == slot else "false")
    return xml.tobytes()


def build_provider(document: ProviderDocument) -> bytes:
    """`<provider><name/><taxCode/>...</provider>` for POST /api/providers.xml."""
    xml = XmlBuilder("provider")
    xml.cdata(xml.root, "name", document.name)
    xml.cdata(xml.root, "taxCode", document.tax_code)
    for tag, value in (
        ("address1", document.address1),
        ("city", document.city),
        ("zipcode", document.zipcode),
        ("country", document.country),
    ):
        if value:
            xml.cdata(xml.root, tag, value)
    return xml.tobytes()


# -- parsing ----------------------------------------------------------------------------------------


def parse(body: bytes, *roots: str) -> etree._Element:
    """The root element of `body`, which must be one of `roots`."""
    if not body.strip():
        raise XmlDocumentError("empty document")
    try:
        tree = etree.fromstring(body, safe_parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise XmlDocumentError(f"malformed XML: {exc.msg}") from None
    if tree.docinfo.doctype:
        raise XmlDocumentError("a DOCTYPE is not accepted")
    root = tree.getroot()
    tag = str(root.tag)
    if roots and tag not in roots:
        raise XmlDocumentError(f"expected <{'|'.join(roots)}>, got <{tag}>")
    return root


def text_of(parent: etree._Element, path: str) -> str | None:
    """The text of `path` under `parent` (CDATA sections joined), None when the element is absent."""
    child = parent.find(path)
    if child is None:
        return None
    return "".join(str(part) for part in child.itertext())


def decimal_of(parent: etree._Element, path: str) -> Decimal | None:
    """A decimal element; XmlDocumentError when it is not a number."""
    text = text_of(parent, path)
    if text is None or not text.strip():
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise XmlDocumentError(f"{path}: not a number: {text[:40]!r}") from None
    if not value.is_finite():
        raise XmlDocumentError(f"{path}: not a finite number")
    return value


def date_of(parent: etree._Element, path: str) -> date | None:
    """An AAAAMMDD element."""
    text = text_of(parent, path)
    if text is None or not text.strip():
        return None
    try:
        return parse_yyyymmdd(text.strip())
    except ValueError:
        raise XmlDocumentError(f"{path}: not an AAAAMMDD date: {text[:20]!r}") from None


def _flag(parent: etree._Element, path: str) -> bool:
    return (text_of(parent, path) or "").strip().lower() == "true"


def _purchase_order(element: etree._Element) -> PurchaseOrderRecord:
    remote_id = (text_of(element, "id") or "").strip()
    if not remote_id:
        raise XmlDocumentError("purchaseOrder without an id")
    taxes = []
    for slot in range(1, LINE_TAX_FLAGS + 1):
        tax = element.find(f"tax{slot}")
        if tax is None:
            continue
        taxes.append(
            TaxTotal(
                slot=slot,
                name=text_of(tax, "name") or "",
                rate=decimal_of(tax, "rate") or Decimal(0),
                base=decimal_of(tax, "base") or Decimal(0),
                total=decimal_of(tax, "total") or Decimal(0),
            )
        )
    lines = []
    for line in element.findall("documentLines/documentLine"):
        lines.append(
            LineRecord(
                id=text_of(line, "id"),
                product_code=text_of(line, "productCode"),
                description=text_of(line, "description") or "",
                quantity=decimal_of(line, "quantity") or Decimal(0),
                unit_price=decimal_of(line, "unitPrice") or Decimal(0),
                total_price=decimal_of(line, "totalPrice"),
                tax_slots=tuple(n for n in range(1, LINE_TAX_FLAGS + 1) if _flag(line, f"applyTax{n}")),
            )
        )
    custom: dict[str, str | None] = {}
    for attribute in element.findall("customAttributes/customAttribute"):
        label = text_of(attribute, "label")
        if label is not None:
            custom[label] = text_of(attribute, "value")
    return PurchaseOrderRecord(
        id=remote_id,
        provider_id=(text_of(element, "provider/id") or "").strip() or None,
        document_date=date_of(element, "documentDate"),
        document_serial=text_of(element, "documentSerial"),
        document_number=text_of(element, "documentNumber"),
        document_status=text_of(element, "documentStatus"),
        currency=text_of(element, "currency"),
        notes=text_of(element, "notes"),
        net_total=decimal_of(element, "netTotal"),
        taxes=tuple(taxes),
        gross_total=decimal_of(element, "grossTotal"),
        lines=tuple(lines),
        tags=tuple(t for t in (text_of(tag, ".") for tag in element.findall("tags/tag")) if t is not None),
        custom_attributes=custom,
    )


def parse_purchase_order(body: bytes) -> PurchaseOrderRecord:
    """A `<purchaseOrder>` answer."""
    return _purchase_order(parse(body, "purchaseOrder"))


def parse_purchase_orders(body: bytes) -> list[PurchaseOrderRecord]:
    """A list answer: `<purchaseOrders><purchaseOrder>...</purchaseOrder>...</purchaseOrders>`."""
    root = parse(body)
    return [_purchase_order(e) for e in _items(root, "purchaseOrder")]


def _provider(element: etree._Element) -> ProviderRecord:
    remote_id = (text_of(element, "id") or "").strip()
    if not remote_id:
        raise XmlDocumentError("provider without an id")
    return ProviderRecord(id=remote_id, name=text_of(element, "name"), tax_code=text_of(element, "taxCode"))


def parse_provider(body: bytes) -> ProviderRecord:
    """A `<provider>` answer."""
    return _provider(parse(body, "provider"))


def parse_providers(body: bytes) -> list[ProviderRecord]:
    """`<providers><provider>...</provider></providers>`."""
    return [_provider(e) for e in _items(parse(body), "provider")]


def _items(root: etree._Element, tag: str) -> Iterable[etree._Element]:
    if root.tag == tag:
        return [root]
    return root.findall(tag)


def parse_error(body: bytes) -> ErrorDocument | None:
    """`<xml><httpStatus/><errorCode/><errorMessage/></xml>`, or None when the body is something else."""
    try:
        root = parse(body, "xml")
    except XmlDocumentError:
        return None
    status = (text_of(root, "httpStatus") or "").strip()
    return ErrorDocument(
        http_status=int(status) if status.isdigit() else None,
        error_code=(text_of(root, "errorCode") or "").strip() or None,
        error_message=text_of(root, "errorMessage"),
    )


def build_error(http_status: int, error_code: str | None, message: str | None) -> bytes:
    """The error document (the sandbox answers with it; tests build golden ones)."""
    xml = XmlBuilder("xml")
    xml.plain(xml.root, "httpStatus", str(http_status))
    if error_code is not None:
        xml.plain(xml.root, "errorCode", error_code)
    if message is not None:
        xml.cdata(xml.root, "errorMessage", message)
    return xml.tobytes()
