"""The sandbox FacturaDirecta against reference 004: each rule refused in the reference's error format.

Every request goes over HTTP to the peer on loopback, as the product's client would send it; the answers
are read with lxml here, not with the product's XML module.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from lxml import etree

from sandbox.facturadirecta import FacturaDirectaPeer, create_peer
from sandbox.faults import FaultPlan, FaultSettings
from sandbox.settings import LocalSettings

TOKEN = "03334b0a261a2c355ae2db022a963d8e"
XML = "application/xml"

# The reference's POST example (its provider id replaced by the one the test made).
ORDER = """<?xml version="1.0" encoding="UTF-8"?>
<purchaseOrder>
 <provider>
  <id><![CDATA[{provider}]]></id>
 </provider>
 <documentStatus>pendingToReceive</documentStatus>
 <currency>EUR</currency>
 <tax1>
  <name>IVA</name>
  <rate>21.00</rate>
 </tax1>
 <notes><![CDATA[Entregar en la delegación Sur]]></notes>
 <documentLines>
  <documentLine>
   <productId>911</productId>
   <productCode><![CDATA[M3PV01]]></productCode>
   <description><![CDATA[Mesa auxiliar 3 patas serie Victoria]]></description>
   <quantity>1</quantity>
   <unitPrice>450.00</unitPrice>
   <applyTax1>true</applyTax1>
   <lineStatus>pendingToReceive</lineStatus>
  </documentLine>
  <documentLine>
   <productId>1006</productId>
   <productCode><![CDATA[S89K09]]></productCode>
   <description><![CDATA[Silla marfil]]></description>
   <quantity>3</quantity>
   <unitPrice>95.00</unitPrice>
   <applyTax1>true</applyTax1>
   <lineStatus>pendingToReceive</lineStatus>
  </documentLine>
 </documentLines>
</purchaseOrder>
"""


class Api:
    """Requests to the peer as the reference's curl lines make them (Basic token:x, XML both ways)."""

    def __init__(self, peer: FacturaDirectaPeer) -> None:
        self.peer = peer
        self.session = requests.Session()
        self.session.auth = (TOKEN, "x")

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> requests.Response:
        sent = {"Accept": XML}
        if body is not None:
            sent["Content-Type"] = XML
        sent.update(headers or {})
        data = body.encode() if isinstance(body, str) else body
        return self.session.request(
            method, self.peer.base_url + path, data=data, headers=sent, params=params, timeout=(2, 10)
        )

    def provider(self, name: str = "Muebles Arturo, SL", tax_code: str = "B44441111") -> str:
        body = f"<provider><name><![CDATA[{name}]]></name><taxCode>{tax_code}</taxCode><country>ES</country></provider>"
        answer = self.call("POST", "/api/providers.xml", body)
        assert answer.status_code == 201, answer.text
        return text(root_of(answer), "id")

    def order_body(self, change: Callable[[etree._Element], object] | None = None, provider: str = "") -> bytes:
        root = etree.fromstring(ORDER.format(provider=provider or self.provider()).encode())
        if change is not None:
            change(root)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    def create(self, change: Callable[[etree._Element], object] | None = None, provider: str = "") -> etree._Element:
        answer = self.call("POST", "/api/purchaseOrders.xml", self.order_body(change, provider))
        assert answer.status_code == 201, answer.text
        return root_of(answer)


