"""The local HTTP server (gateway and sandbox peers) against bad requests, over raw sockets.

Each bad request gets one JSON answer, as API Gateway would give it, and the connection is closed,
so no leftover bytes are ever read as a second request; nothing prints a traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sandbox.httpserver import AccessRecord, LocalHttpServer, Reply, Request, Router

MAX_BODY = 1024


def _echo(request: Request, _params: dict[str, str]) -> Reply:
    return Reply.json(200, {"length": len(request.body), "body": request.body.decode("latin-1")})


def _boom(_request: Request, _params: dict[str, str]) -> Reply:
    raise RuntimeError("handler bug")


@pytest.fixture
def server() -> Iterator[LocalHttpServer]:
    router = Router()
    router.add("POST", "/echo", _echo)
    router.add("GET", "/echo", _echo)
    router.add("POST", "/boom", _boom)
    served = LocalHttpServer(router, max_body=MAX_BODY, read_timeout=5)
    served.start()
    yield served
    served.stop()


def exchange(server: LocalHttpServer, raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send `raw`, read until the server closes; every response found, in order."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        length = int(headers["content-length"])
        responses.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


def post(path: str, extra_headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra_headers}\r\n".encode() + body


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Content-Length: abc\r\n", 400),
        ("Content-Length: -5\r\n", 400),
        ("Content-Length: +5\r\n", 400),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: gzip\r\n", 501),
        ("", 411),
        (f"Content-Length: {MAX_BODY + 1}\r\n", 413),
    ],
)
def test_a_bad_length_gets_one_json_answer_and_the_connection_closes(
    server: LocalHttpServer, headers: str, status: int
) -> None:
    responses = exchange(server, post("/echo", headers, b'{"a": 1}GET /echo HTTP/1.1\r\n\r\n'))
    assert [r[0] for r in responses] == [status]  # the leftover bytes were not served as a request
    _, response_headers, body = responses[0]
    assert response_headers["content-type"] == "application/json"
    assert response_headers["connection"] == "close"
    assert json.loads(body)["message"]


def test_a_chunked_body_is_read_whole(server: LocalHttpServer) -> None:
    chunked = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"
    raw = post("/echo", "Transfer-Encoding: chunked\r\n", chunked) + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
    responses = exchange(server, raw)
    assert [r[0] for r in responses] == [200, 200]  # keep-alive: the next request is served after it
    assert json.loads(responses[0][2]) == {"length": 24, "body": "Wikipedia in \r\n\r\nchunks."}
    assert json.loads(responses[1][2])["length"] == 0


@pytest.mark.parametrize(
    "chunked",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"-3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcd\r\n0\r\n\r\n", b"3\r\nab"],
)
def test_a_malformed_chunked_body_is_400(server: LocalHttpServer, chunked: bytes) -> None:
    responses = exchange(server, post("/echo", "Transfer-Encoding: chunked\r\n", chunked))
    assert [r[0] for r in responses] == [400]


def test_a_chunked_body_over_the_limit_is_413(server: LocalHttpServer) -> None:
    chunk = b"x" * 600
    chunked = b"258\r\n" + chunk + b"\r\n258\r\n" + chunk + b"\r\n0\r\n\r\n"
    responses = exchange(server, post("/echo", "Transfer-Encoding: chunked\r\n", chunked))
    assert [r[0] for r in responses] == [413]


def test_a_malformed_request_line_gets_json_not_html(server: LocalHttpServer) -> None:
    responses = exchange(server, b"NONSENSE\r\n\r\n")
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert b"<html" not in body.lower()


def test_a_failing_handler_is_a_500_without_traceback(
    server: LocalHttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    responses = exchange(server, post("/boom", "Content-Length: 0\r\nConnection: close\r\n"))
    assert [r[0] for r in responses] == [500]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "RuntimeError: handler bug" in err


def test_a_connection_close_request_is_still_served(server: LocalHttpServer) -> None:
    responses = exchange(server, post("/echo", "Content-Length: 2\r\nConnection: close\r\n", b"hi"))
    assert [r[0] for r in responses] == [200]
    assert json.loads(responses[0][2])["body"] == "hi"


def test_stop_answers_the_request_in_flight_and_closes_idle_connections() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(_request: Request, _params: dict[str, str]) -> Reply:
        entered.set()
        release.wait(5)
        # Answer only once the server stopped accepting: stop() must wait for this answer.
        deadline = time.monotonic() + 5
        while served._thread is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # poll interval of a bounded wait on the server's state
        return Reply.json(200, {"done": True})

    router = Router()
    router.add("GET", "/slow", slow)
    served = LocalHttpServer(router, read_timeout=30)
    served.start()
    idle = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert entered.wait(5)
    stopper = threading.Thread(target=served.stop)
    stopper.start()
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    answer = busy.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    assert idle.recv(1) == b""  # closed cleanly by the server, not left hanging
    idle.close()
    busy.close()


def test_the_access_log_sees_every_answer() -> None:
    records: list[AccessRecord] = []
    router = Router()
    router.add("POST", "/echo", _echo)
    served = LocalHttpServer(router, access_log=records.append)
    served.start()
    try:
        exchange(served, post("/echo", "Content-Length: 2\r\nConnection: close\r\n", b"hi"))
        exchange(served, post("/echo", "Content-Length: x\r\n"))
    finally:
        served.stop()
    assert [(r.request.method, r.request.path, r.reply.status) for r in records] == [
        ("POST", "/echo", 200),
        ("POST", "/echo", 400),
    ]
    assert all(r.milliseconds >= 0 for r in records)
