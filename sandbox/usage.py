"""What the local functions consume: AWS calls by service and action, request units, billed time, memory.

`AwsCallMeter` hooks botocore's event system in a function process (every botocore session registers
its handlers, so every client the handler makes is metered). The local Lambda host reports one
`InvocationUsage` with each invocation result; each `FunctionPool` adds them into a `FunctionUsage`.
The cost bench (bench/cost.py) turns those into calls per document and dollars per million documents.

Request units follow AWS's billing rules, estimated from what the call carried:
- DynamoDB on demand: a write is one WRU per started KB of the item written (PutItem: the item sent;
  UpdateItem and DeleteItem: one, our items are under 1 KB, unless the answer returns the item); a read
  is one RRU per started 4 KB read (strongly consistent) or half of it (eventually consistent). A Query
  or Scan is billed for every item it reads, not only those its filter returns: the items filtered out
  (ScannedCount - Count) are sized like the ones returned, or FILTERED_ITEM_BYTES when none came back. A
  failed conditional write is billed as a write, as on AWS.
- SQS: one request per started 64 KB of payload in the call (at least one).
- Secrets Manager: one API call each.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SQS_CHUNK_BYTES = 64 * 1024
DYNAMODB_WRITE_BYTES = 1024
DYNAMODB_READ_BYTES = 4096
# The assumed size of an item a filter dropped when the page returned none to size it by (a batch item).
FILTERED_ITEM_BYTES = 512
# Lambda writes START, END and REPORT lines to every invocation's log stream (about this many bytes).
PLATFORM_LOG_BYTES_PER_INVOCATION = 280

_PARAMS_KEY = "invoice_bridge_meter_params"
_STARTED_KEY = "invoice_bridge_meter_started"
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_DYNAMODB_READS = {"GetItem", "Query", "Scan"}


def dynamodb_attribute_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value in wire form ({"S": ...}, {"N": ...}, {"M": ...})."""
    if not isinstance(value, dict) or len(value) != 1:
        return 0
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode("utf-8"))
    if kind == "N":
        digits = str(inner).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner))
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "M" and isinstance(inner, dict):
        return 3 + dynamodb_item_size(inner)
    if kind == "L" and isinstance(inner, list):
        return 3 + sum(1 + dynamodb_attribute_size(v) for v in inner)
    if kind in {"SS", "NS", "BS"} and isinstance(inner, list):
        return sum(dynamodb_attribute_size({kind[0]: v}) for v in inner)
    return 0


def dynamodb_item_size(item: Any) -> int:
    """Bytes of an item as DynamoDB sizes it: attribute names plus values."""
    if not isinstance(item, dict):
        return 0
    return sum(len(str(name).encode("utf-8")) + dynamodb_attribute_size(value) for name, value in item.items())


