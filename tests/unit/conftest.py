"""Unit tests run in process only: every socket is refused (pytest-socket), so reaching out fails loudly."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_sockets(socket_disabled: None) -> None:
    """pytest-socket's `socket_disabled` for every unit test: socket.socket raises SocketBlockedError."""


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process runs in a zone 4 hours behind UTC, so a naive or local time shows in the result."""
    monkeypatch.setenv("TZ", "America/Caracas")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
