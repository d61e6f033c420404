"""`invoice-bridge local serve` as another tool drives it: a process, signed webhooks over HTTP, /local/status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from invoice_bridge.config import DEFAULT_ROUTING
from invoice_bridge.tuimprenta.webhook import compute_signature
from sandbox.buildnexion import BuildNexionPeer, sign_and_post
from sandbox.httpserver import LocalHttpServer, Reply, Router
from tests.conftest import BUILDNEXION_EVENTS, ROOT, load_event
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

SECRET = "whsec_e2e_only_abcdef"
TUI_SECRET = "tui_e2e_only"
# Queues no worker consumes yet: their events stay visible. (FacturaDirectaQueue has its exporter, which
# reads each purchase order from BuildNexion: tests/e2e/test_facturadirecta_stack.py drives it.)
QUEUES = {"quipu": "QuipuQueue", "tuimprenta": "TuimprentaQueue"}
TIMEOUT = (3.05, 20)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def status(self) -> dict[str, object]:
        response = requests.get(f"{self.url}/local/status", timeout=TIMEOUT)
        assert response.status_code == 200
        document: dict[str, object] = response.json()
        return document

    def output(self) -> str:
        """What the stack wrote so far (its stderr: function logs and the stack's own lines)."""
        return self.log.read_text(encoding="utf-8", errors="replace")


# Poison for the served process: the stack must strip AWS_* before handing the environment to the handlers,
# or they would connect to these instead of the emulated AWS and every webhook would fail.
HOSTILE_AWS = {"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9"}


def serve(log: Path) -> Served:
    """`invoice-bridge local serve --port 0` as a process, its stderr kept in `log`."""
    env = {**os.environ, **HOSTILE_AWS, "BUILDNEXION_WEBHOOK_SECRET": SECRET, "TUIMPRENTA_WEBHOOK_SECRET": TUI_SECRET}
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "invoice-bridge"), "local", "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=env,
            cwd=ROOT,
        )
    assert process.stdout is not None
    first_line = process.stdout.readline()  # the stack prints its address once it is ready
    served = Served(first_line.rsplit(" ", 1)[-1].strip(), process, log)
    assert first_line.startswith("invoice-bridge local stack listening on "), first_line + served.output()
    return served


