"""`make demo`: the demo events, signed by the sandbox BuildNexion, through the local stack."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from invoice_bridge.destinations import PLATFORMS
from sandbox.buildnexion import BuildNexionPeer
from sandbox.chaos_check import Letter
from sandbox.dead_letters import drain_dead_letters
from sandbox.peers import DemoCheck, DestinationPeer
from sandbox.stack import LocalStack, StackOptions

DESTINATION_QUEUES = {d.value: p.queue_logical_id for d, p in PLATFORMS.items()}
IDLE_TIMEOUT_SECONDS = 120
HTTP_TIMEOUT = (3.05, 10)


def wait_until_idle(status_url: str, timeout: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Poll `/local/status` until it reports idle; the last status, and when each queue last had work."""
    deadline = time.monotonic() + timeout
    last_busy: dict[str, float] = {}
    with requests.Session() as session:
        while True:
            status: dict[str, Any] = session.get(status_url, timeout=HTTP_TIMEOUT).json()
            now = time.monotonic()
            for queue, depth in status["queues"].items():
                if depth["visible"] or depth["in_flight"]:
                    last_busy[queue] = now
            if status["open_batches"]:
                last_busy["TuimprentaQueue"] = now
            if status["idle"] or now > deadline:
                return status, last_busy
            time.sleep(0.2)  # a poll interval, not a synchronisation: the loop waits on the status itself


def demo_log_path(root: Path) -> Path:
    """A new, empty log file for this run's function logs: `.local/demo-<time>-<pid>-<n>.log`, never shared."""
    log_dir = root / ".local"
    log_dir.mkdir(exist_ok=True)
    stem = f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    for attempt in range(1000):
        path = log_dir / f"{stem}-{attempt}.log"
        try:
            path.touch(exist_ok=False)  # exclusive: two runs can never be handed the same file
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free demo log name in {log_dir}")


def run_demo(root: Path, events_dir: Path, port: int) -> int:
    """Run the demo; 0 only if every routed event was accepted and sits on its queue."""
    log_path = demo_log_path(root)
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
        sending_started = time.monotonic()
        sends = [(e, False) for e in envelopes] + ([(envelopes[0], True)] if envelopes else [])
        for envelope, resend in sends:
            destination = routing.get(envelope["type"])
            (delivery,) = peer.deliver(envelope)
            answer = delivery.response
            result = str(answer.get("status", "-")) if isinstance(answer, dict) else "-"
            expected = "ignored" if destination is None else ("duplicate" if resend else "accepted")
            if expected == "accepted" and result == "duplicate" and delivery.attempts > 1:
                # An earlier attempt was accepted but its answer was lost (a timeout), so BuildNexion sent it again.
                expected = "duplicate"
            queue = DESTINATION_QUEUES[destination] if destination else "-"
            label = ("(again) " if resend else "") + envelope["id"]
            tries = f" (after {delivery.attempts} attempts)" if delivery.attempts > 1 else ""
            print(f"{label:38} {envelope['type']:24} {delivery.status or '-':>4}  {result:9} {queue}{tries}")
            if delivery.status != 200 or result != expected:
                failures.append(f"{envelope['id']}: expected 200 {expected}, got {delivery.status} {result}")
            if destination and not resend:
                expected_on_queue[DESTINATION_QUEUES[destination]] += 1

        status, last_busy = wait_until_idle(f"{stack.url}/local/status", IDLE_TIMEOUT_SECONDS)
        consumed = stack.consumed_queues()
        letters = drain_dead_letters(stack)
        print(
            f"\n{'destination':15} {'sent':>4} {'synced':>6} {'failed':>6} {'refused':>7} {'dead-lettered':>13} "
            f"{'API calls':>9} {'seconds':>7}  worker"
        )
        notes: list[str] = []
        for destination, queue in DESTINATION_QUEUES.items():
            depth = status["queues"][queue]
            sent = [e for e in envelopes if routing.get(e["type"]) == destination]
            target = stack.peers.get(destination)
            if queue not in consumed or target is None:
                print(
                    f"{destination:15} {len(sent):>4} {'-':>6} {'-':>6} {'-':>7} {depth['dlq']:>13} {'-':>9} {'-':>7}  "
                    f"not wired yet ({depth['visible']} waiting on {queue})"
                )
                if depth["visible"] != expected_on_queue[queue]:
                    failures.append(f"{queue}: expected {expected_on_queue[queue]} messages, found {depth['visible']}")
                if depth["dlq"]:
                    failures.append(f"{queue}: {depth['dlq']} message(s) dead-lettered")
                continue
            outcome = judge(target, peer, sent, [letter for letter in letters if letter.destination == destination])
            seconds = last_busy.get(queue, sending_started) - sending_started
            print(
                f"{destination:15} {len(sent):>4} {outcome.check.synced:>6} {outcome.check.failed:>6} "
                f"{len(outcome.refused):>7} {outcome.dead_lettered:>13} {sum(target.calls.values()):>9} "
                f"{seconds:>7.1f}  consuming"
            )
            notes.extend(f"{destination} {line}" for line in outcome.notes)
            failures.extend(f"{destination}: {problem}" for problem in outcome.problems)
            if depth["visible"] or depth["in_flight"]:
                failures.append(f"{queue}: {depth['visible'] + depth['in_flight']} message(s) not processed")
        if notes:
            print("\nrefused for good by a sandbox's injected faults (LOCAL_FAULTS), and dead-lettered as due:")
            for note in notes:
                print(f"  {note}")
        injected = {name: dict(sorted(p.faults.injected.items())) for name, p in sorted(stack.peers.items())}
        if any(injected.values()):
            print("\nfaults injected (LOCAL_FAULTS): " + "; ".join(f"{n} {f}" for n, f in injected.items() if f))
        print(
            f"\nBuildNexion API calls: {sum(peer.calls.values())}; "
            f"open tuimprenta batches: {status['open_batches']}; idle: {status['idle']}; "
            f"{time.monotonic() - started:.1f} s in all"
        )
        if not status["idle"]:
            failures.append(f"the stack was not idle after {IDLE_TIMEOUT_SECONDS} s")
    if failures:
        print("\nDEMO FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(
        "\nevery routed event was accepted once and every wired destination holds what BuildNexion sent"
        + (", but for the documents a sandbox refused for good (dead-lettered, above)" if notes else "")
    )
    return 0