@pytest.fixture
def peer() -> Iterator[FacturaDirectaPeer]:
    running = FacturaDirectaPeer(TOKEN, custom_attribute_labels=("Campo 1", "Campo 2"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(peer: FacturaDirectaPeer) -> Iterator[Api]:
    client = Api(peer)
    try:
        yield client
    finally:
        client.session.close()


def root_of(response: requests.Response) -> etree._Element:
    assert response.headers["Content-Type"].startswith(XML)
    return etree.fromstring(response.content)


def text(parent: etree._Element, path: str) -> str:
    found = parent.find(path)
    assert found is not None, f"no {path} in {etree.tostring(parent)!r}"
    return "".join(found.itertext())


def refused(response: requests.Response, status: int, code: str = "INVALID_INPUT_DATA", says: str = "") -> str:
    """The reference's error document: `<xml>` with httpStatus, errorCode and errorMessage, and nothing else."""
    assert response.status_code == status, response.text
    root = root_of(response)
    assert root.tag == "xml"
    assert [child.tag for child in root] == ["httpStatus", "errorCode", "errorMessage"]
    assert (text(root, "httpStatus"), text(root, "errorCode")) == (str(status), code)
    message = text(root, "errorMessage")
    assert says in message
    return message


def set_text(path: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        element = root.find(path)
        assert element is not None
        element.text = value

    return change


def remove(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        element = root.find(path)
        assert element is not None
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)

    return change


def add(path: str, tag: str, value: str | None = None) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        parent = root if path == "." else root.find(path)
        assert parent is not None
        child = etree.SubElement(parent, tag)
        child.text = value

    return change


# -- what the reference's examples say it answers ---------------------------------------------------------


def test_the_reference_create_example_is_accepted_with_its_totals_computed(api: Api) -> None:
    order = api.create()
    # 1 x 450.00 + 3 x 95.00 = 735.00; IVA 21 on both lines: 154.35
    assert (text(order, "netTotal"), text(order, "tax1/base"), text(order, "tax1/rate")) == (
        "735.00",
        "735.00",
        "21.00",
    )
    assert (text(order, "tax1/total"), text(order, "grossTotal")) == ("154.35", "889.35")
    assert [text(line, "totalPrice") for line in order.iterfind("documentLines/documentLine")] == ["450.00", "285.00"]
    assert text(order, "documentNumber") == "1"  # the next number of the (empty) series
    assert len(text(order, "documentDate")) == 8


def test_the_reference_update_example_replaces_the_lines_and_gives_the_reference_totals(api: Api) -> None:
    order = api.create()
    order_id = text(order, "id")
    # The reference's PUT example: both lines at quantity 1 (its GET example shows the result: 545.00, 659.45)
    body = api.order_body(set_text("documentLines/documentLine[2]/quantity", "1"))
    updated = root_of(api.call("PUT", f"/api/purchaseOrders/{order_id}.xml", body))
    assert (text(updated, "netTotal"), text(updated, "tax1/total"), text(updated, "grossTotal")) == (
        "545.00",
        "114.45",
        "659.45",
    )
    only_one = api.order_body(remove("documentLines/documentLine[2]"))
    after = root_of(api.call("PUT", f"/api/purchaseOrders/{order_id}.xml", only_one))
    assert [text(line, "description") for line in after.iterfind("documentLines/documentLine")] == [
        "Mesa auxiliar 3 patas serie Victoria"
    ]
    assert text(after, "grossTotal") == "544.50"


def test_an_update_touches_only_the_elements_it_sends(api: Api) -> None:
    order = api.create(add(".", "documentSerial", "PO-"))
    order_id = text(order, "id")
    answer = api.call(
        "PUT", f"/api/purchaseOrders/{order_id}.xml", "<purchaseOrder><notes>Otra</notes></purchaseOrder>"
    )
    after = root_of(answer)
    assert answer.status_code == 200
    assert text(after, "notes") == "Otra"
    assert (text(after, "documentSerial"), text(after, "documentNumberFormatted")) == ("PO-", "PO-0001")
    assert [text(line, "quantity") for line in after.iterfind("documentLines/documentLine")] == ["1", "3"]


def test_custom_attributes_merge_as_the_reference_describes(api: Api, peer: FacturaDirectaPeer) -> None:
    order_id = text(api.create(), "id")
    peer.add_custom_attribute(order_id, "Campo 1", "Valor 1")
    peer.add_custom_attribute(order_id, "Campo 2", "Valor 2")
    path = f"/api/purchaseOrders/{order_id}.xml"
    one = "<customAttribute><label>Campo 1</label><value>Valor 1b</value></customAttribute>"
    answer = api.call("PUT", path, f"<purchaseOrder><customAttributes>{one}</customAttributes></purchaseOrder>")
    assert answer.status_code == 200
    assert peer.state.orders[order_id].custom == {"Campo 1": "Valor 1b", "Campo 2": "Valor 2"}
    drop = "<customAttribute><label>Campo 2</label></customAttribute>"
    api.call("PUT", path, f"<purchaseOrder><customAttributes>{drop}</customAttributes></purchaseOrder>")
    assert peer.state.orders[order_id].custom == {"Campo 1": "Valor 1b"}
    unknown = "<customAttribute><label>Campo 3</label><value>x</value></customAttribute>"
    message = refused(
        api.call("PUT", path, f"<purchaseOrder><customAttributes>{unknown}</customAttributes></purchaseOrder>"), 400
    )
    assert message == "Se ha recibido un atributo personalizado que no existe en el objeto"


def test_delete_answers_the_status_document_and_the_order_is_gone(api: Api) -> None:
    order_id = text(api.create(), "id")
    answer = api.call("DELETE", f"/api/purchaseOrders/{order_id}.xml", headers={"Accept": "*/*"})
    assert answer.status_code == 200
    assert [(e.tag, e.text) for e in root_of(answer)] == [("httpStatus", "200")]
    refused(api.call("GET", f"/api/purchaseOrders/{order_id}.xml"), 404, "NOT_FOUND")


def test_put_on_the_collection_answers_the_template(api: Api) -> None:
    template = root_of(api.call("PUT", "/api/purchaseOrders.xml", headers={"Content-Type": XML}))
    assert template.tag == "purchaseOrder"
    assert template.find("provider/id") is not None
    assert template.find("documentLines/documentLine/applyTax1") is not None


# -- credentials and media types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"otro-token:x").decode(),
        "Basic " + base64.b64encode(f"{TOKEN}:y".encode()).decode(),
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),
        f"Bearer {TOKEN}",
    ],
)
def test_anything_but_basic_token_x_is_refused_401(peer: FacturaDirectaPeer, authorization: str | None) -> None:
    headers = {"Accept": XML} | ({"Authorization": authorization} if authorization else {})
    answer = requests.get(f"{peer.base_url}/api/purchaseOrders.xml", headers=headers, timeout=5)
    refused(answer, 401, "INVALID_CREDENTIALS")


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "application/xml; charset=iso-8859-1"]
)
def test_a_write_not_declared_as_utf_8_xml_is_refused_415(api: Api, content_type: str | None) -> None:
    body = api.order_body()
    headers = {"Content-Type": content_type} if content_type else {}
    session = requests.Session()
    session.auth = (TOKEN, "x")
    request = requests.Request("POST", api.peer.base_url + "/api/purchaseOrders.xml", data=body, headers=headers)
    prepared = session.prepare_request(request)
    if content_type is None:
        prepared.headers.pop("Content-Type", None)
    refused(session.send(prepared, timeout=5), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert api.peer.state.orders == {}


@pytest.mark.parametrize("content_type", ["application/xml", "application/xml; charset=utf-8", "Application/XML"])
def test_xml_writes_are_accepted_with_or_without_the_utf_8_charset(api: Api, content_type: str) -> None:
    answer = api.call("POST", "/api/purchaseOrders.xml", api.order_body(), headers={"Content-Type": content_type})
    assert answer.status_code == 201


@pytest.mark.parametrize("accept", ["application/json", "text/html", "application/xml;q=0"])
def test_a_request_that_does_not_accept_xml_is_refused_406(api: Api, accept: str) -> None:
    refused(api.call("GET", "/api/purchaseOrders.xml", headers={"Accept": accept}), 406, "NOT_ACCEPTABLE")
    refused(api.call("POST", "/api/providers.xml", "<provider/>", headers={"Accept": accept}), 406, "NOT_ACCEPTABLE")


@pytest.mark.parametrize("accept", ["application/xml", "*/*", "application/*", "text/html, application/xml;q=0.5"])
def test_reads_accepting_xml_are_answered(api: Api, accept: str) -> None:
    assert api.call("GET", "/api/purchaseOrders.xml", headers={"Accept": accept}).status_code == 200


def test_a_path_the_api_does_not_have_is_a_404_in_the_error_format(api: Api) -> None:
    refused(api.call("GET", "/api/invoices.xml"), 404, "NOT_FOUND")
    refused(api.call("POST", "/api/purchaseOrders/5.pdf", "<x/>"), 404, "NOT_FOUND")
    refused(api.call("PATCH", "/api/purchaseOrders.xml", "<purchaseOrder/>"), 405, "METHOD_NOT_ALLOWED")


# -- the document's shape --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "vac"),
        (b"<purchaseOrder><notes>x</purchaseOrder>", "mal formado"),
        (b"<purchaseOrders/>", "Se esperaba <purchaseOrder>"),
    ],
)
def test_a_body_that_is_not_a_purchase_order_document_is_refused(api: Api, body: bytes, says: str) -> None:
    refused(api.call("POST", "/api/purchaseOrders.xml", body), 400, says=says)