def request_units(service: str, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> dict[str, float]:
    """The billed units of one call: {"dynamodb:write": WRU, "dynamodb:read": RRU, "sqs:fifo": n, ...}."""
    if service == "dynamodb":
        if operation in _DYNAMODB_WRITES:
            size = dynamodb_item_size(params.get("Item") or parsed.get("Attributes"))
            return {"dynamodb:write": float(max(1, math.ceil(size / DYNAMODB_WRITE_BYTES)))}
        if operation in _DYNAMODB_READS:
            items = [parsed["Item"]] if isinstance(parsed.get("Item"), dict) else list(parsed.get("Items") or [])
            read = sum(dynamodb_item_size(i) for i in items)
            filtered = int(parsed.get("ScannedCount") or 0) - len(items)
            if filtered > 0:
                read += filtered * (read // len(items) if items else FILTERED_ITEM_BYTES)
            blocks = max(1, math.ceil(read / DYNAMODB_READ_BYTES))
            return {"dynamodb:read": blocks * (1.0 if params.get("ConsistentRead") else 0.5)}
        return {"dynamodb:other": 1.0}
    if service == "sqs":
        if operation == "SendMessage":
            payload = len(str(params.get("MessageBody", "")).encode("utf-8")) + _attributes_size(params)
        elif operation == "SendMessageBatch":
            payload = sum(
                len(str(e.get("MessageBody", "")).encode("utf-8")) + _attributes_size(e)
                for e in params.get("Entries") or []
            )
        elif operation == "ReceiveMessage":
            payload = sum(len(str(m.get("Body", "")).encode("utf-8")) for m in parsed.get("Messages") or [])
        else:
            payload = 0
        kind = "sqs:fifo" if str(params.get("QueueUrl", "")).endswith(".fifo") else "sqs:standard"
        return {kind: float(max(1, math.ceil(payload / SQS_CHUNK_BYTES)))}
    if service == "secretsmanager":
        return {"secretsmanager:calls": 1.0}
    return {f"{service}:calls": 1.0}


def request_bytes(request: Any) -> int:
    """Bytes an HTTP request puts on the wire: request line, headers and body (TLS overhead left out)."""
    line = len(f"{request.method} {request.url} HTTP/1.1\r\n".encode())
    headers = sum(len(f"{k}: {v}\r\n".encode()) for k, v in (request.headers or {}).items()) + 2
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    return line + headers + (len(body) if isinstance(body, bytes | bytearray) else 0)


def _attributes_size(entry: dict[str, Any]) -> int:
    total = 0
    for name, value in (entry.get("MessageAttributes") or {}).items():
        total += len(str(name)) + len(str(value.get("DataType", ""))) + len(str(value.get("StringValue", "")))
    return total


@dataclass
class InvocationUsage:
    """What one invocation consumed, as the local host reports it with the result."""

    calls: dict[str, int] = field(default_factory=dict)  # "dynamodb:PutItem" -> attempts sent
    units: dict[str, float] = field(default_factory=dict)  # "dynamodb:write" -> WRU
    aws_ms: float = 0.0  # time spent waiting on AWS calls (moto, locally)
    http_calls: int = 0  # requests to the platforms (requests.Session.send)
    http_ms: float = 0.0  # time spent waiting on them (the sandbox peers on loopback, locally)
    http_bytes_out: int = 0  # bytes those requests sent (data out of AWS to the internet)
    duration_ms: float = 0.0  # the handler, in the function process
    init_ms: float = 0.0  # the import, on the instance's first invocation only (Lambda bills INIT too)
    max_rss_kb: int = 0  # the instance's peak resident memory so far

    @property
    def billed_ms(self) -> int:
        """Lambda's billed duration: INIT plus handler, rounded up to the millisecond."""
        return math.ceil(self.init_ms + self.duration_ms)

    def as_dict(self) -> dict[str, Any]:
        """For the host's JSON reply."""
        return {
            "calls": self.calls,
            "units": self.units,
            "aws_ms": self.aws_ms,
            "http_calls": self.http_calls,
            "http_ms": self.http_ms,
            "http_bytes_out": self.http_bytes_out,
            "duration_ms": self.duration_ms,
            "init_ms": self.init_ms,
            "max_rss_kb": self.max_rss_kb,
        }

    @classmethod
    def from_dict(cls, value: Any) -> InvocationUsage | None:
        """From the host's JSON reply; None when it reported none."""
        if not isinstance(value, dict):
            return None
        return cls(
            calls={str(k): int(v) for k, v in (value.get("calls") or {}).items()},
            units={str(k): float(v) for k, v in (value.get("units") or {}).items()},
            aws_ms=float(value.get("aws_ms") or 0.0),
            http_calls=int(value.get("http_calls") or 0),
            http_ms=float(value.get("http_ms") or 0.0),
            http_bytes_out=int(value.get("http_bytes_out") or 0),
            duration_ms=float(value.get("duration_ms") or 0.0),
            init_ms=float(value.get("init_ms") or 0.0),
            max_rss_kb=int(value.get("max_rss_kb") or 0),
        )


class AwsCallMeter:
    """Counts every botocore request of this process by service and action, with its billed units."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.units: Counter[str] = Counter()
        self.aws_ms = 0.0
        self.http_calls = 0
        self.http_ms = 0.0
        self.http_bytes_out = 0

    def install(self) -> None:
        """Register on every botocore session made from now on (boto3's and Powertools' included)."""
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.extend(
            [
                ("before-parameter-build", self._remember_params),
                ("before-send", self._count_attempt),
                ("after-call", self._count_units),
            ]
        )
        # The platforms' requests all go through requests.Session.send (ApiClient's one Session).
        import requests

        send = requests.Session.send
        meter = self

        def timed_send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(session, request, **kwargs)
            finally:
                with meter._lock:
                    meter.http_calls += 1
                    meter.http_ms += (time.perf_counter() - started) * 1000
                    meter.http_bytes_out += request_bytes(request)

        requests.Session.send = timed_send  # type: ignore[method-assign,assignment]

    def take(self) -> InvocationUsage:
        """What was counted since the last take (calls, units, AWS and platform time), and reset."""
        with self._lock:
            usage = InvocationUsage(
                calls=dict(self.calls),
                units=dict(self.units),
                aws_ms=self.aws_ms,
                http_calls=self.http_calls,
                http_ms=self.http_ms,
                http_bytes_out=self.http_bytes_out,
            )
            self.calls.clear()
            self.units.clear()
            self.aws_ms = self.http_ms = 0.0
            self.http_calls = self.http_bytes_out = 0
        return usage

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS_KEY] = params
        context[_STARTED_KEY] = time.perf_counter()

    def _count_attempt(self, event_name: str, **_: Any) -> None:
        # One per HTTP request sent (retries are billed too); returns None so the request goes out.
        # `before-send.<service id, hyphenated>.<Operation>`: "secrets-manager" is service "secretsmanager".
        parts = event_name.split(".", 2)
        with self._lock:
            self.calls[f"{parts[1].replace('-', '')}:{parts[2]}"] += 1

    def _count_units(self, model: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get(_PARAMS_KEY) or {}
        units = request_units(model.service_model.service_name, model.name, params, parsed or {})
        started = context.get(_STARTED_KEY)
        with self._lock:
            self.units.update(units)
            if isinstance(started, float):
                self.aws_ms += (time.perf_counter() - started) * 1000


@dataclass
class FunctionUsage:
    """One function's invocations added up."""

    memory_mb: int
    invocations: int = 0
    cold_starts: int = 0
    billed_ms: int = 0
    init_ms: float = 0.0
    durations_ms: list[float] = field(default_factory=list)
    max_rss_kb: int = 0
    aws_ms: float = 0.0
    http_calls: int = 0
    http_ms: float = 0.0
    http_bytes_out: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)

    def add(self, usage: InvocationUsage) -> None:
        """Add one invocation's usage."""
        self.invocations += 1
        if usage.init_ms:
            self.cold_starts += 1
            self.init_ms += usage.init_ms
        self.billed_ms += usage.billed_ms
        self.durations_ms.append(usage.duration_ms)
        self.max_rss_kb = max(self.max_rss_kb, usage.max_rss_kb)
        self.calls.update(usage.calls)
        self.units.update(usage.units)
        self.aws_ms += usage.aws_ms
        self.http_calls += usage.http_calls
        self.http_ms += usage.http_ms
        self.http_bytes_out += usage.http_bytes_out

    @property
    def gb_seconds(self) -> float:
        """Billed GB-seconds at the configured memory."""
        return self.billed_ms / 1000 * self.memory_mb / 1024
