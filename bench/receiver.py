"""Webhook receiver bench: cold start and warm handler time of the real handler against a minimal boto3 one."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, signature_header
from sandbox.aws_local import LocalAws, Provisioned, intrinsics_for, process_environment_without_aws
from sandbox.cfn import FunctionSpec, Template
from sandbox.functions import function_environment
from sandbox.gateway import http_api_event
from sandbox.httpserver import Request
from sandbox.lambda_host import LocalLambdaContext
from sandbox.settings import LocalSettings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
LAYER_DIR = REPO_ROOT / "layers" / "common"
FUNCTION = "WebhookReceiverFunction"
QUEUE = "QuipuQueue"  # where invoice.created is routed
ROUTE_KEY = "POST /webhooks/buildnexion"
SAMPLE_EVENT = REPO_ROOT / "events" / "buildnexion" / "01_invoice_created.json"
MINIMAL_MODULE = "minimal_receiver"
FIGURES_MARKER = "bench-figures="

Handler = Callable[[dict[str, Any], LocalLambdaContext], dict[str, Any]]


@dataclass(frozen=True)
class Rounds:
    """How many times each thing is measured."""

    cold_starts: int
    warm_up: int
    invocations: int


FULL = Rounds(cold_starts=7, warm_up=20, invocations=200)
QUICK = Rounds(cold_starts=3, warm_up=5, invocations=30)


@dataclass(frozen=True)
class Samples:
    """Timings of one thing, in milliseconds."""

    ms: list[float]

    @property
    def median(self) -> float:
        """The median."""
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        """The nearest-rank 95th percentile."""
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Variant:
    """A handler module started in fresh interpreters, with the environment it sees there."""

    label: str
    module: str
    code_dir: Path
    environment: dict[str, str]
    tag: str  # event id tag; empty: import only, no invocation


@dataclass(frozen=True)
class ColdStart:
    """One variant's imports and first invocations."""

    label: str
    imports: Samples
    first_invocations: Samples | None


@dataclass(frozen=True)
class WarmRun:
    """One handler's warm invocations: wall time, and CPU time of the invoking thread."""

    label: str
    wall: Samples
    cpu: Samples


@dataclass(frozen=True)
class Figures:
    """Everything the receiver bench measured."""

    rounds: Rounds
    quick: bool
    cold: list[ColdStart]  # the minimal handler last
    warm: list[WarmRun]  # the real handler first, the minimal one last
    enqueued: int
    expected: int


@dataclass
class ReceiverStack:
    """moto with the template provisioned, the receiver function's resolved environment, and its queue."""

    aws: LocalAws
    provisioned: Provisioned
    spec: FunctionSpec
    environment: dict[str, str]
    sqs: SQSClient
    received: int = 0

    def drain(self) -> None:
        """Receive and delete what the handlers enqueued, counting it; called between timings."""
        # moto's SendMessage slows with every message waiting on a FIFO queue (about 8 ms empty, 30 ms with
        # 500 waiting): each invocation starts on an empty queue, as on a consumed queue on AWS.
        url = self.provisioned.queues[QUEUE].url
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            self.received += len(messages)
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


def start_stack() -> ReceiverStack:
    """Start moto, provision template.yaml and resolve the receiver's environment as the local stack does."""
    settings = LocalSettings.from_env({})
    template = Template.load(REPO_ROOT / "template.yaml")
    aws = LocalAws()
    aws.start()
    try:
        provisioned = aws.provision(template, settings.secret_values())
        intrinsics = intrinsics_for(template, template.parameter_defaults(), provisioned)
        base = {**process_environment_without_aws(), **aws.environment()}
        spec = next(s for s in template.functions if s.logical_id == FUNCTION)
        environment = function_environment(spec, intrinsics.resolve(spec.environment), base, REPO_ROOT)
    except BaseException:
        aws.stop()
        raise
    return ReceiverStack(aws, provisioned, spec, environment, aws.sqs())