def test_a_document_with_a_doctype_is_refused_even_when_otherwise_valid(api: Api) -> None:
    body = api.order_body().replace(b"<purchaseOrder>", b'<!DOCTYPE purchaseOrder [<!ENTITY e "x">]><purchaseOrder>', 1)
    refused(api.call("POST", "/api/purchaseOrders.xml", body), 400, says="DOCTYPE")
    assert api.peer.state.orders == {}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (add(".", "subject", "Pedido"), "Elemento desconocido: purchaseOrder/subject"),
        (add(".", "tax5"), "Elemento desconocido: purchaseOrder/tax5"),
        (add("documentLines/documentLine", "discount", "5"), "purchaseOrder/documentLines/documentLine/discount"),
        (add("tax1", "code", "IVA21"), "purchaseOrder/tax1/code"),
        (add("provider", "nif", "B1"), "purchaseOrder/provider/nif"),
        (add(".", "currency", "USD"), "currency aparece más de una vez"),
        (add("documentLines/documentLine", "quantity", "2"), "quantity aparece más de una vez"),
        (lambda root: root.find("currency").set("code", "x"), "no admite atributos"),
        (add("notes", "b", "negrita"), "se esperaba un valor"),
        (lambda root: setattr(root.find("tax1"), "text", "IVA"), "texto no esperado"),
    ],
)
def test_elements_the_reference_does_not_show_are_refused_not_ignored(
    api: Api, change: Callable[[etree._Element], object], says: str
) -> None:
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says=says)
    assert api.peer.state.orders == {}