@dataclass
class Outcome:
    """One destination's part of the demo: its check, the documents its faults refused, what failed."""

    check: DemoCheck
    refused: dict[str, str] = field(default_factory=dict)  # object id -> why the sandbox refused it for good
    dead_lettered: int = 0
    notes: list[str] = field(default_factory=list)  # one line per refused document, with its letter's reason
    problems: list[str] = field(default_factory=list)


def judge(
    target: DestinationPeer, buildnexion: BuildNexionPeer, sent: Sequence[Mapping[str, Any]], letters: Sequence[Letter]
) -> Outcome:
    """Check what `target` holds against what BuildNexion sent, honest about the faults that played.

    A document the sandbox refused for good (an injected permanent error, `FaultPlan.refused`) is not
    expected at the destination but on its dead-letter queue, with a reason. Every other document must have
    arrived; any other letter must be one the destination's check expected to fail. The check reads
    BuildNexion with its faults suspended: they were for the stack, not for the demo's own reading.
    """
    refused = {oid: why for oid, why in target.faults.refused.items() if oid in {_object_id(e) for e in sent}}
    with buildnexion.faults_suspended():
        check = target.demo_check(buildnexion, [e for e in sent if _object_id(e) not in refused])
    outcome = Outcome(check, refused, dead_lettered=len(letters))
    outcome.problems.extend(check.problems)
    explained = [letter for letter in letters if letter.source_id in refused]
    for object_id, why in sorted(refused.items()):
        mine = [letter for letter in explained if letter.source_id == object_id]
        if not mine:
            outcome.problems.append(f"{object_id}: refused for good ({why}) but not dead-lettered")
        elif not all(letter.reason for letter in mine):
            outcome.problems.append(f"{object_id}: refused for good ({why}); dead-lettered without a reason")
        else:
            outcome.notes.append(f"{object_id}: {why}; dead-lettered: {mine[0].reason}")
    others = [letter for letter in letters if letter.source_id not in refused]
    if len(others) != check.failed:
        outcome.problems.append(f"{len(others)} dead-lettered, {check.failed} expected to fail")
        outcome.problems.extend(
            f"dead-lettered {letter.source_id}: {letter.reason or 'no reason given'}" for letter in others
        )
    return outcome


def _object_id(envelope: Mapping[str, Any]) -> str:
    return str(envelope["data"]["object"]["id"])
