"""FacturaDirecta end to end: signed BuildNexion webhooks through the local stack to the sandbox FacturaDirecta."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.buildnexion import BuildNexionPeer
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.stack import LocalStack, StackOptions
from tests.conftest import BUILDNEXION_EVENTS, load_event
from tests.e2e.conftest import wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.endswith("_API_URL")}
    with LocalStack(StackOptions(port=0, environ=environ, log_sink=lambda _fn, _line: None)) as running:
        bn: BuildNexionPeer = running.peers["buildnexion"]
        bn.subscribe(f"{running.url}/webhooks/buildnexion", ["*"])
        yield running


def idle(stack: LocalStack) -> dict[str, Any] | None:
    status = stack.status()
    return status if status["idle"] else None


def test_demo_purchase_orders_arrive_once_with_exact_lines_totals_and_the_cancel(stack: LocalStack) -> None:
    bn: BuildNexionPeer = stack.peers["buildnexion"]
    fd: FacturaDirectaPeer = stack.peers["facturadirecta"]
    envelopes = [load_event(f"buildnexion/{p.name}") for p in BUILDNEXION_EVENTS]
    orders = [e for e in envelopes if e["type"].startswith("purchase_order.")]
    for envelope in orders:
        (delivery,) = bn.deliver(envelope)
        assert delivery.status == 200
    (again,) = bn.deliver(orders[1])  # BuildNexion redelivers (the latest state): nothing changes
    assert again.response["status"] == "duplicate"

    status = wait_for(lambda: idle(stack), 60, "the stack to be idle")
    assert status["queues"]["FacturaDirectaQueue"] == {"visible": 0, "in_flight": 0, "dlq": 0}
    check = fd.demo_check(bn, orders)
    assert check.problems == []
    assert check.synced == 2
    (canceled,) = fd.orders_tagged("bn:po_56")
    assert canceled.document_status == "canceled"
    (updated,) = fd.orders_tagged("bn:po_55")
    assert [line.description for line in updated.lines] == ["Hormigón HA-25", "Servicio de bomba"]
    assert str(updated.totals()[2]) == "581.74"


def test_an_update_changing_lines_reaches_facturadirecta(stack: LocalStack) -> None:
    bn: BuildNexionPeer = stack.peers["buildnexion"]
    fd: FacturaDirectaPeer = stack.peers["facturadirecta"]
    envelope = load_event("buildnexion/09_purchase_order_updated.json")
    envelope["id"] = "evt_e2e_fd_update_1"
    envelope["data"]["object"]["updated_at"] = "2026-11-03T09:00:00Z"
    envelope["data"]["object"]["lines"][1]["quantity"] = "2"
    (delivery,) = bn.deliver(envelope)
    assert delivery.status == 200

    def updated() -> Any:
        (order,) = fd.orders_tagged("bn:po_55")
        return order if str(order.lines[1].quantity) == "2" else None

    order = wait_for(updated, 60, "the updated purchase order")
    assert str(order.totals()[2]) == "856.74"  # 253.50 + 53.24 + 500.00 + 50.00
    assert len(fd.orders_tagged("bn:po_55")) == 1
