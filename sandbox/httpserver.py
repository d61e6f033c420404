"""A small threaded HTTP server with a router, shared by the local gateway and the sandbox peers."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from sandbox.console import stderr_line


@dataclass(frozen=True)
class Request:
    """One HTTP request, read whole."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes
    client_ip: str

    @property
    def query(self) -> dict[str, list[str]]:
        """Parsed query string."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)


@dataclass
class Reply:
    """One HTTP response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
        """A JSON response."""
        return cls(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


RouteHandler = Callable[[Request, dict[str, str]], Reply]


class Dispatcher(Protocol):
    """What LocalHttpServer serves: a Router, or one wrapped (sandbox/faults.py)."""

    def dispatch(self, request: Request) -> Reply:
        """The reply to one request."""


class Router:
    """Routes by method and a path template with `{name}` segments."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler]] = []

    def add(self, method: str, template: str, handler: RouteHandler) -> None:
        """Register `handler` for `method template`."""
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler))

    def dispatch(self, request: Request) -> Reply:
        """The matching handler's reply, or 404/405."""
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                return handler(request, match.groupdict())
        if path_matched:
            return Reply.json(405, {"message": "Method Not Allowed"})
        return Reply.json(404, {"message": "Not Found"})


@dataclass(frozen=True)
class AccessRecord:
    """One answered request, for an access log."""

    request: Request
    reply: Reply
    milliseconds: float


AccessLog = Callable[[AccessRecord], None]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REASONS = {400: "Bad Request", 411: "Length Required", 413: "Request Entity Too Large", 501: "Not Implemented"}


class DropConnection(Exception):
    """Raised by a route handler: answer nothing; hold the connection until the client gives up (at most
    `linger` seconds, or until the server stops), then close it. A platform that hangs, then drops."""

    def __init__(self, linger: float = 0.0) -> None:
        super().__init__(f"drop the connection after at most {linger} s")
        self.linger = linger


class _BadRequest(Exception):
    """A request that cannot be read; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    """Keeps track of open connections and of requests being answered, so stop() can drain them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.answering = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.changed:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.changed:
            self.connections.discard(request)
            self.changed.notify_all()
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The handler answers 500 for handler failures itself; what reaches here is a client that went
        # away or timed out (nothing to say) or a fault of this server (one line, never a traceback).
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):
            stderr_line(f"local HTTP server: {type(error).__name__}: {error}")