def stop(served: Served) -> int:
    """SIGTERM, and the exit code (killed after 30 s if it does not stop)."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            return served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
            raise
    return served.process.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve(tmp_path_factory.mktemp("serve") / "stack.log")
    yield running
    stop(running)


def post(served: Served, body: bytes, secrets: list[str] | None = None) -> requests.Response:
    return sign_and_post(f"{served.url}/webhooks/buildnexion", body, [SECRET] if secrets is None else secrets)


def test_status_has_exactly_the_documented_shape(served: Served) -> None:
    status = served.status()
    assert set(status) == {"idle", "queues", "open_batches"}
    assert status["idle"] is True  # nothing sent yet
    assert status["open_batches"] == 0
    queues = status["queues"]
    assert isinstance(queues, dict)
    assert set(queues) == {*QUEUES.values(), "FacturaDirectaQueue"}
    for depth in queues.values():
        assert set(depth) == {"visible", "in_flight", "dlq"}
        assert all(isinstance(n, int) for n in depth.values())


def test_signed_webhooks_land_on_their_queues_once(served: Served) -> None:
    before = served.status()["queues"]
    assert isinstance(before, dict)
    expected = {queue: before[queue]["visible"] for queue in QUEUES.values()}
    for path in BUILDNEXION_EVENTS:
        envelope = load_event(f"buildnexion/{path.name}")
        response = post(served, path.read_bytes())
        assert response.status_code == 200, response.text
        destination = DEFAULT_ROUTING.get(envelope["type"])
        assert response.json()["status"] == ("accepted" if destination else "ignored")
        if destination and destination.value in QUEUES:
            expected[QUEUES[destination.value]] += 1
    # A redelivery of every event changes nothing: routed ones are duplicates, the others still ignored.
    for path in BUILDNEXION_EVENTS:
        routed = load_event(f"buildnexion/{path.name}")["type"] in DEFAULT_ROUTING
        assert post(served, path.read_bytes()).json()["status"] == ("duplicate" if routed else "ignored")

    expected["TuimprentaQueue"] = 0  # drained by the tuimprenta poller, which issues the sales invoices
    status = wait_for(lambda: s if (s := served.status())["idle"] else None, 60, "the stack to be idle")
    queues = status["queues"]
    assert isinstance(queues, dict)
    # A queue a wired worker consumes is drained (QuipuQueue: the sandbox Quipu holds the invoices).
    expected["QuipuQueue"] = 0
    assert {queue: queues[queue]["visible"] for queue in QUEUES.values()} == expected
    assert all(queues[q]["dlq"] == 0 and queues[q]["in_flight"] == 0 for q in QUEUES.values())


def test_unsigned_or_wrongly_signed_webhooks_are_refused(served: Served) -> None:
    body = (BUILDNEXION_EVENTS[0]).read_bytes()
    unsigned = requests.post(f"{served.url}/webhooks/buildnexion", data=body, timeout=TIMEOUT)
    assert (unsigned.status_code, unsigned.json()) == (401, {"message": "Unauthorized"})
    assert post(served, body, secrets=["whsec_not_ours"]).status_code == 401


def test_malformed_event_is_400_naming_the_field(served: Served) -> None:
    response = post(served, json.dumps({"id": "evt_e2e_bad", "type": "invoice.created", "created": 1}).encode())
    assert response.status_code == 400
    assert response.json()["field"] == "data"


def test_tuimprenta_webhook_is_recorded(served: Served) -> None:
    # Dated now: the receiver refuses a callback created more than a day ago.
    event = {**load_event("tuimprenta/batch_completed.json"), "created_at": datetime.now(UTC).isoformat()}
    body = json.dumps(event).encode()
    headers = {"X-Tuimprenta-Signature": compute_signature(TUI_SECRET, body), "Content-Type": "application/json"}
    response = requests.post(f"{served.url}/webhooks/tuimprenta", data=body, headers=headers, timeout=TIMEOUT)
    assert (response.status_code, response.json()["status"]) == (200, "recorded")


def test_unknown_route_is_404(served: Served) -> None:
    assert requests.post(f"{served.url}/webhooks/holded", data=b"{}", timeout=TIMEOUT).status_code == 404


def test_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Given a stack of its own (the shared one keeps serving the other tests, whatever their order)
    own = serve(tmp_path / "stack.log")
    assert own.status()["idle"] is True
    # When it gets SIGTERM, then it exits 0, says so, and its port no longer answers
    assert stop(own) == 0
    assert own.process.stdout is not None
    assert own.process.stdout.read().splitlines()[-1] == "stopping"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{own.url}/local/status", timeout=TIMEOUT)


def test_sandbox_buildnexion_records_an_answer_that_is_not_json() -> None:
    # Given an endpoint (say, a proxy) that answers 502 in plain text
    router = Router()
    router.add("POST", "/hook", lambda request, params: Reply(502, b"Bad Gateway", {"Content-Type": "text/plain"}))
    endpoint = LocalHttpServer(router)
    endpoint.start()
    peer = BuildNexionPeer("bn_key", [SECRET], max_attempts=2)
    try:
        peer.subscribe(f"{endpoint.url}/hook", ["invoice.created"])
        # When the sandbox BuildNexion delivers an event there
        (delivery,) = peer.deliver(load_event("buildnexion/01_invoice_created.json"))
    finally:
        endpoint.stop()
        peer.stop()
    # Then it retried the 5xx and kept the final answer instead of failing on it
    assert (delivery.status, delivery.attempts, delivery.response) == (502, 2, "Bad Gateway")


def test_a_server_that_never_started_stops_at_once() -> None:
    LocalHttpServer(Router()).stop()  # shutdown() on a server never started used to wait forever
