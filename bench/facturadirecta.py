"""FacturaDirecta bench: FacturaDirecta requests per purchase order and seconds per 100 orders.

N purchase orders from M providers go through the real exporter (ledger, references, leases on the state
table of a moto server) against the sandbox BuildNexion and FacturaDirecta on loopback. The first round
meets every provider new (a lookup and a create each); the second round sends new orders from the same,
now known, providers; the third redelivers the second round's events (duplicates: no call at all).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.facturadirecta.client import FacturaDirectaXmlClient
from invoice_bridge.facturadirecta.exporter import FacturaDirectaExporter
from invoice_bridge.http import Deadline
from invoice_bridge.ledger import StateTable
from invoice_bridge.observability import logger, metrics
from sandbox.aws_local import LocalAws
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cfn import Template
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.settings import LocalSettings
from sandbox.stack import REPO_ROOT

TARGET_REQUESTS_PER_ORDER = 1.2


def providers(count: int) -> list[dict[str, Any]]:
    return [
        {
            "object": "provider",
            "id": f"prv_bench_{i}",
            "name": f"Suministros Bench {i}, S.L.",
            "nif": f"B{90000000 + i}",
        }
        for i in range(count)
    ]


def events(round_name: str, orders: int, provider_ids: Sequence[str]) -> list[dict[str, Any]]:
    made = []
    for i in range(orders):
        order = {
            "object": "purchase_order",
            "id": f"po_{round_name}_{i}",
            "number": f"PO-BENCH-{round_name}-{i + 1:04d}",
            "date": "2026-11-02",
            "provider_id": provider_ids[i % len(provider_ids)],
            "currency": "EUR",
            "status": "sent",
            "notes": "Entregar en obra",
            "lines": [
                {
                    "product_code": "HA25",
                    "description": "Hormigón HA-25",
                    "quantity": "3",
                    "unit_amount": 8450,
                    "vat_percent": "21",
                },
                {
                    "product_code": "BOMBA",
                    "description": "Servicio de bomba",
                    "quantity": "1",
                    "unit_amount": 25000,
                    "vat_percent": "10",
                },
            ],
            "updated_at": "2026-11-02T08:00:00Z",
        }
        made.append(
            {"id": f"evt_{round_name}_{i}", "type": "purchase_order.created", "created": 0, "data": {"object": order}}
        )
    return made


def run(quick: bool) -> None:
    """Print the figures."""
    orders, provider_count = (40, 5) if quick else (100, 5)
    # The bench prints figures, not the functions' logs and metrics (a namespace is still required).
    metrics.namespace = metrics.namespace or "InvoiceBridgeBench"
    logger.setLevel(logging.WARNING)
    settings = LocalSettings.from_env({})
    aws = LocalAws()
    bn = BuildNexionPeer(DEFAULT_API_KEY, ["whsec_bench"])
    fd = FacturaDirectaPeer(settings.facturadirecta_api_token)
    aws.start()
    bn.start()
    fd.start()
    try:
        provisioned = aws.provision(Template.load(REPO_ROOT / "template.yaml"), settings.secret_values())
        table = StateTable(aws.dynamodb(), provisioned.tables["StateTable"])
        bn_client = BuildNexionClient(bn.base_url, SecretStr(DEFAULT_API_KEY))
        fd_client = FacturaDirectaXmlClient(fd.base_url, lambda: SecretStr(settings.facturadirecta_api_token))
        exporter = FacturaDirectaExporter(table=table, buildnexion=lambda: bn_client, api=lambda: fd_client)
        people = providers(provider_count)
        bn.put_objects(people)
        ids = [p["id"] for p in people]
        print(f"FacturaDirecta exporter: {orders} purchase orders from {provider_count} providers per round")
        print(f"{'round':34} {'orders':>6} {'FD requests':>11} {'per order':>9} {'s / 100 orders':>14}")
        rounds = [("new providers", events("a", orders, ids)), ("providers known", events("b", orders, ids))]
        rounds.append(("duplicates (redelivered)", rounds[1][1]))
        figures = {}
        for label, batch in rounds:
            fd.calls.clear()
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the functions' metric lines
                for envelope in batch:
                    bn.put_objects([envelope["data"]["object"]])
                    exporter.sync(WebhookEvent.model_validate(envelope), Deadline.unlimited())
            elapsed = time.perf_counter() - started
            requests_made = sum(fd.calls.values())
            per_order = requests_made / len(batch)
            figures[label] = per_order
            print(
                f"{label:34} {len(batch):>6} {requests_made:>11} {per_order:>9.3f} {elapsed * 100 / len(batch):>14.2f}"
            )
        known = figures["providers known"]
        print(
            f"requests per order with providers known: {known:.3f} (target <= {TARGET_REQUESTS_PER_ORDER}; "
            f"ratio to target {known / TARGET_REQUESTS_PER_ORDER:.2f}); "
            f"including first-time providers: {figures['new providers']:.3f}"
        )
        print("(seconds include BuildNexion reads and DynamoDB ledger writes on a local moto server)")
    finally:
        fd.stop()
        bn.stop()
        aws.stop()
