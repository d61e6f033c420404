"""`invoice-bridge local serve` with the sandbox Quipu and BuildNexion on their own ports: invoices arrive once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sandbox.buildnexion import BuildNexionPeer
from sandbox.quipu import QuipuOptions, QuipuPeer
from tests.conftest import ROOT, load_event
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

SECRET = "whsec_e2e_quipu_only"
API_KEY = "bn_e2e_quipu_key"
INVOICE_EVENTS = [
    "01_invoice_created.json",
    "02_invoice_updated.json",
    "03_invoice_created.json",
    "04_invoice_voided.json",
]


@dataclass
class Served:
    url: str
    quipu: QuipuPeer
    buildnexion: BuildNexionPeer


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    quipu = QuipuPeer(QuipuOptions(app_id="e2e-app", app_secret="e2e-secret"))
    buildnexion = BuildNexionPeer(API_KEY, [SECRET])
    quipu.start()
    buildnexion.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "BUILDNEXION_WEBHOOK_SECRET": SECRET,
            "BUILDNEXION_API_KEY": API_KEY,
            "BUILDNEXION_API_URL": buildnexion.base_url,
            "QUIPU_API_URL": quipu.base_url,
            "QUIPU_APP_ID": "e2e-app",
            "QUIPU_APP_SECRET": "e2e-secret",
        }
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoice-bridge"), "local", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    assert first_line.startswith("invoice-bridge local stack listening on "), first_line
    try:
        yield Served(first_line.rsplit(" ", 1)[1].strip(), quipu, buildnexion)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        buildnexion.stop()
        quipu.stop()


def test_invoices_reach_quipu_once_with_buildnexions_totals(served: Served) -> None:
    served.buildnexion.subscribe(
        f"{served.url}/webhooks/buildnexion", ["invoice.created", "invoice.updated", "invoice.voided"]
    )
    envelopes = [load_event(f"buildnexion/{name}") for name in INVOICE_EVENTS]
    for envelope in [*envelopes, envelopes[0]]:  # the first one delivered twice
        (delivery,) = served.buildnexion.deliver(envelope)
        assert delivery.status == 200

    def idle() -> dict[str, object] | None:
        status: dict[str, object] = requests.get(f"{served.url}/local/status", timeout=10).json()
        return status if status["idle"] else None

    status = wait_for(idle, 60, "the stack to be idle")
    queues = status["queues"]
    assert isinstance(queues, dict)
    assert queues["QuipuQueue"] == {"visible": 0, "in_flight": 0, "dlq": 0}
    check = served.quipu.demo_check(served.buildnexion, envelopes)
    assert check.problems == []
    assert check.synced == 2
    (voided,) = served.quipu.expense_invoices("FL-2026/1187")
    assert len(served.quipu.credit_notes(voided.id)) == 1
    assert served.quipu.calls["POST /oauth/token"] == 1
    assert served.quipu.rate_limited == 0
