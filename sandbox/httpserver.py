"""A small threaded HTTP server with a router, shared by the local gateway and the sandbox peers."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


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


class LocalHttpServer:
    """Serves a Router on a loopback port in a background thread."""

    def __init__(self, router: Router, *, port: int = 0, host: str = "127.0.0.1", max_body: int = 10 * 1024 * 1024):
        self._router = router
        self._max_body = max_body
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
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
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (if it started) and release the port."""
        if self._thread:
            # shutdown() waits for serve_forever to notice; on a server never started it would wait forever.
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        router, max_body = self._router, self._max_body

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                # Access logs would carry paths and ids on every request; the stack reports what matters.
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > max_body:
                    self._send(Reply.json(413, {"message": "Request Entity Too Large"}))
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query_string=parts.query,
                    headers=headers,
                    body=body,
                    client_ip=self.client_address[0],
                )
                self._send(router.dispatch(request))

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

        return Handler
