"""The product's FacturaDirecta client against the strict sandbox peer: provider lookups that must page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from invoice_bridge.facturadirecta.client import FacturaDirectaXmlClient
from invoice_bridge.facturadirecta.models import ProviderDocument
from invoice_bridge.http import Deadline
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.faults import FaultSettings

TOKEN = "sandbox-facturadirecta-token"


@pytest.fixture
def peer() -> Iterator[FacturaDirectaPeer]:
    running = FacturaDirectaPeer(TOKEN, faults=FaultSettings.parse("provider_pages=1,seed=5").plan("facturadirecta"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def client(peer: FacturaDirectaPeer) -> FacturaDirectaXmlClient:
    return FacturaDirectaXmlClient(peer.base_url, lambda: SecretStr(TOKEN), timeout=(2.0, 5.0))


def test_a_provider_behind_near_matches_is_found_on_a_later_page(peer: FacturaDirectaPeer) -> None:
    # Given providers whose codes contain the one looked up, listed one a page, the exact one third
    peer.add_provider(name="Parecido 1", taxCode="B123456789")
    peer.add_provider(name="Parecido 2", taxCode="ESB123456780")
    exact = peer.add_provider(name="Hormigones Muñoz, S.L.", taxCode="B-12345678")
    # When the product looks the provider up
    found = client(peer).find_provider("B12345678", Deadline.unlimited())
    # Then it pages with start until the exact one, and no provider is created again
    assert found is not None
    assert found.id == exact
    assert peer.calls["GET /api/providers.xml"] == 3
    assert peer.faults.injected["provider_pages"] == 3


def test_a_provider_not_held_is_missing_after_the_last_page_and_created_once(peer: FacturaDirectaPeer) -> None:
    peer.add_provider(name="Parecido", taxCode="B123456789")
    api = client(peer)
    assert api.find_provider("B12345678", Deadline.unlimited()) is None
    assert peer.calls["GET /api/providers.xml"] == 2  # the near match, then an empty page
    made = api.create_provider(ProviderDocument(name="Nuevo, S.L.", tax_code="B12345678"), Deadline.unlimited())
    again = api.find_provider("B12345678", Deadline.unlimited())
    assert again is not None
    assert again.id == made.id
    assert len(peer.state.providers) == 2
