"""Cold start of every function: its handler module's import, and its first call, against a minimal handler.

Each function's `app.py` and a minimal handler making the same AWS calls in plain boto3 (bench/minimal_receiver.py
for the receiver, bench/minimal_worker.py for the three workers) are imported in fresh interpreters, interleaved,
several rounds, against moto with template.yaml provisioned; the figures are medians. The interpreter's own
start-up is not counted (Lambda's runtime start-up is the same for both).

- import: `import app` alone, which is what Lambda's INIT phase runs.
- 1st call: what the first invocation adds before its own work. For the receiver, a real signed
  invoice.created delivery (settings, clients, the secret read, the idempotency claim, the SendMessage).
  For the workers, building the worker (the settings model validated, the AWS clients, the secret reader):
  their first record then calls BuildNexion and the platform, which this bench does not stand up (the
  quipu, tuimprenta and facturadirecta benches do). A module a worker imports lazily on a rare path is named
  in its README row; nothing every record needs is imported there.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from bench.receiver import (
    BENCH_DIR,
    FIGURES_MARKER,
    LAYER_DIR,
    REPO_ROOT,
    SAMPLE_EVENT,
    Samples,
    SignedEvents,
    check_accepted,
)
from sandbox.aws_local import LocalAws, intrinsics_for, process_environment_without_aws
from sandbox.cfn import FunctionSpec, Template
from sandbox.functions import function_environment
from sandbox.settings import LocalSettings
from sandbox.stack import localize_api_urls

TARGET_RATIO = 1.5
FULL_ROUNDS = 7
QUICK_ROUNDS = 3


@dataclass(frozen=True)
class Subject:
    """One function: its real handler module and the minimal one it is held against."""

    function: str  # logical id in template.yaml
    minimal_module: str
    # The first call: "invoke" (a real delivery) or the name of the module's cached factory to call.
    first_call: str
    minimal_first_call: str


SUBJECTS = [
    Subject("WebhookReceiverFunction", "minimal_receiver", "invoke", "invoke"),
    Subject("QuipuSyncFunction", "minimal_worker", "worker", "worker"),
    Subject("TuimprentaPollerFunction", "minimal_worker", "poller", "worker"),
    Subject("FacturaDirectaExporterFunction", "minimal_worker", "exporter", "worker"),
]


@dataclass(frozen=True)
class Run:
    """What to start in a fresh interpreter."""

    module: str
    code_dir: Path
    environment: dict[str, str]
    first_call: str
    tag: str


@dataclass(frozen=True)
class Row:
    """One function's medians, real and minimal."""

    function: str
    memory: int
    real_import: Samples
    minimal_import: Samples
    real_first: Samples
    minimal_first: Samples


def _child_code(run: Run, spec: FunctionSpec) -> str:
    paths = [str(run.code_dir), str(LAYER_DIR)]
    if run.first_call == "invoke":
        first = f"""
from sandbox.lambda_host import LocalLambdaContext
for event in json.loads(sys.stdin.read()):
    context = LocalLambdaContext({spec.logical_id!r}, {spec.memory}, str(uuid.uuid4()),
                                 int(time.time() * 1000) + {spec.timeout * 1000})
    started = time.perf_counter()
    response = handler_module.lambda_handler(event, context)
    figures["first_s"] = time.perf_counter() - started
    figures["response"] = response
"""
    else:
        first = f"""
started = time.perf_counter()
handler_module.{run.first_call}()
figures["first_s"] = time.perf_counter() - started
"""
    return f"""
import json, sys, time, uuid
sys.path[:0] = {paths!r}
started = time.perf_counter()
import {run.module} as handler_module
figures = {{"import_s": time.perf_counter() - started}}
{first}
print({FIGURES_MARKER!r} + json.dumps(figures), flush=True)
"""


