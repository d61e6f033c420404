"""Sales invoices through the local stack: webhook → queue → poller → sandbox tuimprenta → callback → issued."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from moto.core.base_backend import BackendDict

from sandbox.stack import LocalStack, StackOptions
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import load_event
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    options = StackOptions(
        port=0,
        environ={"LOCAL_SCHEDULE_SECONDS": "1", "TUIMPRENTA_PROCESSING_SECONDS": "0.5"},
        parameter_overrides={"TuimprentaBatchWindowSeconds": "0", "TuimprentaPollBaseSeconds": "1"},
        log_sink=lambda _function, _line: None,
    )
    # In-process moto keeps its resources after another in-process stack of this session stopped.
    BackendDict.reset()
    with LocalStack(options) as running:
        running.peers["buildnexion"].subscribe(
            f"{running.url}/webhooks/buildnexion", ["sales_invoice.created", "sales_invoice.canceled"]
        )
        yield running


def status(stack: LocalStack) -> dict[str, Any]:
    document: dict[str, Any] = requests.get(f"{stack.url}/local/status", timeout=(3.05, 10)).json()
    return document


def test_sales_invoices_are_issued_once_then_a_cancel_reaches_tuimprenta(stack: LocalStack) -> None:
    tuimprenta: TuimprentaPeer = stack.peers["tuimprenta"]
    buildnexion = stack.peers["buildnexion"]
    for name in ("05_sales_invoice_created.json", "06_sales_invoice_created.json"):
        (delivery,) = buildnexion.deliver(load_event(f"buildnexion/{name}"))
        assert delivery.status == 200
    wait_for(lambda: tuimprenta.issued_for("sin_9") and tuimprenta.issued_for("sin_10"), 60, "both to be issued")
    idle = wait_for(lambda: s if (s := status(stack))["idle"] else None, 60, "the stack to be idle")
    assert idle["open_batches"] == 0
    assert idle["queues"]["TuimprentaQueue"] == {"visible": 0, "in_flight": 0, "dlq": 0}
    assert tuimprenta.callbacks_sent >= 1  # the batch's callback went to the stack's /webhooks/tuimprenta

    (delivery,) = buildnexion.deliver(load_event("buildnexion/07_sales_invoice_canceled.json"))
    assert delivery.status == 200
    wait_for(lambda: tuimprenta.issued_for("sin_10")[0].status == "canceled", 60, "sin_10 to be canceled")
    assert [i.status for i in tuimprenta.issued_for("sin_9")] == ["issued"]
    assert len(tuimprenta.issued_for("sin_10")) == 1
    check = tuimprenta.demo_check(
        buildnexion,
        [
            load_event(f"buildnexion/0{n}_sales_invoice_{kind}.json")
            for n, kind in ((5, "created"), (6, "created"), (7, "canceled"))
        ],
    )
    assert (check.synced, check.failed, check.problems) == (2, 0, [])
