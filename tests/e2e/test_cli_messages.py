"""`invoice-bridge` mistakes a newcomer makes: one line that says what to do, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from invoice_bridge.buildnexion.signature import signature_header
from invoice_bridge.tuimprenta.webhook import compute_signature
from tests.conftest import ROOT
from tests.e2e.cli import assert_one_line_error, clean_environment, free_port, run_cli

pytestmark = pytest.mark.e2e

EVENT = "events/buildnexion/01_invoice_created.json"


def test_send_a_missing_file() -> None:
    assert_one_line_error(run_cli("local", "send", "events/nope.json"), "cannot read events/nope.json")


def test_send_a_folder() -> None:
    assert_one_line_error(run_cli("local", "send", "events/buildnexion"), "is a folder", "events/buildnexion/*.json")


def test_send_to_a_url_without_scheme() -> None:
    result = run_cli("local", "send", EVENT, "--url", "127.0.0.1:3000/webhooks/buildnexion")
    assert_one_line_error(result, "--url must start with http://")


def test_send_when_nothing_listens() -> None:
    port = free_port()
    result = run_cli("local", "send", EVENT, env={"LOCAL_PORT": str(port)})
    assert_one_line_error(result, f"nothing answers at http://127.0.0.1:{port}/webhooks/buildnexion", "local serve")


def test_a_webhook_secret_of_only_commas_is_named() -> None:
    result = run_cli("local", "send", EVENT, env={"BUILDNEXION_WEBHOOK_SECRET": ","})
    assert_one_line_error(result, "BUILDNEXION_WEBHOOK_SECRET", "at least one secret")


def test_serve_with_a_root_that_holds_no_template() -> None:
    result = run_cli("--root", "/nonexistent/folder", "local", "serve", "--port", "0")
    assert_one_line_error(result, "no template.yaml in /nonexistent/folder", "--root")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_with_a_port_out_of_range(port: str) -> None:
    result = run_cli("local", "serve", "--port", port)
    assert result.returncode == 2
    assert_one_line_error(result, "--port", "--help")


def test_an_unknown_parameter_override_lists_the_known_ones() -> None:
    result = run_cli("local", "serve", "--port", "0", "--parameter-overrides", "Routing=x")
    assert_one_line_error(result, "no parameter 'Routing'", "RoutingTable")


def test_a_missing_subcommand_names_the_choices() -> None:
    top = run_cli()
    assert_one_line_error(top, "choose a command: local")
    local = run_cli("local")
    assert_one_line_error(local, "choose a command: serve, wait, send, sign, demo or inspect")
    assert "local_command" not in local.stderr


def test_help_shows_defaults_and_describes_every_option() -> None:
    serve = run_cli("local", "serve", "--help")
    assert serve.returncode == 0
    assert "(default: 3000)" in serve.stdout
    for option in ("--port", "--quiet", "--parameter-overrides"):
        assert option in serve.stdout
    send = run_cli("local", "send", "--help")
    for option in ("--as", "--url", "--secret", "--fresh-id"):
        assert option in send.stdout
    assert "(default: buildnexion)" in send.stdout


def test_sign_prints_the_header_for_curl() -> None:
    body = (ROOT / EVENT).read_bytes()
    result = run_cli("local", "sign", EVENT, "--secret", "whsec_a", "--timestamp", "1763719200")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"BuildNexion-Signature: {signature_header(['whsec_a'], 1763719200, body)}\n"
    tui = "events/tuimprenta/invoice_issued.json"
    result = run_cli("local", "sign", tui, "--as", "tuimprenta", "--secret", "tui_s")
    assert result.stdout == f"X-Tuimprenta-Signature: {compute_signature('tui_s', (ROOT / tui).read_bytes())}\n"
    assert_one_line_error(run_cli("local", "sign", tui, "--as", "tuimprenta", "--timestamp", "1"), "no timestamp")


def test_wait_gives_up_when_nothing_answers() -> None:
    started = time.monotonic()
    result = run_cli("local", "wait", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    assert_one_line_error(result, "was not answering after 0.5 s", "local serve")


def test_wait_stops_as_soon_as_the_serve_process_has_exited() -> None:
    gone = subprocess.Popen(["true"], env=clean_environment())
    gone.wait()
    result = run_cli("local", "wait", "--url", f"http://127.0.0.1:{free_port()}", "--pid", str(gone.pid))
    assert_one_line_error(result, f"pid {gone.pid}) has exited")


def test_serve_on_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("local", "serve", "--port", str(port), timeout=120)
    assert_one_line_error(result, f"port {port} is in use", "--port")


def test_demo_with_an_events_folder_that_does_not_exist() -> None:
    assert_one_line_error(run_cli("local", "demo", "--events", "events/nowhere"), "events/nowhere is not a folder")