class SignedEvents:
    """API Gateway v2 events of freshly signed BuildNexion deliveries, each with a new event id."""

    def __init__(self, sample: Path, secrets: list[str]) -> None:
        self._document: dict[str, Any] = json.loads(sample.read_text(encoding="utf-8"))
        self._secrets = secrets
        self._run = uuid.uuid4().hex[:12]
        self._count = 0

    def next(self, tag: str) -> dict[str, Any]:
        """The next delivery's event; `tag` keeps the handlers' event ids apart."""
        self._count += 1
        body = json.dumps({**self._document, "id": f"evt_bench_{self._run}_{tag}_{self._count:06d}"}).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "BuildNexion-Webhooks/1.0 (bench)",
            SIGNATURE_HEADER.lower(): signature_header(self._secrets, int(time.time()), body),
        }
        request = Request("POST", "/webhooks/buildnexion", "", headers, body, "127.0.0.1")
        return http_api_event(request, ROUTE_KEY)


def check_accepted(response: Any) -> None:
    """Stop the bench unless the delivery was enqueued: a duplicate or a rejection times a shorter path."""
    if not isinstance(response, dict) or response.get("statusCode") != 200:
        raise RuntimeError(f"the delivery was not accepted: {response}")
    if json.loads(response.get("body") or "{}").get("status") != "accepted":
        raise RuntimeError(f"the delivery was not accepted: {response}")


# -- cold start ----------------------------------------------------------------------------------


def _child_code(module: str, paths: list[str], spec: FunctionSpec) -> str:
    # After the timed import the child times one invocation per event read from stdin: the rest of a cold
    # start (clients, settings, the first secret read), against the parent's moto.
    return f"""
import json, sys, time, uuid
sys.path[:0] = {paths!r}
started = time.perf_counter()
import {module} as handler_module
figures = {{"import_s": time.perf_counter() - started, "invocations": []}}
from sandbox.lambda_host import LocalLambdaContext
for event in json.loads(sys.stdin.read()):
    deadline_ms = int(time.time() * 1000) + {spec.timeout * 1000}
    context = LocalLambdaContext({spec.logical_id!r}, {spec.memory}, str(uuid.uuid4()), deadline_ms)
    started = time.perf_counter()
    response = handler_module.lambda_handler(event, context)
    figures["invocations"].append({{"s": time.perf_counter() - started, "response": response}})
print({FIGURES_MARKER!r} + json.dumps(figures), flush=True)
"""


