"""`invoice-bridge local send`: posts signed files and exits non-zero when any delivery is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, verify_signature
from invoice_bridge.errors import SignatureError
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
