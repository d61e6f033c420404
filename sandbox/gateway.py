"""The local API Gateway (HTTP API, payload format 2.0): HTTP requests in, handler responses out."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.cfn import ACCOUNT_ID
from sandbox.functions import FunctionError, FunctionPool
from sandbox.httpserver import Reply, Request

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def http_api_event(request: Request, route_key: str, api_id: str = "local") -> dict[str, Any]:
    """The API Gateway v2 event for `request` (headers lower-case, body base64 unless textual)."""
    now = datetime.now(UTC)
    content_type = request.header("content-type") or ""
    textual = content_type.startswith(_TEXT_TYPES)
    try:
        body_text = request.body.decode("utf-8") if textual else None
    except UnicodeDecodeError:
        body_text = None
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string,
        "headers": dict(request.headers),
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": request.header("host") or "127.0.0.1",
            "domainPrefix": "127",
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.client_ip,
                "userAgent": request.header("user-agent") or "",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": body_text is None and bool(request.body),
    }
    if request.query_string:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in request.query.items()}
    if request.body:
        event["body"] = body_text if body_text is not None else base64.b64encode(request.body).decode()
    return event


def http_reply(result: Any) -> Reply:
    """The HTTP response API Gateway makes of a handler's return value (format 2.0 rules)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Format 2.0 infers a 200 JSON response from anything that is not a response object.
        text = result if isinstance(result, str) else json.dumps(result)
        return Reply(200, text.encode(), {"Content-Type": "application/json"})
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name)] = ",".join(str(v) for v in values)
    return Reply(int(result["statusCode"]), body, headers)


def route_to(pool: FunctionPool, route_key: str) -> Any:
    """A router handler that invokes `pool` for `route_key`; a failed invocation is a 500, as on AWS."""

    def handle(request: Request, _params: dict[str, str]) -> Reply:
        try:
            invocation = pool.invoke(http_api_event(request, route_key))
        except FunctionError:
            return Reply.json(503, {"message": "Service Unavailable"})
        if not invocation.ok:
            return Reply.json(500, {"message": "Internal Server Error"})
        return http_reply(invocation.result)

    return handle
