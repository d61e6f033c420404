"""The Quipu worker against the strict sandbox Quipu's contact behaviours: ES-prefixed and fullwidth tax ids,
the 204 contact create, contact pages, and a 429 that says when to come back only through `RateLimit-Reset`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from pydantic import SecretStr

from invoice_bridge.http import Deadline
from invoice_bridge.ledger import Leases, StateTable
from invoice_bridge.quipu.client import QuipuClient, TokenStore
from sandbox.quipu import Contact, QuipuOptions
from tests.integration.conftest import Aws
from tests.integration.test_quipu_sync import APP_ID, APP_SECRET, Rig, envelope, make_rig, new_invoice
from tests.unit.test_quipu_client import FreeLeases, MemoryTable

FULLWIDTH_NIF = "\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"  # B12345678 typed in fullwidth


@pytest.fixture
def quipu_rig(aws: Aws) -> Iterator[Rig]:
    yield from make_rig(aws, QuipuOptions(limit=100, window_seconds=1.0))


def contact_ids_of(rig: Rig, number: str) -> list[str | None]:
    return [i.contact_id for i in rig.quipu.expense_invoices(number)]


def test_a_supplier_quipu_holds_as_esb12345678_is_found_for_buildnexions_b12345678(quipu_rig: Rig) -> None:
    # Given Quipu already holding the supplier with the ES prefix, as its own examples store tax ids
    quipu_rig.quipu.contacts["900"] = Contact("900", {"name": "Hormigones Muñoz, S.L.", "tax_id": "ESB12345678"})
    # When BuildNexion's invoice (its provider's nif is B12345678) is synced
    assert quipu_rig.worker().apply(quipu_rig.publish(envelope("01_invoice_created.json")), Deadline(30)).action == (
        "created"
    )
    # Then the invoice is that supplier's, and no second contact was made
    assert contact_ids_of(quipu_rig, "F-2026-0042") == ["900"]
    assert list(quipu_rig.quipu.contacts) == ["900"]


def test_a_fullwidth_nif_is_the_same_supplier_as_its_ascii_form(quipu_rig: Rig) -> None:
    provider = {"object": "provider", "id": "prv_fw", "name": "Hormigones Muñoz, S.L.", "nif": FULLWIDTH_NIF}
    quipu_rig.buildnexion.put_objects([{**provider, "country_code": "ES"}])
    worker = quipu_rig.worker()
    worker.apply(quipu_rig.publish(new_invoice(1, provider_id="prv_fw")), Deadline(30))
    worker.apply(quipu_rig.publish(new_invoice(2, provider_id="prv_123")), Deadline(30))  # nif B12345678
    (contact,) = quipu_rig.quipu.contacts.values()
    assert contact.attributes["tax_id"] == "B12345678"
    assert contact_ids_of(quipu_rig, "N-1") == contact_ids_of(quipu_rig, "N-2") == [contact.id]


def test_a_contact_created_with_204_and_stored_es_prefixed_is_found_and_used(quipu_rig: Rig) -> None:
    # Given Quipu answering the create 204 (nothing to read back) and storing the tax id as ESA46000001
    quipu_rig.quipu.faults.force("contact_204")
    quipu_rig.quipu.faults.force("es_prefix")
    outcome = quipu_rig.worker().apply(quipu_rig.publish(new_invoice(1, provider_id="prv_207")), Deadline(30))
    # Then the new contact is found by the ES form after the bare one missed, and carries the invoice
    assert outcome.action == "created"
    (contact,) = quipu_rig.quipu.contacts.values()
    assert contact.attributes["tax_id"] == "ESA46000001"
    assert contact_ids_of(quipu_rig, "N-1") == [contact.id]
    assert quipu_rig.quipu.faults.injected["contact_204"] == quipu_rig.quipu.faults.injected["es_prefix"] == 1


def test_two_contacts_for_one_tax_id_listed_a_page_at_a_time_make_no_third(quipu_rig: Rig) -> None:
    quipu_rig.quipu.contacts["900"] = Contact("900", {"name": "Duplicado a mano", "tax_id": "B12345678"})
    quipu_rig.quipu.contacts["901"] = Contact("901", {"name": "Hormigones Muñoz, S.L.", "tax_id": "B12345678"})
    quipu_rig.quipu.faults.force("contact_pages", 2)
    quipu_rig.worker().apply(quipu_rig.publish(new_invoice(1)), Deadline(30))
    assert quipu_rig.quipu.faults.injected["contact_pages"] == 1  # the one listing it needed, paged
    assert contact_ids_of(quipu_rig, "N-1") == ["900"]
    assert len(quipu_rig.quipu.contacts) == 2


def test_a_429_without_retry_after_is_waited_out_for_its_ratelimit_reset(aws: Aws) -> None:
    for rig in make_rig(aws, QuipuOptions(limit=100, window_seconds=5.0)):
        slept: list[float] = []
        client = QuipuClient(
            rig.quipu.base_url,
            SecretStr(APP_ID),
            SecretStr(APP_SECRET),
            tokens=TokenStore(cast(StateTable, MemoryTable()), APP_ID),
            leases=cast(Leases, FreeLeases()),
            sleep=slept.append,
        )
        client.access_token(Deadline(30))
        rig.quipu.faults.force("status_429")
        assert client.find_contact("B12345678", Deadline(30)) is None
        # Quipu's 429 carries RateLimit-Reset: 5 and no Retry-After: the client waited about that long, once
        assert rig.quipu.statuses[429] == 1
        (waited,) = slept
        assert 4.5 <= waited <= 5.5