class LocalHttpServer:
    """Serves a Router on a loopback port in a background thread.

    Requests are read as API Gateway reads them: a body needs a valid Content-Length or a chunked
    Transfer-Encoding (anything else is 400, 411 or 501), bodies over `max_body` are 413, and every
    error answer is JSON. A handler that raises is a 500, never a traceback. `stop()` lets requests
    being answered finish (up to `drain_seconds`) and closes idle keep-alive connections.
    """

    def __init__(
        self,
        router: Dispatcher,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        max_body: int = 10 * 1024 * 1024,
        access_log: AccessLog | None = None,
        read_timeout: float = 60.0,
        drain_seconds: float = 5.0,
    ):
        self._router = router
        self._max_body = max_body
        self._access_log = access_log
        self._read_timeout = read_timeout
        self._drain_seconds = drain_seconds
        self._server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        # A short poll interval: stop() (and so Ctrl-C on the stack) waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"http-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let requests being answered finish, close idle connections, release the port."""
        self._server.stopping.set()  # a dropped request still held (DropConnection) lets go now
        if self._thread:
            # shutdown() waits for serve_forever to notice; on a server never started it would wait forever.
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        server = self._server
        with server.changed:
            server.changed.wait_for(lambda: server.answering == 0, timeout=self._drain_seconds)
            open_connections = list(server.connections)
        for connection in open_connections:
            # Wakes a handler waiting for the next request on a keep-alive connection; it ends quietly.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        router, max_body, access_log = self._router, self._max_body, self._access_log
        server_timeout = self._read_timeout

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            default_request_version = "HTTP/1.1"  # errors before the request line is read still get headers
            timeout = server_timeout  # a client that stops sending mid-request is dropped, not waited on forever
            server: _Server

            def log_message(self, format: str, *args: Any) -> None:
                # The stack's access log (when asked for) reports requests; http.server's own is off.
                return

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # http.server's own errors (bad request line, headers too long, ...) as JSON, like the rest.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self._send(Reply.json(code, {"message": message or _REASONS.get(code, "Bad Request")}))

            def _read_body(self) -> bytes:
                transfer_encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
                lengths = self.headers.get_all("Content-Length") or []
                if transfer_encoding:
                    if lengths:
                        raise _BadRequest(400, "Content-Length and Transfer-Encoding together")
                    if transfer_encoding != "chunked":
                        raise _BadRequest(501, f"Transfer-Encoding {transfer_encoding!r} is not supported")
                    return self._read_chunked()
                if not lengths:
                    if self.command in _BODY_METHODS:
                        raise _BadRequest(411, "Length Required")
                    return b""
                if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
                    raise _BadRequest(400, "Invalid Content-Length")
                length = int(lengths[0])
                if length > max_body:
                    raise _BadRequest(413, "Request Entity Too Large")
                body = self.rfile.read(length) if length else b""
                if len(body) != length:
                    raise ConnectionResetError("the client closed the connection mid-body")
                return body

            def _read_chunked(self) -> bytes:
                body = bytearray()
                while True:
                    line = self.rfile.readline(1024)
                    if not line.endswith(b"\n"):
                        raise _BadRequest(400, "Invalid chunk size")
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise _BadRequest(400, "Invalid chunk size") from None
                    if size < 0 or size_text.startswith((b"-", b"+", b"0x", b"0X")):
                        raise _BadRequest(400, "Invalid chunk size")
                    if size == 0:
                        break
                    if len(body) + size > max_body:
                        raise _BadRequest(413, "Request Entity Too Large")
                    chunk = self.rfile.read(size)
                    if len(chunk) != size or self.rfile.read(2) != b"\r\n":
                        raise _BadRequest(400, "Invalid chunk")
                    body += chunk
                while True:  # trailer fields, up to the empty line
                    line = self.rfile.readline(8192)
                    if line in (b"\r\n", b"\n", b""):
                        break
                return bytes(body)

            def _serve(self) -> None:
                started = time.perf_counter()
                with self.server.changed:
                    self.server.answering += 1
                try:
                    self._answer(started)
                except OSError:
                    self.close_connection = True  # the client went away; nothing to answer
                finally:
                    with self.server.changed:
                        self.server.answering -= 1
                        self.server.changed.notify_all()

            def _answer(self, started: float) -> None:
                parts = urlsplit(self.path)
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                body = b""
                reply: Reply | None = None
                try:
                    body = self._read_body()
                except _BadRequest as exc:
                    # The rest of the request cannot be told apart from a next one: answer and close.
                    self.close_connection = True
                    reply = Reply.json(exc.status, {"message": str(exc)})
                request = Request(self.command, parts.path, parts.query, headers, body, self.client_address[0])
                if reply is None:
                    try:
                        reply = router.dispatch(request)
                    except DropConnection as exc:
                        self.close_connection = True
                        self._hold_then_drop(exc.linger)
                        return
                    except Exception as exc:  # noqa: BLE001 - a server answers 500 for any handler failure
                        stderr_line(f"{self.command} {parts.path}: {type(exc).__name__}: {exc}")
                        reply = Reply.json(500, {"message": "Internal Server Error"})
                self._send(reply)
                if access_log is not None:
                    access_log(AccessRecord(request, reply, (time.perf_counter() - started) * 1000))

            def _hold_then_drop(self, linger: float) -> None:
                """Answer nothing until the client closes its end, `linger` passes or the server stops."""
                deadline = time.monotonic() + linger
                while not self.server.stopping.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    readable, _, _ = select.select([self.connection], [], [], min(0.1, remaining))
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        break  # the client timed out and closed the connection
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

        return Handler