# -- typed values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["TRUE", "True", "1", "yes", "", " true", "false "])
def test_booleans_are_true_or_false_only(api: Api, value: str) -> None:
    change = set_text("documentLines/documentLine/applyTax1", value)
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says="true o false")


def test_false_flags_leave_a_line_untaxed(api: Api) -> None:
    order = api.create(set_text("documentLines/documentLine[2]/applyTax1", "false"))
    assert (text(order, "tax1/base"), text(order, "grossTotal")) == ("450.00", "829.50")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("documentLines/documentLine/quantity", "1e3"),
        ("documentLines/documentLine/quantity", "1E3"),
        ("documentLines/documentLine/quantity", "1,5"),
        ("documentLines/documentLine/quantity", "+1"),
        ("documentLines/documentLine/quantity", " 1"),
        ("documentLines/documentLine/quantity", "1."),
        ("documentLines/documentLine/quantity", ".5"),
        ("documentLines/documentLine/quantity", "NaN"),
        ("documentLines/documentLine/quantity", "Infinity"),
        ("documentLines/documentLine/quantity", "\u0661"),  # an Arabic-Indic digit one
        ("documentLines/documentLine/unitPrice", "4.5e2"),
        ("documentLines/documentLine/unitPrice", "450,00"),
        ("documentLines/documentLine/totalPrice", "4.5E2"),
        ("tax1/rate", "2.1e1"),
        ("tax1/rate", ""),
    ],
)
def test_decimals_are_plain_numbers(api: Api, path: str, value: str) -> None:
    def change(root: etree._Element) -> None:
        if root.find(path) is None:
            add(path.rsplit("/", 1)[0], path.rsplit("/", 1)[1])(root)
        set_text(path, value)(root)

    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says="")


