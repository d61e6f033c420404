"""`make demo`: the demo events, signed by the sandbox BuildNexion, through the local stack."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from sandbox.buildnexion import BuildNexionPeer
from sandbox.stack import LocalStack, StackOptions

DESTINATION_QUEUES = {
    "quipu": "QuipuQueue",
    "tuimprenta": "TuimprentaQueue",
    "facturadirecta": "FacturaDirectaQueue",
}
IDLE_TIMEOUT_SECONDS = 120
HTTP_TIMEOUT = (3.05, 10)


def wait_until_idle(status_url: str, timeout: float) -> dict[str, Any]:
    """Poll `/local/status` until it reports idle; the last status either way."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while True:
            status: dict[str, Any] = session.get(status_url, timeout=HTTP_TIMEOUT).json()
            if status["idle"] or time.monotonic() > deadline:
                return status
            time.sleep(0.2)  # a poll interval, not a synchronisation: the loop waits on the status itself


def run_demo(root: Path, events_dir: Path, port: int) -> int:
    """Run the demo; 0 only if every routed event was accepted and sits on its queue."""
    log_dir = root / ".local"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / "demo-functions.log"
    started = time.monotonic()
    with (
        log_path.open("w", encoding="utf-8") as log,
        LocalStack(
            StackOptions(root=root, port=port, log_sink=lambda fn, line: print(f"[{fn}] {line}", file=log, flush=True))
        ) as stack,
    ):
        print(f"local stack up on {stack.url} in {time.monotonic() - started:.1f} s (function logs: {log_path})")
        peer: BuildNexionPeer | None = stack.peers.get("buildnexion")
        if peer is None:
            print("the demo sends its events through the sandbox BuildNexion: unset BUILDNEXION_API_URL")
            return 2
        routing: dict[str, str] = json.loads(stack.template.parameter_defaults()["RoutingTable"])
        registration = requests.post(
            f"{peer.base_url}/webhooks",
            json={
                "url": f"{stack.url}/webhooks/buildnexion",
                "events": [*sorted(routing), "provider.updated"],
            },
            headers={"Authorization": f"Bearer {stack.settings.buildnexion_api_key}"},
            timeout=HTTP_TIMEOUT,
        )
        registration.raise_for_status()
        print(f"webhook registered with the sandbox BuildNexion: {registration.json()['id']}\n")

        files = sorted(events_dir.glob("*.json"))
        envelopes = [json.loads(f.read_text(encoding="utf-8")) for f in files]
        failures: list[str] = []
        expected_on_queue: Counter[str] = Counter()
        print(f"{'event':38} {'type':24} {'HTTP':>4}  {'result':9} queue")
        sends = [(e, False) for e in envelopes] + ([(envelopes[0], True)] if envelopes else [])
        for envelope, resend in sends:
            destination = routing.get(envelope["type"])
            (delivery,) = peer.deliver(envelope)
            answer = delivery.response
            result = str(answer.get("status", "-")) if isinstance(answer, dict) else "-"
            expected = "ignored" if destination is None else ("duplicate" if resend else "accepted")
            queue = DESTINATION_QUEUES[destination] if destination else "-"
            label = ("(again) " if resend else "") + envelope["id"]
            print(f"{label:38} {envelope['type']:24} {delivery.status or '-':>4}  {result:9} {queue}")
            if delivery.status != 200 or result != expected:
                failures.append(f"{envelope['id']}: expected 200 {expected}, got {delivery.status} {result}")
            if destination and not resend:
                expected_on_queue[DESTINATION_QUEUES[destination]] += 1

        status = wait_until_idle(f"{stack.url}/local/status", IDLE_TIMEOUT_SECONDS)
        consumed = stack.consumed_queues()
        header = f"{'destination':15} {'queue':20} {'sent':>4} {'on queue':>8} {'in flight':>9} {'dead-lettered':>13}"
        print(f"\n{header}  worker")
        for destination, queue in DESTINATION_QUEUES.items():
            depth = status["queues"][queue]
            worker = "consuming" if queue in consumed else "not wired yet (messages wait on the queue)"
            print(
                f"{destination:15} {queue:20} {expected_on_queue[queue]:>4} {depth['visible']:>8} "
                f"{depth['in_flight']:>9} {depth['dlq']:>13}  {worker}"
            )
            if queue not in consumed and depth["visible"] != expected_on_queue[queue]:
                failures.append(f"{queue}: expected {expected_on_queue[queue]} messages, found {depth['visible']}")
            if depth["dlq"]:
                failures.append(f"{queue}: {depth['dlq']} message(s) dead-lettered")
        print(
            f"\nBuildNexion API calls: {sum(peer.calls.values())}; "
            f"open tuimprenta batches: {status['open_batches']}; idle: {status['idle']}; "
            f"{time.monotonic() - started:.1f} s in all"
        )
    if failures:
        print("\nDEMO FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("\nevery routed event was accepted once and sits on its destination's queue")
    return 0