def cold_start_once(variant: Variant, spec: FunctionSpec, events: SignedEvents) -> tuple[float, float | None]:
    """(import ms, first invocation ms or None) in a fresh interpreter; its start-up is not counted."""
    completed = subprocess.run(
        [sys.executable, "-c", _child_code(variant.module, [str(variant.code_dir), str(LAYER_DIR)], spec)],
        input=json.dumps([events.next(variant.tag)] if variant.tag else []),
        cwd=variant.code_dir,
        env=variant.environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # Powertools logs to stdout as well: the figures are the marked line.
    marked = [line for line in completed.stdout.splitlines() if line.startswith(FIGURES_MARKER)]
    if completed.returncode != 0 or not marked:
        raise RuntimeError(f"cold start of {variant.module} failed:\n{completed.stderr.strip()}")
    figures = json.loads(marked[-1].removeprefix(FIGURES_MARKER))
    first: float | None = None
    for invocation in figures["invocations"]:
        check_accepted(invocation["response"])
        first = invocation["s"] * 1000
    return figures["import_s"] * 1000, first


def measure_cold_starts(stack: ReceiverStack, events: SignedEvents, rounds: Rounds) -> list[ColdStart]:
    """Fresh-interpreter import and first invocation of the real handler (tracing off and on) and the minimal one."""
    spec = stack.spec
    module = spec.handler.rpartition(".")[0]
    # The template sets Tracing: Active and the local stack turns it off, so the import is shown both ways.
    # A traced invocation needs the X-Ray segment Lambda creates, which is not there locally: import only.
    traced = {k: v for k, v in stack.environment.items() if k != "POWERTOOLS_TRACE_DISABLED"}
    variants = [
        Variant("real app.py, tracing off (local stack)", module, spec.code_dir, stack.environment, "real"),
        Variant("real app.py, tracing on (as deployed)", module, spec.code_dir, traced, ""),
        Variant("minimal (plain boto3)", MINIMAL_MODULE, BENCH_DIR, stack.environment, "min"),
    ]
    # A discarded first run writes the bytecode caches (a layer ships them) and warms moto's backends.
    for variant in variants:
        cold_start_once(variant, spec, events)
        stack.drain()
    imports: dict[str, list[float]] = {v.label: [] for v in variants}
    firsts: dict[str, list[float]] = {v.label: [] for v in variants}
    # Interleaved, so drift in the machine's load touches every variant alike.
    for _ in range(rounds.cold_starts):
        for variant in variants:
            imported, first = cold_start_once(variant, spec, events)
            stack.drain()
            imports[variant.label].append(imported)
            if first is not None:
                firsts[variant.label].append(first)
    return [
        ColdStart(v.label, Samples(imports[v.label]), Samples(firsts[v.label]) if firsts[v.label] else None)
        for v in variants
    ]


# -- warm handler --------------------------------------------------------------------------------


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def stdout_silenced() -> Iterator[None]:
    """Descriptor 1 on /dev/null: Powertools' log and metric lines are still formatted and written, then dropped."""
    # The descriptor, not sys.stdout: Powertools' Logger holds the stream it was given at import.
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file at `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def invoke(handler: Handler, event: dict[str, Any], spec: FunctionSpec) -> tuple[float, float]:
    """(wall ms, CPU ms of this thread) of one accepted invocation."""
    context = LocalLambdaContext(
        function_name=spec.logical_id,
        memory_limit_in_mb=spec.memory,
        aws_request_id=str(uuid.uuid4()),
        deadline_ms=int(time.time() * 1000) + spec.timeout * 1000,
    )
    cpu_started = time.thread_time()
    started = time.perf_counter()
    response = handler(event, context)
    wall = (time.perf_counter() - started) * 1000
    cpu = (time.thread_time() - cpu_started) * 1000
    check_accepted(response)
    return wall, cpu


def measure_warm(stack: ReceiverStack, events: SignedEvents, rounds: Rounds) -> list[WarmRun]:
    """Wall and CPU times of in-process invocations of both handlers, after a warm-up, against the same moto."""
    spec = stack.spec
    # Other benches import the layer before this environment is set: its Metrics took no namespace then.
    from invoice_bridge.observability import metrics

    metrics.namespace = metrics.namespace or stack.environment.get("POWERTOOLS_METRICS_NAMESPACE")
    with environment(stack.environment), stdout_silenced():
        handlers: dict[str, Handler] = {
            "real": load_module("bench_webhook_receiver_app", spec.code_dir / "app.py").lambda_handler,
            "min": load_module("bench_minimal_receiver", BENCH_DIR / f"{MINIMAL_MODULE}.py").lambda_handler,
        }
        # The first call builds the clients and reads the secret: that is the cold start's, not counted here.
        for _ in range(1 + rounds.warm_up):
            for tag, handler in handlers.items():
                invoke(handler, events.next(tag), spec)
                stack.drain()
        wall: dict[str, list[float]] = {tag: [] for tag in handlers}
        cpu: dict[str, list[float]] = {tag: [] for tag in handlers}
        # Alternated, so both see the same moto state as its queue and table grow.
        for _ in range(rounds.invocations):
            for tag, handler in handlers.items():
                wall_ms, cpu_ms = invoke(handler, events.next(tag), spec)
                wall[tag].append(wall_ms)
                cpu[tag].append(cpu_ms)
                stack.drain()
    return [
        WarmRun("real lambda_handler", Samples(wall["real"]), Samples(cpu["real"])),
        WarmRun("minimal lambda_handler", Samples(wall["min"]), Samples(cpu["min"])),
    ]


# -- report --------------------------------------------------------------------------------------

LABEL_WIDTH = 40


def _ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def _row(label: str, *cells: str) -> str:
    return f"  {label:<{LABEL_WIDTH}}" + "".join(f"{cell:>10}" for cell in cells)


def format_report(figures: Figures) -> str:
    """The figures as plain-text tables."""
    rounds = figures.rounds
    minimal_cold = figures.cold[-1]
    real_warm, minimal_warm = figures.warm[0], figures.warm[-1]
    lines = [
        f"Webhook receiver ({'quick' if figures.quick else 'full'} run)",
        f"  Python {platform.python_version()}, boto3 {version('boto3')}, "
        f"aws-lambda-powertools {version('aws-lambda-powertools')}, pydantic {version('pydantic')}; "
        f"AWS is moto {version('moto')} on loopback",
        "",
        f"Cold start: a fresh interpreter each time, {rounds.cold_starts} runs, medians in ms",
        _row("handler module", "import", "/minimal", "min", "max", "1st call", "/minimal"),
    ]
    for row in figures.cold:
        first = row.first_invocations
        lines.append(
            _row(
                row.label,
                f"{row.imports.median:.1f}",
                _ratio(row.imports.median, minimal_cold.imports.median),
                f"{min(row.imports.ms):.1f}",
                f"{max(row.imports.ms):.1f}",
                f"{first.median:.1f}" if first else "-",
                _ratio(first.median, minimal_cold.first_invocations.median)
                if first and minimal_cold.first_invocations
                else "-",
            )
        )
    lines += [
        "",
        f"Warm handler: signed BuildNexion invoice.created, {rounds.invocations} invocations each"
        f" after {1 + rounds.warm_up} warm-up, in ms",
        _row("handler", "median", "p95", "cpu med", "cpu p95"),
    ]
    for run in figures.warm:
        lines.append(
            _row(run.label, *(f"{v:.2f}" for v in (run.wall.median, run.wall.p95, run.cpu.median, run.cpu.p95)))
        )
    pairs = [
        (real_warm.wall.median, minimal_warm.wall.median),
        (real_warm.wall.p95, minimal_warm.wall.p95),
        (real_warm.cpu.median, minimal_warm.cpu.median),
        (real_warm.cpu.p95, minimal_warm.cpu.p95),
    ]
    lines += [
        _row("ratio real/minimal", *(_ratio(real, minimal) for real, minimal in pairs)),
        _row("real minus minimal", *(f"{real - minimal:+.2f}" for real, minimal in pairs)),
        "",
        "  import: `import <module>` only. 1st call: the first invocation after it (clients, settings, first",
        "  secret read). A traced invocation needs Lambda's X-Ray segment, so tracing on is timed at import only.",
        "  Each warm call: GetSecretValue (cached 60 s), HMAC-SHA256 check, conditional PutItem + UpdateItem on",
        "  the idempotency table, SendMessage to the FIFO Quipu queue. cpu: CPU time of the invoking thread,",
        "  which leaves out moto's server threads (moto answers far slower than AWS, and the same for both).",
        f"  Check: {figures.enqueued} messages received from {QUEUE}, {figures.expected} expected;"
        " it is drained after each invocation, untimed.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> None:
    """Measure the receiver and print its figures."""
    rounds = QUICK if quick else FULL
    stack = start_stack()
    try:
        events = SignedEvents(SAMPLE_EVENT, LocalSettings.from_env({}).webhook_secrets())
        cold = measure_cold_starts(stack, events, rounds)
        warm = measure_warm(stack, events, rounds)
        stack.drain()
    finally:
        stack.aws.stop()
    # Every accepted delivery, warm-ups and discarded runs included, put one message on the queue.
    cold_invocations = (1 + rounds.cold_starts) * sum(1 for row in cold if row.first_invocations)
    warm_invocations = 2 * (1 + rounds.warm_up + rounds.invocations)
    figures = Figures(rounds, quick, cold, warm, stack.received, cold_invocations + warm_invocations)
    print(format_report(figures), flush=True)