def test_negative_rates_as_the_reference_allows_irpf(api: Api) -> None:
    def irpf(root: etree._Element) -> None:
        tax2 = etree.SubElement(root, "tax2")
        etree.SubElement(tax2, "name").text = "IRPF"
        etree.SubElement(tax2, "rate").text = "-15"
        for line in root.iterfind("documentLines/documentLine"):
            etree.SubElement(line, "applyTax2").text = "true"

    order = api.create(irpf)
    assert (text(order, "tax2/rate"), text(order, "tax2/total"), text(order, "grossTotal")) == (
        "-15.00",
        "-110.25",
        "779.10",
    )


@pytest.mark.parametrize("value", ["2026-11-02", "20260230", "2026110", "202611021", "2026 1102", "20261302"])
def test_dates_are_real_aaaammdd_dates(api: Api, value: str) -> None:
    change = add(".", "documentDate", value)
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says="AAAAMMDD")


def test_a_date_given_is_kept_and_a_leap_day_is_a_date(api: Api) -> None:
    assert text(api.create(add(".", "documentDate", "20280229")), "documentDate") == "20280229"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (set_text("currency", "eur"), "currency"),
        (set_text("currency", "EURO"), "currency"),
        (set_text("documentStatus", "open"), "documentStatus"),
        (set_text("documentLines/documentLine/lineStatus", "received"), "lineStatus"),
        (add(".", "documentNumber", "0"), "documentNumber"),
        (add(".", "documentNumber", "7a"), "documentNumber"),
        (add(".", "lineTotalDecimals", "two"), "lineTotalDecimals"),
        (add(".", "linePricesIncludeTaxes", "true"), "linePricesIncludeTaxes"),
        (add(".", "hidePrices", "no"), "hidePrices"),
        (set_text("documentLines/documentLine/productId", "M3"), "productId"),
    ],
)
def test_enumerations_and_codes_are_checked(api: Api, change: Callable[[etree._Element], object], says: str) -> None:
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says=says)


# -- required fields and tax slots ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (remove("provider"), "provider/id"),
        (set_text("provider/id", ""), "provider/id"),
        (set_text("provider/id", "999"), "No existe el proveedor 999"),
        (remove("documentLines/documentLine/description"), "description"),
        (remove("documentLines/documentLine/quantity"), "quantity"),
        (remove("documentLines/documentLine/unitPrice"), "unitPrice"),
        (remove("tax1/rate"), "tax1/rate"),
        (remove("tax1/name"), "tax1/name"),
        (add("tags", "tag", ""), "etiqueta"),
    ],
)
def test_required_fields_are_required(api: Api, change: Callable[[etree._Element], object], says: str) -> None:
    def with_tags(root: etree._Element) -> None:
        etree.SubElement(root, "tags")
        change(root)

    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(with_tags)), 400, says=says)


@pytest.mark.parametrize("flag", ["applyTax2", "applyTax5", "applyTax6"])
def test_a_line_applying_a_tax_the_order_does_not_define_is_refused(api: Api, flag: str) -> None:
    change = add("documentLines/documentLine", flag, "true")
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(change)), 400, says=flag)


def test_each_slot_taxes_only_its_own_lines(api: Api) -> None:
    def two_rates(root: etree._Element) -> None:
        tax2 = etree.SubElement(root, "tax2")
        etree.SubElement(tax2, "name").text = "IVA"
        etree.SubElement(tax2, "rate").text = "10.00"
        set_text("documentLines/documentLine[2]/applyTax1", "false")(root)
        second = root.find("documentLines/documentLine[2]")
        assert second is not None
        etree.SubElement(second, "applyTax2").text = "true"

    order = api.create(two_rates)
    assert (text(order, "tax1/base"), text(order, "tax1/total")) == ("450.00", "94.50")
    assert (text(order, "tax2/base"), text(order, "tax2/total")) == ("285.00", "28.50")
    assert text(order, "grossTotal") == "858.00"


