"""tuimprenta bench: sales invoices sent 16 at a time through the local stack against the sandbox tuimprenta.

Prints API calls per 1,000 invoices issued (create, polls, results), the batches, and the seconds from the
last webhook to the last invoice issued (at tuimprenta, and recorded in the ledger).
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from sandbox.stack import LocalStack, StackOptions
from sandbox.tuimprenta import TuimprentaPeer
from tests.conftest import load_event

INVOICES = 300
QUICK_INVOICES = 64
CONCURRENCY = 16
TIMEOUT_SECONDS = 180


def envelopes(count: int) -> list[dict[str, Any]]:
    """`count` distinct sales_invoice.created events built from the demo's."""
    base = load_event("buildnexion/05_sales_invoice_created.json")
    events = []
    for n in range(count):
        event = copy.deepcopy(base)
        event["id"] = f"evt_bench_{n:05d}"
        event["data"]["object"]["id"] = f"sin_bench_{n:05d}"
        events.append(event)
    return events


def run(quick: bool) -> None:
    """Send the invoices, wait until every one is issued and recorded, print the figures."""
    count = QUICK_INVOICES if quick else INVOICES
    with LocalStack(StackOptions(port=0, log_sink=lambda _f, _l: None)) as stack:
        peer: TuimprentaPeer = stack.peers["tuimprenta"]
        buildnexion = stack.peers["buildnexion"]
        buildnexion.subscribe(f"{stack.url}/webhooks/buildnexion", ["sales_invoice.created"])
        events = envelopes(count)
        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            statuses = [d.status for ds in pool.map(buildnexion.deliver, events) for d in ds]
        last_webhook = time.monotonic()
        refused = sum(1 for s in statuses if s != 200)
        deadline = last_webhook + TIMEOUT_SECONDS
        with requests.Session() as session:
            while time.monotonic() < deadline:
                status = session.get(f"{stack.url}/local/status", timeout=(3.05, 10)).json()
                if len(peer.invoices) >= count and status["idle"]:
                    break
                time.sleep(0.1)  # a poll interval of the wait, not a synchronisation
        recorded = time.monotonic()
        issued = len(peer.invoices)
        last_issued = max((i.issued_at for i in peer.invoices.values()), default=recorded)
        calls = sum(peer.calls.values())
        schedule = stack.settings.schedule_seconds

    print(f"tuimprenta: {count} sales invoices sent {CONCURRENCY} at a time through the local stack")
    print(f"  webhooks refused                      {refused}")
    print(f"  invoices issued                       {issued} of {count} (each once: {issued == count})")
    print(f"  batches                               {len(peer.batches)}")
    print(f"  API calls                             {calls} ({dict(peer.calls)})")
    print(f"  API calls per 1,000 invoices issued   {calls / max(1, issued) * 1000:.1f} (target <= 15)")
    print(f"  sending took                          {last_webhook - started:.1f} s")
    print(f"  last webhook → last invoice issued    {last_issued - last_webhook:.1f} s (at tuimprenta)")
    print(f"  last webhook → recorded in the ledger {recorded - last_webhook:.1f} s")
    print(
        f"  recorded after the platform finished  {recorded - last_issued:.1f} s "
        f"(target: within one poll interval; local schedule {schedule:.0f} s, callbacks on)"
    )
