"""`invoice-bridge local serve` and its helpers as a newcomer uses them: processes, HTTP and raw sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from invoice_bridge.buildnexion.signature import signature_header
from tests.conftest import ROOT
from tests.e2e.cli import CLI, clean_environment, run_cli
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

SECRET = "whsec_first_hour"
TUI_SECRET = "tui_first_hour"
ENV = {"BUILDNEXION_WEBHOOK_SECRET": SECRET, "TUIMPRENTA_WEBHOOK_SECRET": TUI_SECRET}
INVOICE = "events/buildnexion/01_invoice_created.json"
PURCHASE_ORDER = next(p.name for p in sorted((ROOT / "events" / "buildnexion").glob("*purchase_order_created*")))
TUI_EVENT = "events/tuimprenta/invoice_issued.json"
START_TIMEOUT = 90


@dataclass
class Serve:
    process: subprocess.Popen[str]
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def stop(self, signum: int = signal.SIGTERM) -> float:
        """Signal the process group, as a terminal's Ctrl-C does; seconds until the process exited."""
        started = time.monotonic()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            self.process.wait(timeout=30)
        return time.monotonic() - started


def start_serve(tmp_path: Path, *args: str) -> Serve:
    stderr_path = tmp_path / "serve.err"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [CLI, "local", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_environment(ENV),
            cwd=ROOT,
            start_new_session=True,  # its own process group, as a terminal gives a foreground command
        )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("invoice-bridge local stack listening on "), first + stderr_path.read_text()
    lines = [first]
    while not lines[-1].startswith("ready"):
        lines.append(process.stdout.readline())
        assert lines[-1], "".join(lines)
    return Serve(process, first.rsplit(" ", 1)[1].strip(), stderr_path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = start_serve(tmp_path_factory.mktemp("serve"))
    yield serve
    serve.stop()


def send(serve: Serve, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("local", "send", *args, env={**ENV, "LOCAL_PORT": serve.url.rsplit(":", 1)[1]})


def answers(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return [json.loads(line.split(": ", 1)[1].split(" ", 1)[1]) for line in result.stdout.splitlines()]


def test_wait_returns_once_the_stack_answers_and_once_it_is_idle(served: Serve) -> None:
    assert run_cli("local", "wait", "--url", served.url, "--timeout", "30").returncode == 0
    idle = run_cli("local", "wait", "--url", served.url, "--idle", "--timeout", "30")
    assert idle.returncode == 0
    assert "is idle" in idle.stdout


def test_fresh_id_makes_a_sample_new_again(served: Serve) -> None:
    first, second = send(served, "--fresh-id", INVOICE), send(served, "--fresh-id", INVOICE)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    (a,), (b,) = answers(first), answers(second)
    assert a["status"] == b["status"] == "accepted"
    assert a["event_id"] != b["event_id"]
    assert a["event_id"].startswith("evt_")


def test_send_as_tuimprenta_reaches_the_tuimprenta_route(served: Serve) -> None:
    fresh = send(served, "--as", "tuimprenta", "--fresh-id", TUI_EVENT)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert answers(fresh)[0]["status"] == "recorded"
    wrong = send(served, "--as", "tuimprenta", "--secret", "not-the-secret", TUI_EVENT)
    assert wrong.returncode == 1  # a 4xx answer still fails the command
    assert " 401 " in wrong.stdout


def test_a_header_from_sign_is_accepted_by_curl_style_clients(served: Serve) -> None:
    body = (ROOT / INVOICE).read_bytes().replace(b'"evt_', b'"evt_signed_', 1)
    event_file = served.stderr_path.parent / "signed.json"
    event_file.write_bytes(body)
    header = run_cli("local", "sign", str(event_file), env=ENV).stdout.strip()
    name, value = header.split(": ", 1)
    response = requests.post(
        f"{served.url}/webhooks/buildnexion",
        data=body,
        headers={name: value, "Content-Type": "application/json"},
        timeout=(3.05, 20),
    )
    assert response.status_code == 200, response.text
    stale = run_cli("local", "sign", str(event_file), "--timestamp", "1000000000", env=ENV).stdout.strip()
    response = requests.post(
        f"{served.url}/webhooks/buildnexion",
        data=body,
        headers={stale.split(": ", 1)[0]: stale.split(": ", 1)[1], "Content-Type": "application/json"},
        timeout=(3.05, 20),
    )
    assert response.status_code == 401


def test_the_access_log_has_one_line_per_request(served: Serve) -> None:
    result = send(served, "--fresh-id", INVOICE)
    event_id = answers(result)[0]["event_id"]
    line = wait_for(
        lambda: next((ln for ln in served.stderr().splitlines() if ln.endswith(event_id)), None), 10, "access line"
    )
    parts = line.split()
    assert parts[:4] == ["[local-gateway]", "POST", "/webhooks/buildnexion", "200"]
    assert parts[4].isdigit()
    assert parts[5] == "ms"


def raw(serve: Serve, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", int(serve.url.rsplit(":", 1)[1])), timeout=20) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def test_the_gateway_answers_bad_lengths_like_api_gateway(served: Serve) -> None:
    for length, status in (("-1", b"400"), ("ten", b"400")):
        data = raw(
            served, f"POST /webhooks/buildnexion HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
        )
        assert data.startswith(b"HTTP/1.1 " + status), data
        assert data.count(b"HTTP/1.1 ") == 1  # the leftover bytes were not read as a second request
        assert b'"message"' in data
    data = raw(served, b"POST /webhooks/buildnexion HTTP/1.1\r\nHost: x\r\n\r\n{}")
    assert data.startswith(b"HTTP/1.1 411"), data


def test_a_chunked_webhook_is_accepted(served: Serve) -> None:
    body = (ROOT / INVOICE).read_bytes().replace(b'"evt_', b'"evt_chunked_', 1)
    signature = signature_header([SECRET], int(time.time()), body)
    half = len(body) // 2
    chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:half], body[half:]))
    request = (
        b"POST /webhooks/buildnexion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        + f"BuildNexion-Signature: {signature}\r\n\r\n".encode()
        + chunked
        + b"0\r\n\r\n"
    )
    data = raw(served, request)
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b'"accepted"' in data


def test_quiet_and_parameter_overrides(tmp_path: Path) -> None:
    routing = json.dumps({"invoice.created": "quipu"})
    serve = start_serve(tmp_path, "--quiet", "--parameter-overrides", f"RoutingTable={routing}", "LogLevel=ERROR")
    try:
        routed, unrouted = (
            send(serve, "--fresh-id", INVOICE),
            send(serve, "--fresh-id", f"events/buildnexion/{PURCHASE_ORDER}"),
        )
        assert answers(routed)[0]["status"] == "accepted"
        assert answers(unrouted)[0]["status"] == "ignored"  # purchase orders are not in the overridden table
    finally:
        serve.stop()
    assert "[local-gateway]" not in serve.stderr()


def test_ctrl_c_stops_the_stack_once_quietly_and_fast(tmp_path: Path) -> None:
    serve = start_serve(tmp_path)
    assert send(serve, "--fresh-id", INVOICE).returncode == 0  # a warm function instance exists now
    seconds = serve.stop(signal.SIGINT)  # to the whole process group, as the terminal sends it
    assert serve.process.returncode == 0
    assert serve.process.stdout is not None
    assert serve.process.stdout.read().strip() == "stopping"
    err = serve.stderr()
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert seconds < 1, f"stopping took {seconds:.1f} s"