def test_a_refused_update_changes_nothing(api: Api, peer: FacturaDirectaPeer) -> None:
    order_id = text(api.create(), "id")
    before = peer.state.orders[order_id]
    body = api.order_body(set_text("documentLines/documentLine/quantity", "1e3"))
    refused(api.call("PUT", f"/api/purchaseOrders/{order_id}.xml", body), 400)
    assert peer.state.orders[order_id] == before


def test_an_update_whose_id_is_another_order_is_refused(api: Api) -> None:
    order_id = text(api.create(), "id")
    body = api.order_body(add(".", "id", "1"))
    refused(api.call("PUT", f"/api/purchaseOrders/{order_id}.xml", body), 400, says="id")
    refused(api.call("PUT", "/api/purchaseOrders/424242.xml", api.order_body()), 404, "NOT_FOUND")


def test_line_total_decimals_rounds_each_line(api: Api) -> None:
    def three_places(root: etree._Element) -> None:
        etree.SubElement(root, "lineTotalDecimals").text = "0"
        set_text("documentLines/documentLine/unitPrice", "450.40")(root)

    order = api.create(three_places)
    assert [text(line, "totalPrice") for line in order.iterfind("documentLines/documentLine")] == ["450.00", "285.00"]


# -- lists, filters and pages ----------------------------------------------------------------------------


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [text(order, "id") for order in root_of(response).iterfind("purchaseOrder")]


def test_lists_answer_100_by_default_up_to_250_from_start(api: Api, peer: FacturaDirectaPeer) -> None:
    # One order made over HTTP, 259 more held as the account's history (260 POSTs would take most of a minute)
    first = peer.state.orders[text(api.create(), "id")]
    made = [first.id] + [str(9000 + n) for n in range(259)]
    for order_id in made[1:]:
        peer.state.orders[order_id] = dataclasses.replace(first.copy(), id=order_id)
    assert ids(api.call("GET", "/api/purchaseOrders.xml")) == made[:100]
    assert ids(api.call("GET", "/api/purchaseOrders.xml", params={"limit": 250})) == made[:250]
    assert ids(api.call("GET", "/api/purchaseOrders.xml", params={"start": 250, "limit": 250})) == made[250:]
    assert ids(api.call("GET", "/api/purchaseOrders.xml", params={"start": 3, "limit": 2})) == made[3:5]
    assert ids(api.call("GET", "/api/purchaseOrders.xml", params={"start": 260})) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "251"},
        {"limit": "0"},
        {"limit": "-1"},
        {"start": "-1"},
        {"start": "a"},
        {"limit": "1e2"},
        {"limit": ["10", "20"]},
        {"status": "open"},
        {"fromDate": "2026-11-01"},
        {"toDate": "20261131"},
        {"documentNumber": "x"},
        {"tag": ["a", "b"], "tagCond": "xor"},
        {"taxCode": "B1"},  # a providers' filter, not a purchase orders' one
        {"page": "2"},
        {"subject": "Pedido"},  # documented, but purchase orders here have no title to search
    ],
)
def test_list_parameters_are_checked(api: Api, params: dict[str, Any]) -> None:
    refused(api.call("GET", "/api/purchaseOrders.xml", params=params), 400)


