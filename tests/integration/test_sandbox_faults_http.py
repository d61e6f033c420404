"""The fault plan over real sockets: a hang outlasts the client's timeout and is dropped; the effect stays."""

from __future__ import annotations

import time

import pytest
import requests

from sandbox.faults import FaultSettings
from sandbox.httpserver import LocalHttpServer, Reply, Request, Router


def test_a_hang_after_the_effect_times_the_client_out_and_the_write_stays_made() -> None:
    made: list[bytes] = []

    def create(request: Request, _params: dict[str, str]) -> Reply:
        made.append(request.body)
        return Reply.json(201, {"id": len(made)})

    router = Router()
    router.add("POST", "/things", create)
    plan = FaultSettings.parse("hang=1,after_effect=1,seed=1,hang_seconds=30").plan("quipu")
    server = LocalHttpServer(plan.wrap(router))
    server.start()
    try:
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            requests.post(f"{server.url}/things", data=b"{}", timeout=(3.05, 0.5))
        assert made == [b"{}"]
        assert plan.injected["hang after effect"] == 1
    finally:
        server.stop()
    # The peer noticed the client giving up (and the stop): it did not hold the connection for 30 s.
    assert time.monotonic() - started < 10
