"""FacturaDirecta XML: golden documents, CDATA edge cases, dates, several VAT rates, safe parsing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from invoice_bridge.buildnexion.models import PurchaseOrder
from invoice_bridge.facturadirecta import xml
from invoice_bridge.facturadirecta.mapping import to_document
from invoice_bridge.facturadirecta.models import (
    Line,
    LineRecord,
    PurchaseOrderDocument,
    PurchaseOrderRecord,
    Tax,
    TaxTotal,
)
from tests.conftest import load_event

GOLDEN_UPDATE = """<?xml version='1.0' encoding='UTF-8'?>
<purchaseOrder>
  <id>111</id>
  <provider>
    <id><![CDATA[386]]></id>
  </provider>
  <documentDate>20261102</documentDate>
  <documentSerial>PO-2026-</documentSerial>
  <documentNumber>7</documentNumber>
  <currency>EUR</currency>
  <tax1>
    <name>IVA</name>
    <rate>21.00</rate>
  </tax1>
  <tax2>
    <name>IVA</name>
    <rate>10.00</rate>
  </tax2>
  <notes><![CDATA[Entregar en obra, acceso por C/ Mayor]]></notes>
  <tags>
    <tag><![CDATA[bn:po_55]]></tag>
  </tags>
  <documentLines>
    <documentLine>
      <productCode><![CDATA[HA25]]></productCode>
      <description><![CDATA[Hormigón HA-25]]></description>
      <quantity>3</quantity>
      <unitPrice>84.50</unitPrice>
      <applyTax1>true</applyTax1>
      <applyTax2>false</applyTax2>
    </documentLine>
    <documentLine>
      <productCode><![CDATA[BOMBA]]></productCode>
      <description><![CDATA[Servicio de bomba]]></description>
      <quantity>1</quantity>
      <unitPrice>250.00</unitPrice>
      <applyTax1>false</applyTax1>
      <applyTax2>true</applyTax2>
    </documentLine>
  </documentLines>
</purchaseOrder>
"""

GOLDEN_CREATE_SUBCENT = """<?xml version='1.0' encoding='UTF-8'?>
<purchaseOrder>
  <provider>
    <id><![CDATA[42]]></id>
  </provider>
  <documentDate>20261104</documentDate>
  <documentSerial>PO-2026-</documentSerial>
  <documentNumber>8</documentNumber>
  <documentStatus>pendingToReceive</documentStatus>
  <currency>EUR</currency>
  <tax1>
    <name>IVA</name>
    <rate>21.00</rate>
  </tax1>
  <notes><![CDATA[]]></notes>
  <tags>
    <tag><![CDATA[bn:po_56]]></tag>
  </tags>
  <documentLines>
    <documentLine>
      <productCode><![CDATA[B500S12]]></productCode>
      <description><![CDATA[Acero B500S corrugado Ø12]]></description>
      <quantity>800</quantity>
      <unitPrice>0.9038</unitPrice>
      <applyTax1>true</applyTax1>
    </documentLine>
  </documentLines>
