"""`invoice-bridge local send`: posts signed files and exits non-zero when any delivery is refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, verify_signature
from invoice_bridge.errors import SignatureError
from sandbox.buildnexion import DEFAULT_API_KEY, BuildNexionPeer
from sandbox.cli import main
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router
from tests.conftest import BUILDNEXION_EVENTS

SECRET = "whsec_cli_only"


@pytest.fixture
def endpoint() -> Iterator[str]:
    """Answers 200 to a correctly signed body and 401 to anything else, like the receiver."""

    def hook(request: Request, _params: dict[str, str]) -> Reply:
        try:
            verify_signature(request.header(SIGNATURE_HEADER), request.body, [SECRET], now=time.time())
        except SignatureError:
            return Reply.json(401, {"message": "Unauthorized"})
        return Reply.json(200, {"status": "accepted"})

    router = Router()
    router.add("POST", "/hook", hook)
    server = LocalHttpServer(router)
    server.start()
    yield f"{server.url}/hook"
    server.stop()


def send(url: str, *files: Path) -> int:
    return main(["local", "send", *map(str, files), "--url", url])


def test_exit_0_when_every_file_is_accepted(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDNEXION_WEBHOOK_SECRET", SECRET)
    assert send(endpoint, *BUILDNEXION_EVENTS[:2]) == 0


def test_exit_1_when_any_file_is_refused(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDNEXION_WEBHOOK_SECRET", "whsec_not_the_receivers")
    assert send(endpoint, BUILDNEXION_EVENTS[0]) == 1


@pytest.fixture
def local_stack(endpoint: str) -> Iterator[tuple[str, BuildNexionPeer]]:
    """A stand-in for `local serve`: its /local/outputs names a sandbox BuildNexion; /hook is the receiver."""
    peer = BuildNexionPeer(DEFAULT_API_KEY, [SECRET])
    peer.start()
    router = Router()
    router.add(
        "GET", "/local/outputs", lambda _r, _p: Reply.json(200, {"outputs": {"BuildNexionApiUrl": peer.base_url}})
    )
    router.add("POST", "/hook", lambda _r, _p: Reply.json(200, {"status": "accepted"}))
    server = LocalHttpServer(router)
    server.start()
    yield f"{server.url}/hook", peer
    server.stop()
    peer.stop()


def test_an_object_the_sandbox_buildnexion_refuses_fails_the_send_naming_the_field(
    local_stack: tuple[str, BuildNexionPeer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BUILDNEXION_WEBHOOK_SECRET", SECRET)
    url, peer = local_stack
    good = json.loads(BUILDNEXION_EVENTS[0].read_text(encoding="utf-8"))
    bad = json.loads(json.dumps(good))
    bad["data"]["object"]["id"] = "inv_cli_refused"
    bad["data"]["object"]["lines"][0]["unit_amount"] = 84.5  # euros as a float, not integer cents
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad), encoding="utf-8")

    assert send(url, BUILDNEXION_EVENTS[0]) == 0
    assert [o["id"] for o in peer.objects_of("invoice")] == [good["data"]["object"]["id"]]
    capsys.readouterr()

    assert send(url, bad_file, BUILDNEXION_EVENTS[0]) == 1
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith(f"{bad_file}: the sandbox BuildNexion refused to hold its object (400): ")
    assert "lines[0].unit_amount: must be integer cents" in line
    assert "inv_cli_refused" not in {o["id"] for o in peer.objects_of("invoice")}
    assert len(out.splitlines()) == 2  # both events were still posted, and each answer is printed
