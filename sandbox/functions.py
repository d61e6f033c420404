"""Function instances (one process each) and a pool per function, like Lambda's concurrency."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandbox.cfn import FunctionSpec
from sandbox.usage import FunctionUsage, InvocationUsage

LogSink = Callable[[str, str], None]  # (function logical id, one log line)


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation."""

    ok: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    usage: InvocationUsage | None = None  # what the function process reported it consumed


class FunctionError(Exception):
    """An instance could not be started or died."""


class FunctionInstance:
    """One warm execution environment: a child process that imported the handler once."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], log_sink: LogSink) -> None:
        self.spec = spec
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.lambda_host",
                str(spec.code_dir),
                spec.handler,
                spec.logical_id,
                str(spec.memory),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment),
            text=True,
            cwd=str(spec.code_dir),
            # Its own session: a Ctrl-C in the terminal reaches the stack once, which closes its instances,
            # instead of every instance printing KeyboardInterrupt. It exits when the stack closes stdin.
            start_new_session=True,
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        # The reply pump signals the end of the process with None, so a waiting invoke stops waiting.
        threading.Thread(
            target=self._pump,
            args=(self._process.stdout, self._replies.put, lambda: self._replies.put(None)),
            daemon=True,
        ).start()
        threading.Thread(
            target=self._pump,
            args=(self._process.stderr, lambda line: log_sink(spec.logical_id, line)),
            daemon=True,
        ).start()
        ready = self._next_reply(timeout=60)
        if ready is None or not ready.get("ready"):
            self.kill()
            raise FunctionError(f"{spec.logical_id}: the instance did not start")

    @staticmethod
    def _pump(stream: IO[str], sink: Callable[[str], None], on_close: Callable[[], None] | None = None) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        if on_close:
            on_close()

    def _next_reply(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else dict(json.loads(line))

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self._process.poll() is None

    def invoke(self, event: Any) -> Invocation:
        """Run the handler on `event`; a timeout kills the instance, as Lambda does."""
        started = time.perf_counter()
        deadline_ms = int(time.time() * 1000) + self.spec.timeout * 1000
        request = {"event": event, "request_id": str(uuid.uuid4()), "deadline_ms": deadline_ms}
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            return Invocation(False, error_type="Runtime.ExitError", error_message="the instance had exited")
        reply = self._next_reply(timeout=self.spec.timeout)
        elapsed = (time.perf_counter() - started) * 1000
        if reply is None:
            timed_out = self.alive
            self.kill()
            message = f"Task timed out after {self.spec.timeout} seconds" if timed_out else "the instance exited"
            return Invocation(False, error_type="Runtime.ExitError", error_message=message, duration_ms=elapsed)
        usage = InvocationUsage.from_dict(reply.get("usage"))
        if reply["ok"]:
            return Invocation(True, result=reply["result"], duration_ms=elapsed, usage=usage)
        return Invocation(
            False,
            error_type=reply["errorType"],
            error_message=reply["errorMessage"],
            duration_ms=elapsed,
            usage=usage,
        )

    def kill(self) -> None:
        """End the process."""
        if self.alive:
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        """Let the process finish its loop and exit."""
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()


class FunctionPool:
    """Instances of one function: reused while warm, started on demand up to a concurrency limit."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        log_sink: LogSink,
        max_concurrency: int = 10,
        max_starting: int = 2,
    ) -> None:
        self.spec = spec
        self._environment = dict(environment)
        self._log_sink = log_sink
        self._limit = threading.BoundedSemaphore(spec.reserved_concurrency or max_concurrency)
        self._idle: list[FunctionInstance] = []
        self._busy: set[FunctionInstance] = set()
        self._lock = threading.Lock()
        # Lambda starts concurrent environments on separate machines; here they share this machine's
        # cores. A burst that started an interpreter per request would have them starve each other past
        # the sender's timeout, so at most `max_starting` start at once and the rest wait for a warm one.
        self._ready = threading.Condition(self._lock)
        self._starting = 0
        self._max_starting = max(1, max_starting)
        self._running = 0
        self._closed = False
        self.invocations = 0
        self.errors = 0
        self.usage = FunctionUsage(spec.memory)

    @property
    def running(self) -> int:
        """Invocations under way."""
        with self._lock:
            return self._running

    def _take(self) -> FunctionInstance | None:
        """A warm instance, or None with a start slot reserved for a new one."""
        with self._ready:
            while True:
                if self._closed:
                    raise FunctionError(f"{self.spec.logical_id}: the stack is stopping")
                while self._idle:
                    instance = self._idle.pop()
                    if instance.alive:
                        self._running += 1
                        return instance
                if self._starting < self._max_starting:
                    self._starting += 1
                    self._running += 1
                    return None
                self._ready.wait()

    def _start(self) -> FunctionInstance:
        try:
            return FunctionInstance(self.spec, self._environment, self._log_sink)
        finally:
            with self._ready:
                self._starting -= 1
                self._ready.notify()

    def invoke(self, event: Any) -> Invocation:
        """Invoke on a warm instance or a new one."""
        with self._limit:
            instance = self._take()
            try:
                if instance is None:
                    instance = self._start()
                with self._lock:
                    self._busy.add(instance)
                result = instance.invoke(event)
            finally:
                with self._lock:
                    self._running -= 1
                    self.invocations += 1
                    if instance is not None:
                        self._busy.discard(instance)
            with self._ready:
                if not result.ok:
                    self.errors += 1
                if result.usage is not None:
                    self.usage.add(result.usage)
                if instance.alive and not self._closed:
                    self._idle.append(instance)
                    instance = None
                    self._ready.notify()
            if instance is not None:
                instance.close()
            return result

    def close(self) -> None:
        """End every idle instance at once; busy ones finish and are closed as they return."""
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._ready.notify_all()
        for instance in idle:
            # An idle instance holds no work (its logs are written as it goes): ending it now, as Lambda
            # retires an environment, spares the second its interpreter takes to tear itself down.
            instance.kill()


def abandon(pool: FunctionPool) -> None:
    """End every instance now, busy ones too: their invocation fails as a Lambda timeout would (serve's Ctrl-C)."""
    pool.close()
    with pool._lock:
        busy = list(pool._busy)
    for instance in busy:
        instance.kill()


def function_environment(
    spec: FunctionSpec, resolved: Mapping[str, Any], base: Mapping[str, str], code_root: Path
) -> dict[str, str]:
    """What a Lambda instance of `spec` sees: the base, the template's variables, the runtime's own."""
    env = dict(base)
    env.update({k: "" if v is None else str(v) for k, v in resolved.items()})
    layer = code_root / "layers" / "common"
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            # The layer first, as /opt/python is on Lambda; the venv still provides its dependencies.
            "PYTHONPATH": str(layer),
            "PYTHONUNBUFFERED": "1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return env
