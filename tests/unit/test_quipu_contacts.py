"""Quipu contacts and invoice documents without sockets: looked up by tax id, created, read defensively."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from invoice_bridge.errors import PlatformError
from invoice_bridge.http import Deadline
from invoice_bridge.quipu.client import AccessToken, Resource, remote_invoice
from tests.unit.test_quipu_access_token import Rig
from tests.unit.test_quipu_client import NOW, body


def rig(script: list[tuple[int, bytes]]) -> Rig:
    made = Rig(script)
    made.tokens.put(AccessToken(SecretStr("shared"), NOW, NOW + 3600))
    return made


def contact(contact_id: str, tax_id: str | None) -> dict[str, Any]:
    attributes = {} if tax_id is None else {"tax_id": tax_id}
    return {"id": contact_id, "type": "contacts", "attributes": attributes}


def test_a_contact_is_looked_up_by_its_tax_id_and_only_an_exact_match_counts() -> None:
    # Given Quipu's filter answering loosely: a contact without tax id, another supplier, then ours
    listing = [contact("c0", None), contact("c1", "B99999999"), contact("c2", "ES-B12345678")]
    quipu = rig([(200, body(listing))])
    assert quipu.client.find_contact("B12345678", Deadline.unlimited()) == "c2"
    assert quipu.quipu.query(0)["filter[tax_id]"] == ["B12345678"]


def test_no_contact_with_that_tax_id_in_either_form_is_none() -> None:
    # Given Quipu answering both lookups (bare, then ES-prefixed) with other contacts only
    loose = body([contact("c1", "B99999999"), contact("c0", None)])
    quipu = rig([(200, loose), (200, loose)])
    # Then no contact is ours, after asking for both forms a contact may be stored in
    assert quipu.client.find_contact("B12345678", Deadline.unlimited()) is None
    assert [quipu.quipu.query(i)["filter[tax_id]"] for i in (0, 1)] == [["B12345678"], ["ESB12345678"]]


def test_a_blank_tax_id_matches_no_contact_not_even_one_quipu_holds_without_a_tax_id() -> None:
    # Given a supplier whose tax id is only separators, and Quipu holding a contact without a tax id
    quipu = rig([(200, body([contact("c0", None)]))])
    # When it is looked up, Then no contact is its own and Quipu is not even asked
    assert quipu.client.find_contact(" - . ", Deadline.unlimited()) is None
    assert quipu.quipu.sent == []


def test_a_contact_is_created_as_a_json_api_document_and_its_id_returned() -> None:
    quipu = rig([(201, body(contact("c9", "B12345678")))])
    attributes = {"name": "Hormigones", "tax_id": "B12345678"}
    assert quipu.client.create_contact(attributes, Deadline.unlimited()) == "c9"
    (sent,) = quipu.quipu.sent
    assert json.loads(sent.body or b"") == {"data": {"type": "contacts", "attributes": attributes}}


def test_a_create_answered_without_a_body_is_resolved_by_a_lookup_of_its_tax_id() -> None:
    # The reference shows a create answered 204: the id then comes from the filter by tax id
    quipu = rig([(204, b""), (200, body([contact("c7", "B12345678")]))])
    assert quipu.client.create_contact({"tax_id": "B12345678"}, Deadline.unlimited()) == "c7"
    assert quipu.quipu.query(1)["filter[tax_id]"] == ["B12345678"]


def test_a_create_answered_without_a_body_and_not_found_after_is_retryable() -> None:
    quipu = rig([(204, b""), (200, body([])), (200, body([]))])
    with pytest.raises(PlatformError) as caught:
        quipu.client.create_contact({"tax_id": "B12345678"}, Deadline.unlimited())
    error = caught.value
    assert (error.platform, error.message, error.retryable) == (
        "quipu",
        "contact created but not found by its tax id",
        True,
    )


def test_a_contact_created_without_a_tax_id_and_answered_without_a_body_is_not_looked_up() -> None:
    # Given a create Quipu answers 204 for a contact without a tax id
    quipu = rig([(204, b""), (200, body([contact("c0", None)]))])
    # When it is created, Then there is nothing to look it up by: a retryable Quipu error, and no lookup sent
    with pytest.raises(PlatformError) as caught:
        quipu.client.create_contact({"name": "Sin NIF"}, Deadline.unlimited())
    assert (caught.value.platform, caught.value.retryable) == ("quipu", True)
    assert [(r.method, urlsplit(str(r.url)).path) for r in quipu.quipu.sent] == [("POST", "/contacts")]


def test_an_item_sideloaded_without_a_concept_reads_as_an_empty_concept() -> None:
    invoice = Resource.model_validate(
        {
            "id": "7",
            "type": "invoices",
            "relationships": {"items": {"data": [{"id": "i1", "type": "book_entry_items"}, {"type": "x"}]}},
        }
    )
    item = Resource.model_validate({"id": "i1", "type": "book_entry_items", "attributes": {}})
    read = remote_invoice(invoice, [item])
    # the relation entry without an id is skipped; the item without a concept has an empty one
    assert [(i.id, i.concept) for i in read.items] == [("i1", "")]


def test_a_lookup_reads_every_page_quipu_announces() -> None:
    # Given a filter answering loosely, a contact a page: another supplier on page 1 of 2, ours on page 2
    def page(number: int, listed: dict[str, Any]) -> tuple[int, bytes]:
        info = {"total_pages": 2, "current_page": number, "total_results": 2}
        return 200, body([listed], meta={"pagination_info": info})

    quipu = rig([page(1, contact("c1", "B99999999")), page(2, contact("c2", "B12345678"))])
    # When it is looked up, Then page 2 is read and ours found there
    assert quipu.client.find_contact("B12345678", Deadline.unlimited()) == "c2"
    assert [quipu.quipu.query(i).get("page[number]") for i in (0, 1)] == [["1"], ["2"]]


def test_a_fullwidth_tax_id_is_looked_up_and_created_in_its_ascii_form() -> None:
    # Given a NIF typed in fullwidth characters, unknown to Quipu in both forms
    fullwidth = "\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"
    quipu = rig([(200, body([])), (200, body([])), (201, body(contact("c9", "B12345678")))])
    assert quipu.client.find_contact(fullwidth, Deadline.unlimited()) is None
    assert quipu.client.create_contact({"name": "Hormigones", "tax_id": fullwidth}, Deadline.unlimited()) == "c9"
    # Then Quipu was asked for, and given, the ASCII form that a later lookup of either spelling finds
    assert [quipu.quipu.query(i)["filter[tax_id]"] for i in (0, 1)] == [["B12345678"], ["ESB12345678"]]
    assert json.loads(quipu.quipu.sent[2].body or b"")["data"]["attributes"]["tax_id"] == "B12345678"
