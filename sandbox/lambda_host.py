"""Runs one Lambda function instance in its own process, as the Lambda runtime would.

The parent writes one JSON invocation per line on stdin and reads one JSON result per line on the
protocol descriptor; everything the handler prints goes to stderr, like a function's log stream.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

from sandbox.cfn import ACCOUNT_ID, REGION
from sandbox.usage import AwsCallMeter


@dataclass
class LocalLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline_ms: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "ok": False,
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def serve(handler_path: str, function_name: str, memory: int, protocol: TextIO) -> None:
    """Import the handler, then answer invocations from stdin until it closes, each with its usage."""
    module_name, _, attribute = handler_path.rpartition(".")
    # Before the handler's import, so every botocore session it makes is metered.
    meter = AwsCallMeter()
    meter.install()
    started = time.perf_counter()
    handler: Any = None
    init_error: dict[str, Any] | None = None
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # noqa: BLE001 - the runtime reports any import failure on each invocation
        traceback.print_exc()
        init_error = _error(exc, "Runtime.ImportModuleError")
    init_ms = (time.perf_counter() - started) * 1000
    protocol.write(json.dumps({"ready": True, "init_ms": round(init_ms)}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = LocalLambdaContext(function_name, memory, request["request_id"], request["deadline_ms"])
        started = time.perf_counter()
        if init_error is not None:
            reply = init_error
        else:
            try:
                reply = {"ok": True, "result": handler(request["event"], context)}
            except Exception as exc:  # noqa: BLE001 - like the runtime: any handler error fails the invocation
                traceback.print_exc()
                reply = _error(exc)
        usage = meter.take()
        usage.duration_ms = (time.perf_counter() - started) * 1000
        # Lambda bills the INIT phase with the first invocation of an environment.
        usage.init_ms, init_ms = init_ms, 0.0
        usage.max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reply["usage"] = usage.as_dict()
        try:
            text = json.dumps(reply)
        except TypeError as exc:
            text = json.dumps({**_error(exc, "Runtime.MarshalError"), "usage": usage.as_dict()})
        protocol.write(text + "\n")
        protocol.flush()


def main() -> None:
    """Entry point: `python -m sandbox.lambda_host CODE_DIR HANDLER FUNCTION_NAME MEMORY`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("code_dir")
    parser.add_argument("handler")
    parser.add_argument("function_name")
    parser.add_argument("memory", type=int)
    args = parser.parse_args()
    # The protocol keeps the original stdout; the handler's prints and logs go to stderr.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, args.code_dir)
    serve(args.handler, args.function_name, args.memory, protocol)


if __name__ == "__main__":
    main()