def test_the_reference_filters_select_orders(api: Api) -> None:
    provider_a, provider_b = api.provider("A", "B11111111"), api.provider("B", "B22222222")

    def order(serial: str, number: str, day: str, tags: list[str], status: str, provider: str) -> str:
        def change(root: etree._Element) -> None:
            for tag, value in (("documentSerial", serial), ("documentNumber", number), ("documentDate", day)):
                etree.SubElement(root, tag).text = value
            set_text("documentStatus", status)(root)
            tag_list = etree.SubElement(root, "tags")
            for tag in tags:
                etree.SubElement(tag_list, "tag").text = tag

        return text(api.create(change, provider), "id")

    first = order("PO-2026-", "7", "20261102", ["bn:po_55", "obra"], "pendingToReceive", provider_a)
    second = order("PO-2026-", "8", "20261115", ["bn:po_56", "obra"], "canceled", provider_b)
    third = order("PO-2027-", "7", "20270110", ["bn:po_57"], "delivered", provider_a)

    def listed(**params: Any) -> list[str]:
        return ids(api.call("GET", "/api/purchaseOrders.xml", params=params))

    assert listed(tag="bn:po_55") == [first]
    assert listed(tag="bn:po_5") == []  # a tag is matched whole
    assert listed(tag=["obra", "bn:po_56"]) == [second]
    assert listed(tag=["bn:po_55", "bn:po_57"], tagCond="or") == [first, third]
    assert listed(documentSerial="PO-2026-", documentNumber="7") == [first]
    assert listed(documentSerial=["PO-2026-", "PO-2027-"], documentNumber="7") == [first, third]
    assert listed(documentNumberFormatted="PO-2027-0007") == [third]
    assert listed(provider=provider_a) == [first, third]
    assert listed(status=["canceled", "delivered"]) == [second, third]
    assert listed(fromDate="20261110", toDate="20261231") == [second]
    assert listed(sent="true") == []
    assert listed(sent="maybe") == [first, second, third]  # "cualquier otro valor es ignorado"


def test_providers_are_found_by_tax_code_and_paged_with_start(api: Api, peer: FacturaDirectaPeer) -> None:
    near = peer.add_provider(name="Parecido", taxCode="B123456789")
    exact = api.provider("Hormigones Muñoz, S.L.", "b-12345678")
    api.provider("Otro", "A46000001")

    def listed(**params: Any) -> list[tuple[str, str]]:
        answer = api.call("GET", "/api/providers.xml", params=params)
        assert answer.status_code == 200, answer.text
        root = root_of(answer)
        assert root.tag == "providers"
        return [(text(p, "id"), text(p, "taxCode")) for p in root.iterfind("provider")]

    assert listed(taxCode="B12345678") == [(near, "B123456789"), (exact, "b-12345678")]
    assert listed(taxCode="B12345678", start=1, limit=1) == [(exact, "b-12345678")]
    assert listed(taxCode="X") == []
    assert len(listed()) == 3
    refused(api.call("GET", "/api/providers.xml", params={"limit": "251"}), 400)
    refused(api.call("GET", "/api/providers.xml", params={"nif": "B1"}), 400, says="nif")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<provider><taxCode>B1</taxCode></provider>", "provider/name"),
        ("<provider><name>A</name><nif>B1</nif></provider>", "Elemento desconocido: provider/nif"),
        ("<provider><name>A</name><country>Spain</country></provider>", "country"),
        ("<providers><provider><name>A</name></provider></providers>", "Se esperaba <provider>"),
    ],
)
def test_provider_creates_are_checked(api: Api, body: str, says: str) -> None:
    refused(api.call("POST", "/api/providers.xml", body), 400, says=says)


# -- fault kinds -----------------------------------------------------------------------------------------


def test_status_401_refuses_a_request_whose_credentials_are_right(api: Api, peer: FacturaDirectaPeer) -> None:
    peer.faults.force("status_401")
    refused(api.call("GET", "/api/purchaseOrders.xml"), 401, "INVALID_CREDENTIALS")
    assert api.call("GET", "/api/purchaseOrders.xml").status_code == 200
    assert peer.faults.injected["status_401"] == 1


def test_status_404_answers_a_read_of_an_existing_order_once(api: Api, peer: FacturaDirectaPeer) -> None:
    order_id = text(api.create(), "id")
    peer.faults.force("status_404")
    refused(api.call("GET", f"/api/purchaseOrders/{order_id}.xml"), 404, "NOT_FOUND")
    assert api.call("GET", f"/api/purchaseOrders/{order_id}.xml").status_code == 200
    provider_id = text(api.create(), "provider/id")
    peer.faults.force("status_404")
    refused(api.call("GET", f"/api/providers/{provider_id}.xml"), 404, "NOT_FOUND")
    assert api.call("GET", f"/api/providers/{provider_id}.xml").status_code == 200


