"""The test harness itself: unit tests cannot open sockets, and no test sees the caller's AWS or Powertools setup."""

from __future__ import annotations

import os
import socket

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import TEST_ENVIRONMENT


def test_unit_tests_cannot_open_a_socket() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_the_environment_is_exactly_the_test_one() -> None:
    seen = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "POWERTOOLS_", "BOTO_"))}
    assert seen == TEST_ENVIRONMENT
    assert "ROUTING_TABLE" not in os.environ