</purchaseOrder>
"""


def order(name: str) -> PurchaseOrder:
    return PurchaseOrder.model_validate(load_event(f"buildnexion/{name}")["data"]["object"])


def test_update_document_matches_the_golden_one_with_every_line_and_two_tax_slots() -> None:
    document = to_document(order("09_purchase_order_updated.json"), "386", document_status=None)
    assert xml.build_purchase_order(document, remote_id="111").decode("utf-8") == GOLDEN_UPDATE


def test_create_document_matches_the_golden_one_with_a_sub_cent_unit_price() -> None:
    document = to_document(order("10_purchase_order_created.json"), "42", document_status="pendingToReceive")
    assert xml.build_purchase_order(document).decode("utf-8") == GOLDEN_CREATE_SUBCENT


def document_with(text: str) -> PurchaseOrderDocument:
    return PurchaseOrderDocument(
        provider_id="1",
        document_date=date(2026, 1, 31),
        document_serial=None,
        document_number=None,
        currency="EUR",
        notes=text,
        taxes=(Tax("IVA", Decimal("21")),),
        lines=(Line(text, text, Decimal("1"), Decimal("1"), 1),),
        tags=("bn:x",),
        document_status=None,
    )


@pytest.mark.parametrize(
    "text",
    [
        "a ]]> b",
        "]]>",
        "]]>]]>",
        "x]]]]>>",
        "ends with ]]",
        "ends with ]",
        "Hormigón Muñoz & Hijos <S.L.> \"comillas\" 'simples' ñÑáéíóúü €",
        "<![CDATA[nested]]>",
        "línea 1\nlínea 2",
        "",
        "Ø12 😀",
    ],
)
def test_text_round_trips_exactly_through_cdata(text: str) -> None:
    body = xml.build_purchase_order(document_with(text))
    parsed = xml.parse_purchase_order(b"<purchaseOrder><id>1</id>" + body.split(b"<purchaseOrder>", 1)[1])
    assert parsed.notes == text
    assert parsed.lines[0].description == text
    assert parsed.lines[0].product_code == text
    # Any conforming parser reads the same text (not only ours).
    assert etree.fromstring(body).findtext("notes") == text


def test_cdata_with_the_terminator_is_split_into_adjacent_sections() -> None:
    assert xml.cdata_sections("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"


def test_characters_xml_cannot_carry_are_dropped_and_crlf_becomes_lf() -> None:
    body = xml.build_purchase_order(document_with("a\x00b\x1fc\r\nd"))
    assert etree.fromstring(body).findtext("notes") == "abc\nd"


def test_several_vat_rates_take_slots_in_order_and_each_line_its_own() -> None:
    base = order("09_purchase_order_updated.json")
    lines = [
        {"description": "a", "quantity": "1", "unit_amount": 100, "vat_percent": "21"},
        {"description": "b", "quantity": "1", "unit_amount": 100, "vat_percent": "4"},
        {"description": "c", "quantity": "1", "unit_amount": 100, "vat_percent": "10.0"},
        {"description": "d", "quantity": "1", "unit_amount": 100, "vat_percent": "21.00"},
    ]
    po = PurchaseOrder.model_validate({**base.model_dump(mode="json"), "lines": lines})
    root = etree.fromstring(xml.build_purchase_order(to_document(po, "1", document_status=None)))
    assert [root.findtext(f"tax{n}/rate") for n in (1, 2, 3)] == ["21.00", "4.00", "10.00"]
    assert root.find("tax4") is None
    flags = [[line.findtext(f"applyTax{n}") for n in (1, 2, 3)] for line in root.findall("documentLines/documentLine")]
    assert flags == [
        ["true", "false", "false"],
        ["false", "true", "false"],
        ["false", "false", "true"],
        ["true", "false", "false"],
    ]


def test_reference_get_answer_parses_with_totals_and_dates() -> None:
    body = """<?xml version="1.0" encoding="UTF-8"?>
<purchaseOrder>
 <id>111</id>
 <provider><id><![CDATA[386]]></id><name><![CDATA[Muebles Arturo, SL]]></name></provider>
 <documentDate>20150917</documentDate>
 <documentNumber>33</documentNumber>
 <documentStatus>pendingToReceive</documentStatus>
 <currency>EUR</currency>
 <netTotal>545.00</netTotal>
 <tax1><name>IVA</name><base>545.00</base><rate>21.00</rate><total>114.45</total></tax1>
 <grossTotal>659.45</grossTotal>
 <notes><![CDATA[Entregar en delegación sur]]></notes>
 <customAttributes>
  <customAttribute><label><![CDATA[Campo 1]]></label><value><![CDATA[Valor 1]]></value></customAttribute>
 </customAttributes>
 <documentLines>
  <documentLine><id>178</id><productCode><![CDATA[M3PV01]]></productCode>
   <description><![CDATA[Mesa auxiliar 3 patas serie Victoria]]></description>
   <quantity>1</quantity><unitPrice>450.00</unitPrice><totalPrice>450.00</totalPrice>
   <applyTax1>true</applyTax1><applyTax2>false</applyTax2></documentLine>
 </documentLines>