def test_status_422_refuses_a_valid_write_and_records_the_buildnexion_id(api: Api, peer: FacturaDirectaPeer) -> None:
    tagged = api.order_body(add(".", "tags"))
    root = etree.fromstring(tagged)
    tags = root.find("tags")
    assert tags is not None
    etree.SubElement(tags, "tag").text = "bn:po_9"
    peer.faults.force("status_422")
    refused(api.call("POST", "/api/purchaseOrders.xml", etree.tostring(root)), 400, says="fallo simulado")
    assert peer.state.orders == {}
    assert list(peer.faults.refused) == ["po_9"]
    assert "INVALID_INPUT_DATA" in peer.faults.refused["po_9"]
    # An update is refused the same way, and the order's own tag names it when the body sends none
    order_id = text(root_of(api.call("POST", "/api/purchaseOrders.xml", etree.tostring(root))), "id")
    peer.faults.force("status_422")
    refused(
        api.call("PUT", f"/api/purchaseOrders/{order_id}.xml", "<purchaseOrder><notes>x</notes></purchaseOrder>"), 400
    )
    assert text(root_of(api.call("GET", f"/api/purchaseOrders/{order_id}.xml")), "notes") != "x"


def test_status_422_without_a_tag_records_the_serial_and_number(api: Api, peer: FacturaDirectaPeer) -> None:
    def numbered(root: etree._Element) -> None:
        etree.SubElement(root, "documentSerial").text = "PO-2026-"
        etree.SubElement(root, "documentNumber").text = "7"

    peer.faults.force("status_422")
    refused(api.call("POST", "/api/purchaseOrders.xml", api.order_body(numbered)), 400)
    assert list(peer.faults.refused) == ["PO-2026-0007"]


def test_provider_pages_answers_one_provider_a_page(api: Api, peer: FacturaDirectaPeer) -> None:
    near = peer.add_provider(name="Parecido", taxCode="B123456789")
    exact = peer.add_provider(name="Hormigones Muñoz, S.L.", taxCode="B12345678")
    peer.faults.force("provider_pages", 3)
    pages = [
        [text(p, "id") for p in root_of(api.call("GET", "/api/providers.xml", params=q)).iterfind("provider")]
        for q in ({"taxCode": "B12345678", "limit": 250}, {"taxCode": "B12345678", "start": 1, "limit": 250})
    ]
    assert pages == [[near], [exact]]
    assert peer.faults.injected["provider_pages"] == 2


def test_fault_kinds_come_from_the_local_faults_setting() -> None:
    settings = LocalSettings.from_env({"LOCAL_FAULTS": "status_401=1,seed=4"})
    running = create_peer(settings)
    running.start()
    try:
        answer = requests.get(
            f"{running.base_url}/api/purchaseOrders.xml", auth=(settings.facturadirecta_api_token, "x"), timeout=5
        )
        refused(answer, 401, "INVALID_CREDENTIALS")
    finally:
        running.stop()


def test_a_drawn_kind_repeats_with_its_seed() -> None:
    def draws(seed: int) -> list[bool]:
        plan = FaultPlan(FaultSettings.parse(f"provider_pages=0.5,seed={seed}"), "facturadirecta")
        return [plan.draw("provider_pages") for _ in range(20)]

    assert draws(3) == draws(3)
    assert 0 < sum(draws(3)) < 20


def test_totals_are_decimal_not_float(api: Api) -> None:
    order = api.create(set_text("documentLines/documentLine/unitPrice", "0.10"))
    # 0.10 + 3 x 95.00 = 285.10; 21 % = 59.871 → 59.87
    assert Decimal(text(order, "grossTotal")) == Decimal("344.97")
