"""Unit tests run in process only: every socket is refused (pytest-socket), so reaching out fails loudly."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_sockets(socket_disabled: None) -> None:
    """pytest-socket's `socket_disabled` for every unit test: socket.socket raises SocketBlockedError."""