def start_once(run: Run, spec: FunctionSpec, events: SignedEvents) -> tuple[float, float]:
    """(import ms, first call ms) in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, "-c", _child_code(run, spec)],
        input=json.dumps([events.next(run.tag)] if run.first_call == "invoke" else []),
        cwd=run.code_dir,
        env=run.environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    marked = [line for line in completed.stdout.splitlines() if line.startswith(FIGURES_MARKER)]
    if completed.returncode != 0 or not marked:
        raise RuntimeError(f"cold start of {run.module} ({spec.logical_id}) failed:\n{completed.stderr.strip()}")
    figures = json.loads(marked[-1].removeprefix(FIGURES_MARKER))
    if "response" in figures:
        check_accepted(figures["response"])
    return figures["import_s"] * 1000, figures["first_s"] * 1000


def measure(rounds: int) -> list[Row]:
    """Every subject's real and minimal handler, interleaved, `rounds` times after one discarded start each."""
    settings = LocalSettings.from_env({})
    template = Template.load(REPO_ROOT / "template.yaml")
    aws = LocalAws()
    aws.start()
    try:
        provisioned = aws.provision(template, settings.secret_values())
        intrinsics = intrinsics_for(template, template.parameter_defaults(), provisioned)
        base = {**process_environment_without_aws(), **aws.environment()}
        events = SignedEvents(SAMPLE_EVENT, settings.webhook_secrets())
        specs = {s.logical_id: s for s in template.functions}
        api_ids = set(template.resources_of_type("AWS::Serverless::HttpApi"))
        runs: list[tuple[Subject, FunctionSpec, Run, Run]] = []
        for subject in SUBJECTS:
            spec = specs[subject.function]
            # Nothing calls the gateway here: its URL only has to be one.
            declared = localize_api_urls(spec.environment, api_ids, "http://127.0.0.1:9")
            environment = function_environment(spec, intrinsics.resolve(declared), base, REPO_ROOT)
            module = spec.handler.rpartition(".")[0]
            real = Run(module, spec.code_dir, environment, subject.first_call, f"real{len(runs)}")
            minimal = Run(subject.minimal_module, BENCH_DIR, environment, subject.minimal_first_call, f"min{len(runs)}")
            runs.append((subject, spec, real, minimal))
        # A discarded first start writes the bytecode caches (a layer ships them) and warms moto's backends.
        for _, spec, real, minimal in runs:
            start_once(real, spec, events)
            start_once(minimal, spec, events)
        samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        # Interleaved, so drift in the machine's load touches every variant alike.
        for _ in range(rounds):
            for subject, spec, real, minimal in runs:
                for kind, run in (("real", real), ("minimal", minimal)):
                    imported, first = start_once(run, spec, events)
                    imports, firsts = samples.setdefault((subject.function, kind), ([], []))
                    imports.append(imported)
                    firsts.append(first)
    finally:
        aws.stop()
    return [
        Row(
            subject.function,
            spec.memory,
            Samples(samples[(subject.function, "real")][0]),
            Samples(samples[(subject.function, "minimal")][0]),
            Samples(samples[(subject.function, "real")][1]),
            Samples(samples[(subject.function, "minimal")][1]),
        )
        for subject, spec, _, _ in runs
    ]


def _row(*cells: str) -> str:
    return f"  {cells[0]:<32}" + "".join(f"{cell:>10}" for cell in cells[1:])


def format_report(rows: list[Row], rounds: int, quick: bool) -> str:
    """One line per function: import and import + first call, real against minimal."""
    lines = [
        f"Cold starts ({'quick' if quick else 'full'} run): a fresh interpreter each time, {rounds} runs each,"
        " medians in ms",
        f"  Python {platform.python_version()}, boto3 {version('boto3')}, "
        f"aws-lambda-powertools {version('aws-lambda-powertools')}, pydantic {version('pydantic')}; "
        "tracing off (the local stack's setting)",
        _row("function", "import", "minimal", "ratio", "+1st call", "minimal", "ratio"),
    ]
    for row in rows:
        real_total = row.real_import.median + row.real_first.median
        minimal_total = row.minimal_import.median + row.minimal_first.median
        lines.append(
            _row(
                row.function.removesuffix("Function"),
                f"{row.real_import.median:.0f}",
                f"{row.minimal_import.median:.0f}",
                f"{row.real_import.median / row.minimal_import.median:.2f}x",
                f"{real_total:.0f}",
                f"{minimal_total:.0f}",
                f"{real_total / minimal_total:.2f}x",
            )
        )
    lines += [
        f"  Target: each import ratio at most {TARGET_RATIO:.1f}x. +1st call: import plus the first call's setup",
        "  (receiver: one real signed delivery against moto; workers: building the worker, i.e. settings",
        "  validated and clients made; their first record's platform calls are not stood up here).",
        "  minimal: bench/minimal_receiver.py and bench/minimal_worker.py, the same AWS calls in plain boto3",
        "  and the standard library. Both sides import boto3, whose cost dominates the minimal figure.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> None:
    """Measure every function's cold start and print the table."""
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    print(format_report(measure(rounds), rounds, quick), flush=True)