</purchaseOrder>""".encode()
    record = xml.parse_purchase_order(body)
    assert record.id == "111"
    assert record.provider_id == "386"
    assert record.document_date == date(2015, 9, 17)
    assert (record.net_total, record.tax_total, record.gross_total) == (
        Decimal("545.00"),
        Decimal("114.45"),
        Decimal("659.45"),
    )
    assert record.notes == "Entregar en delegación sur"
    assert record.custom_attributes == {"Campo 1": "Valor 1"}
    assert record.lines[0].tax_slots == (1,)


@pytest.mark.parametrize("bad", ["2026-11-02", "20261302", "2026110", "abcdefgh"])
def test_bad_dates_are_refused(bad: str) -> None:
    with pytest.raises(xml.XmlDocumentError, match="documentDate"):
        xml.parse_purchase_order(
            f"<purchaseOrder><id>1</id><documentDate>{bad}</documentDate></purchaseOrder>".encode()
        )


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(xml.XmlDocumentError, match="netTotal"):
        xml.parse_purchase_order(b"<purchaseOrder><id>1</id><netTotal>12,5</netTotal></purchaseOrder>")


def test_entities_and_doctypes_are_never_expanded() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE purchaseOrder [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<purchaseOrder><id>1</id><notes>&b;</notes></purchaseOrder>"""
    with pytest.raises(xml.XmlDocumentError, match=r"^a DOCTYPE is not accepted$"):
        xml.parse_purchase_order(bomb)
    external = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><errorMessage>&e;</errorMessage></xml>"""
    assert xml.parse_error(external) is None


def test_malformed_and_unexpected_documents_are_refused() -> None:
    with pytest.raises(xml.XmlDocumentError, match="malformed"):
        xml.parse_purchase_order(b"<purchaseOrder><id>1</id>")
    with pytest.raises(xml.XmlDocumentError, match=r"^expected <purchaseOrder>, got <provider>$"):
        xml.parse_purchase_order(b"<provider><id>1</id></provider>")
    with pytest.raises(xml.XmlDocumentError, match=r"^expected <provider\|xml>, got <order>$"):
        xml.parse(b"<order/>", "provider", "xml")
    with pytest.raises(xml.XmlDocumentError, match=r"^empty document$"):
        xml.parse_purchase_order(b"  ")


def test_error_document_round_trips() -> None:
    body = xml.build_error(400, "INVALID_INPUT_DATA", "Se ha recibido un atributo personalizado que no existe ]]> &")
    error = xml.parse_error(body)
    assert error is not None
    assert (error.http_status, error.error_code) == (400, "INVALID_INPUT_DATA")
    assert error.error_message == "Se ha recibido un atributo personalizado que no existe ]]> &"


def test_provider_document_has_the_name_exactly_and_only_documented_elements() -> None:
    from invoice_bridge.buildnexion.models import Provider
    from invoice_bridge.facturadirecta.mapping import to_provider

    provider = Provider.model_validate(
        {
            "object": "provider",
            "id": "p",
            "name": "Hormigones Muñoz, S.L. & <Hijos>",
            "nif": "B12345678",
            "email": "a@b.es",
            "phone": "1",
            "address": "C/ Mayor 1",
            "town": "Valencia",
            "zip_code": "46001",
        }
    )
    root = etree.fromstring(xml.build_provider(to_provider(provider)))
    assert [child.tag for child in root] == ["name", "taxCode", "address1", "city", "zipcode", "country"]
    assert root.findtext("name") == "Hormigones Muñoz, S.L. & <Hijos>"
    assert (
        xml.parse_providers(b"<providers><provider><id>7</id><taxCode>B1</taxCode></provider></providers>")[0].id == "7"
    )


def test_an_error_document_may_lack_its_status_and_code() -> None:
    error = xml.parse_error(b"<xml><httpStatus>n/a</httpStatus><errorMessage>x</errorMessage></xml>")
    assert error is not None
    assert (error.http_status, error.error_code, error.error_message) == (None, None, "x")
    bare = xml.parse_error(b"<xml/>")
    assert bare is not None
    assert (bare.http_status, bare.error_code, bare.error_message) == (None, None, None)


def test_a_document_that_is_not_an_error_document_is_no_error() -> None:
    assert xml.parse_error(b"<purchaseOrder><id>1</id></purchaseOrder>") is None
    assert xml.parse_error(b"<html>Bad gateway</html>") is None


def test_a_provider_answer_gives_its_id_name_and_tax_code() -> None:
    provider = xml.parse_provider(
        b"<provider><id> 12 </id><name><![CDATA[Hormigones Mu\xc3\xb1oz]]></name><taxCode>B1</taxCode></provider>"
    )
    assert (provider.id, provider.name, provider.tax_code) == ("12", "Hormigones Muñoz", "B1")


def test_a_provider_answer_without_an_id_or_of_another_kind_is_refused() -> None:
    with pytest.raises(xml.XmlDocumentError, match=r"^provider without an id$"):
        xml.parse_provider(b"<provider><name>x</name></provider>")
    with pytest.raises(xml.XmlDocumentError, match="expected <provider>"):
        xml.parse_provider(b"<purchaseOrder><id>1</id></purchaseOrder>")


def test_every_field_of_an_order_answer_is_read_and_missing_ones_have_their_defaults() -> None:
    # Given an answer with tax slots 1, 3 and 6 (2 absent), elements outside slots 1..6 and a bare line
    body = """<purchaseOrder><id> 7 </id>
     <documentSerial>PO-2026-</documentSerial><documentNumber>12</documentNumber>
     <documentStatus>canceled</documentStatus><currency>EUR</currency>
     <tax0><name>no slot</name><rate>1</rate></tax0>
     <tax1><name>IVA</name><base>100.00</base><rate>21.00</rate><total>21.00</total></tax1>
     <tax3><name>IVA reducido</name><base>10.00</base><rate>10.00</rate><total>1.00</total></tax3>
     <tax6/>
     <tax7><name>no slot</name></tax7>
     <documentLines>
      <documentLine><id>1</id><productCode>HA25</productCode><description>Hormigón</description>
       <quantity>3</quantity><unitPrice>84.50</unitPrice><totalPrice>253.50</totalPrice>
       <applyTax0>true</applyTax0><applyTax1>TRUE</applyTax1><applyTax3>true</applyTax3>
       <applyTax6> true </applyTax6><applyTax7>true</applyTax7></documentLine>
      <documentLine/>
     </documentLines></purchaseOrder>""".encode()
    # When it is read
    record = xml.parse_purchase_order(body)
    # Then every field is there, and what is missing takes its default
    assert record == PurchaseOrderRecord(
        id="7",
        provider_id=None,
        document_date=None,
        document_serial="PO-2026-",
        document_number="12",
        document_status="canceled",
        currency="EUR",
        notes=None,
        net_total=None,
        taxes=(
            TaxTotal(1, "IVA", Decimal("21.00"), Decimal("100.00"), Decimal("21.00")),
            TaxTotal(3, "IVA reducido", Decimal("10.00"), Decimal("10.00"), Decimal("1.00")),
            TaxTotal(6, "", Decimal(0), Decimal(0), Decimal(0)),
        ),
        gross_total=None,
        lines=(
            LineRecord("1", "HA25", "Hormigón", Decimal("3"), Decimal("84.50"), Decimal("253.50"), (1, 3, 6)),
            LineRecord(None, None, "", Decimal(0), Decimal(0), None, ()),
        ),
    )


def test_an_order_answer_without_an_id_is_refused() -> None:
    with pytest.raises(xml.XmlDocumentError, match=r"^purchaseOrder without an id$"):
        xml.parse_purchase_order(b"<purchaseOrder><documentNumber>1</documentNumber></purchaseOrder>")


def test_unreadable_numbers_and_dates_are_quoted_shortened_in_the_error() -> None:
    long_number = "1" * 30 + "," + "2" * 30
    with pytest.raises(xml.XmlDocumentError) as caught:
        xml.parse_purchase_order(
            f"<purchaseOrder><id>1</id><netTotal>{long_number}</netTotal></purchaseOrder>".encode()
        )
    assert str(caught.value) == f"netTotal: not a number: {long_number[:40]!r}"
    with pytest.raises(xml.XmlDocumentError) as caught:
        xml.parse_purchase_order(b"<purchaseOrder><id>1</id><grossTotal>Infinity</grossTotal></purchaseOrder>")
    assert str(caught.value) == "grossTotal: not a finite number"
    long_date = "2026-11-02T10:00:00.000000Z"
    with pytest.raises(xml.XmlDocumentError) as caught:
        xml.parse_purchase_order(
            f"<purchaseOrder><id>1</id><documentDate>{long_date}</documentDate></purchaseOrder>".encode()
        )
    assert str(caught.value) == f"documentDate: not an AAAAMMDD date: {long_date[:20]!r}"


def test_comments_and_processing_instructions_are_not_part_of_the_text() -> None:
    body = (
        b"<?xml version='1.0'?><provider><?app note?><id>4<!-- internal --></id>"
        b"<name>Hormigones<!-- hidden --> del Sur<?pi data?></name><taxCode>B12345678</taxCode></provider>"
    )
    provider = xml.parse_provider(body)
    assert (provider.id, provider.name) == ("4", "Hormigones del Sur")


def test_a_text_split_by_markup_is_read_whole() -> None:
    body = b"<provider><id>4</id><name>Hormig<b>o</b>nes del Sur</name><taxCode>B12345678</taxCode></provider>"
    assert xml.parse_provider(body).name == "Hormigones del Sur"
