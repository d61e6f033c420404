"""Cost per million documents: a mixed run through the local stack, priced at AWS's published eu-west-1 prices.

The run is the chaos mix without faults: supplier invoices (some updated, some voided), sales invoices
(some canceled) and purchase orders (some updated, some canceled), each event signed and delivered by the
sandbox BuildNexion to the local gateway, through the real handlers, until the stack is idle. Every
function process meters its AWS calls (botocore events, sandbox/usage.py), its platform requests, its
billed duration (INIT included on a cold start, rounded up to 1 ms) and its peak memory; the local
runner counts the SQS requests Lambda's pollers make; the log sink counts the bytes CloudWatch Logs
would ingest. A document is one BuildNexion object (its create, updates and void/cancel together).

The state table first gets 30 days of history (closed tuimprenta batches, ledger entries, limiter
windows), so costs that grow with history show. The scheduler is ticked by hand, one tick per simulated
minute of the default schedule: idle runs are measured on the history-loaded table and priced per month
(bench/costmodel.py), and their share is taken out of the documents' run.

Local latencies are not Lambda's: moto answers on loopback and the sandbox platforms answer in about a
millisecond. The priced duration therefore takes each function's measured billed time, removes the time
spent waiting on moto and on the sandbox platforms, and adds back an assumed in-region AWS latency per
call and an assumed platform latency per request (AWS_LATENCY_MS, PLATFORM_LATENCY_MS): the CPU time and
the rate-limit waits stay as measured. Both figures are printed.
"""

from __future__ import annotations

import copy
import json
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from bench import costmodel
from sandbox.cfn import Template
from sandbox.stack import REPO_ROOT, LocalStack, StackOptions
from sandbox.usage import PLATFORM_LOG_BYTES_PER_INVOCATION, FunctionUsage

EVENTS = REPO_ROOT / "events" / "buildnexion"
TARGET_PER_MILLION = Decimal("5.00")
TARGET_FIXED_PER_MONTH = Decimal("3.00")
REGION = "eu-west-1"
SETTLE_TIMEOUT_SECONDS = 600


# Assumed latencies on AWS (the local ones are moto's and the sandbox peers'): in-region SDK calls from
# Lambda, and a request to an outside platform over the internet.
AWS_LATENCY_MS = {"dynamodb": 6.0, "sqs": 12.0, "secretsmanager": 20.0}
PLATFORM_LATENCY_MS = 120.0
# The scheduled poller's idle runs measured (after a first, cold one) to price one idle run.
IDLE_RUNS = 5
WARM_UP_RUNS = 4
# SECRETS_MAX_AGE_SECONDS (3600) over the default schedule's minute.
SECRET_REREAD_RUNS = 60


@dataclass(frozen=True)
class Mix:
    """How many objects of each kind the run creates."""

    supplier_invoices: int
    sales_invoices: int
    purchase_orders: int

    @property
    def documents(self) -> int:
        """Objects in all."""
        return self.supplier_invoices + self.sales_invoices + self.purchase_orders


FULL = Mix(60, 80, 60)
QUICK = Mix(6, 8, 6)


def _sample(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return document


def _event(kind: str, obj: dict[str, Any], serial: int, run: str) -> dict[str, Any]:
    return {"id": f"evt_cost_{run}_{serial:05d}", "type": kind, "created": int(time.time()), "data": {"object": obj}}


def mixed_events(mix: Mix, run: str) -> list[dict[str, Any]]:
    """Every create first, then the updates, voids and cancels (a third updated, an eighth voided/canceled)."""
    invoice = _sample("01_invoice_created.json")["data"]["object"]
    sales = _sample("05_sales_invoice_created.json")["data"]["object"]
    order = _sample("08_purchase_order_created.json")["data"]["object"]
    creates: list[tuple[str, dict[str, Any]]] = []
    later: list[tuple[str, dict[str, Any]]] = []
    for i in range(mix.supplier_invoices):
        obj = {**copy.deepcopy(invoice), "id": f"inv_{run}_{i}", "invoice_number": f"F-{run}-{i:04d}"}
        obj["provider_id"] = ("prv_123", "prv_207")[i % 2]
        creates.append(("invoice.created", obj))
        if i % 3 == 1:
            later.append(("invoice.updated", {**obj, "due_date": "2026-12-31", "updated_at": "2026-11-04T08:30:00Z"}))
        if i % 8 == 2:
            later.append(("invoice.voided", {**obj, "status": "void", "updated_at": "2026-11-05T09:00:00Z"}))
    for i in range(mix.sales_invoices):
        obj = {**copy.deepcopy(sales), "id": f"sin_{run}_{i}"}
        creates.append(("sales_invoice.created", obj))
        if i % 8 == 3:
            later.append(
                ("sales_invoice.canceled", {**obj, "status": "canceled", "updated_at": "2026-11-09T11:00:00Z"})
            )
    for i in range(mix.purchase_orders):
        obj = {
            **copy.deepcopy(order),
            "id": f"po_{run}_{i}",
            "number": f"PO-{run}-{i + 1:04d}",
        }  # FacturaDirecta numbers from 1
        obj["provider_id"] = ("prv_123", "prv_207")[i % 2]
        creates.append(("purchase_order.created", obj))
        if i % 3 == 1:
            later.append(
                (
                    "purchase_order.updated",
                    {**obj, "notes": "Acceso por C/ Mayor", "updated_at": "2026-11-02T11:45:00Z"},
                )
            )
        if i % 8 == 4:
            later.append(
                ("purchase_order.canceled", {**obj, "status": "canceled", "updated_at": "2026-11-04T15:20:00Z"})
            )
    return [_event(kind, obj, n, run) for n, (kind, obj) in enumerate(creates + later)]


@dataclass(frozen=True)
class History:
    """What the state table holds before the run: 30 days of a busy stack."""

    closed_batches: int
    ledger_entries: int
    limiter_windows: int


# One closed batch per scheduled minute for 30 days: the most history the poller leaves at any volume
# (each run submits at most one batch); ledger entries and limiter windows as a busy month leaves them.
FULL_HISTORY = History(closed_batches=30 * 24 * 60, ledger_entries=10_000, limiter_windows=20)
QUICK_HISTORY = History(closed_batches=10_000, ledger_entries=3_000, limiter_windows=20)


class LogMeter:
    """The stack's log sink: bytes per function, and how often each EMF metric series is published."""

    def __init__(self) -> None:
        self.bytes: Counter[str] = Counter()
        self.series: Counter[tuple[str, ...]] = Counter()
        self.lines: Counter[str] = Counter()
        self.emf_blobs: Counter[str] = Counter()

    def __call__(self, function: str, line: str) -> None:
        self.bytes[function] += len(line.encode("utf-8")) + 1
        self.lines[function] += 1
        if '"_aws"' not in line:
            return
        try:
            document = json.loads(line)
        except ValueError:
            return
        self.emf_blobs[function] += 1
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                values = tuple(f"{d}={document.get(d)}" for d in dimensions)
                for metric in directive.get("Metrics", []):
                    self.series[(directive.get("Namespace", ""), metric.get("Name", ""), *values)] += 1

    def snapshot(self) -> LogMeter:
        """A copy of the counts so far."""
        copied = LogMeter()
        copied.bytes, copied.series = Counter(self.bytes), Counter(self.series)
        copied.lines, copied.emf_blobs = Counter(self.lines), Counter(self.emf_blobs)
        return copied


def usage_delta(after: FunctionUsage, before: FunctionUsage) -> FunctionUsage:
    """What a function consumed between two snapshots of its usage."""
    delta = FunctionUsage(memory_mb=after.memory_mb)
    delta.invocations = after.invocations - before.invocations
    delta.cold_starts = after.cold_starts - before.cold_starts
    delta.billed_ms = after.billed_ms - before.billed_ms
    delta.init_ms = after.init_ms - before.init_ms
    delta.durations_ms = after.durations_ms[len(before.durations_ms) :]
    delta.max_rss_kb = after.max_rss_kb
    delta.aws_ms = after.aws_ms - before.aws_ms
    delta.http_calls = after.http_calls - before.http_calls
    delta.http_ms = after.http_ms - before.http_ms
    delta.http_bytes_out = after.http_bytes_out - before.http_bytes_out
    delta.calls = after.calls - before.calls
    delta.units = after.units - before.units
    return delta


def aws_billed_ms(usage: FunctionUsage) -> float:
    """The billed duration on AWS: measured, less the local waits on moto and the peers, plus AWS's."""
    aws_wait = sum(n * AWS_LATENCY_MS.get(call.split(":")[0], 10.0) for call, n in usage.calls.items())
    adjusted = usage.billed_ms - usage.aws_ms - usage.http_ms + aws_wait + usage.http_calls * PLATFORM_LATENCY_MS
    # Each invocation is still billed at least 1 ms.
    return max(float(usage.invocations), adjusted)


def function_units(usage: FunctionUsage, log_bytes: int) -> dict[str, Decimal]:
    """A function's billed units as the cost model prices them (INIT left out); "log:bytes" what Logs ingests."""
    # Secrets are read once per container (cold_start_units), not per document.
    units = {key: Decimal(str(value)) for key, value in usage.units.items() if key != "secretsmanager:calls"}
    units["lambda:requests"] = Decimal(usage.invocations)
    # Warm time only: cold starts' INIT is priced by volume (costmodel.cold_share), not per document.
    warm_ms = max(float(usage.invocations), aws_billed_ms(usage) - usage.init_ms)
    units["lambda:gb-s"] = Decimal(str(warm_ms)) / 1000 * usage.memory_mb / 1024
    units["transfer:gb-out"] = Decimal(usage.http_bytes_out) / costmodel.GB
    units["log:bytes"] = Decimal(log_bytes + usage.invocations * PLATFORM_LOG_BYTES_PER_INVOCATION)
    return units


def cold_start_units(usage: FunctionUsage) -> dict[str, Decimal]:
    """What one cold start costs, the run's mean: its INIT, and the secrets a new container reads once."""
    return {
        "lambda:init-gb-s": Decimal(str(usage.init_ms / usage.cold_starts)) / 1000 * usage.memory_mb / 1024,
        "secretsmanager:calls": Decimal(usage.calls["secretsmanager:GetSecretValue"]) / usage.cold_starts,
    }


def deployment_of(template: Template) -> costmodel.Deployment:
    """What the template deploys that bills by the month, at its parameters' defaults."""
    defaults = template.parameter_defaults()

    def value(spec: Any) -> str:
        if isinstance(spec, dict) and "Ref" in spec:
            return defaults[spec["Ref"]]
        return str(spec)

    resources = template.document["Resources"]
    mapped: list[str] = []
    for spec in template.functions:
        for event in spec.events_of_type("SQS").values():
            queue = resources[event["Properties"]["Queue"]["Fn::GetAtt"][0]]
            mapped.append("sqs:fifo" if queue["Properties"].get("FifoQueue") else "sqs:standard")
    schedule = value(defaults["TuimprentaPollSchedule"])
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", schedule)
    if not match:
        raise ValueError(f"the bench prices rate(n minutes|hours) schedules, not {schedule}")
    every = int(match.group(1)) * (60 if match.group(2).startswith("hour") else 1)
    globals_ = template.document.get("Globals", {}).get("Function", {})
    snapstart_gb = Decimal(0)
    for spec in template.functions:
        props = resources[spec.logical_id]["Properties"]
        if value((props.get("SnapStart") or {}).get("ApplyOn", "None")) == "PublishedVersions":
            snapstart_gb += Decimal(spec.memory) / 1024
    return costmodel.Deployment(
        secrets=len(template.resources_of_type("AWS::SecretsManager::Secret")),
        sqs_mapped_queues=tuple(mapped),
        alarms=len(template.resources_of_type("AWS::CloudWatch::Alarm")),
        dashboards=len(template.resources_of_type("AWS::CloudWatch::Dashboard")),
        scheduled_runs_per_month=costmodel.MINUTES_PER_MONTH / every,
        tracing=value(globals_.get("Tracing", "PassThrough")) == "Active",
        log_retention_days=int(defaults["LogRetentionDays"]),
        snapstart_gb=snapstart_gb,
    )


def queue_deliveries(template: Template, event_types: Sequence[str]) -> dict[str, int]:
    """Events per queue price key ("sqs:fifo", "sqs:standard"), routed as the template's defaults route them."""
    routing: dict[str, str] = json.loads(template.parameter_defaults()["RoutingTable"])
    resources = template.document["Resources"]
    receiver = resources["WebhookReceiverFunction"]["Properties"]["Environment"]["Variables"]
    delivered: Counter[str] = Counter()
    for kind in event_types:
        url = receiver[f"{routing[kind].upper()}_QUEUE_URL"]
        # !If [Use<Platform>, !Ref <Queue>, ""]: the queue the receiver sends to when the platform is deployed
        queue = url["Fn::If"][1]["Ref"] if "Fn::If" in url else url["Ref"]
        delivered["sqs:fifo" if resources[queue]["Properties"].get("FifoQueue") else "sqs:standard"] += 1
    return dict(delivered)


def seed_history(stack: LocalStack, history: History) -> None:
    """Write 30 days of closed batches, ledger entries and limiter windows to the state table."""
    from invoice_bridge.keys import ledger_pk, ledger_sk
    from invoice_bridge.tuimprenta.batches import BATCH_CLOSED, BatchItem

    client = stack.aws.dynamodb()
    table = stack.provisioned.tables["StateTable"]
    now = time.time()
    items: list[dict[str, Any]] = []
    for n in range(history.closed_batches):
        created = now - 30 * 86400 + n * 60
        batch = BatchItem(
            key=f"ib-history-{n:06d}",
            members=[f"sin_history_{n}_{m}" for m in range(9)],
            status=BATCH_CLOSED,
            batch_id=f"batch_history_{n}",
            created_at=created,
            next_poll_at=created + 60,
            polls=3,
            outcome="completed",
        )
        items.append(batch.to_item())
    destinations = ("quipu", "tuimprenta", "facturadirecta")
    for n in range(history.ledger_entries):
        destination = destinations[n % 3]
        entry = {"object_id": f"doc_history_{n}", "status": "synced", "remote_id": f"r{n}", "event_id": f"evt_{n}"}
        items.append(
            {
                "pk": {"S": ledger_pk(destination)},
                "sk": {"S": ledger_sk(f"doc_history_{n}")},
                "status": {"S": "synced"},
                "entry": {"S": json.dumps(entry)},
                "version": {"N": "3"},
            }
        )
    for n in range(history.limiter_windows):
        grants = [{"N": f"{now - 86400 + n + g / 10:.3f}"} for g in range(5)]
        items.append(
            {
                "pk": {"S": f"limiter#history#{n:04d}"},
                "sk": {"S": "window"},
                "grants": {"L": grants},
                "paused_until": {"N": "0"},
                "version": {"N": "40"},
            }
        )
    for start in range(0, len(items), 25):
        request: Any = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None


@dataclass
class RunFigures:
    """What one mixed run consumed, split into the documents' share and the idle scheduled runs'."""

    mix: Mix
    history: History
    deployment: costmodel.Deployment
    events: int
    deliveries: dict[str, int]  # events per queue price key
    seconds: float
    ticks: int
    functions: dict[str, FunctionUsage]  # during the documents' run, idle runs included
    per_cold_start: dict[str, dict[str, Decimal]]  # INIT GB-s and secret reads of one cold start, per function
    logs: LogMeter  # during the documents' run
    idle_run: dict[str, Decimal]  # one idle scheduled run's units
    idle_series: set[tuple[str, ...]]
    idle_reads_per_run: Decimal
    idle_calls: Counter[str]  # AWS calls of the measured idle runs, in all
    idle_cold_starts: int
    runner_units: Counter[str]
    runner_calls: Counter[str]
    dead_lettered: int
    platform_requests: int
    scheduled: str = "TuimprentaPollerFunction"

    def documents(self) -> costmodel.DocumentUnits:
        """The units the documents caused: every function's, less the idle runs' share of the poller."""
        run = costmodel.DocumentUnits(documents=self.mix.documents, per_cold_start=dict(self.per_cold_start))
        totals: defaultdict[str, Decimal] = defaultdict(Decimal)
        for name, usage in self.functions.items():
            units = function_units(usage, self.logs.bytes[name])
            if name == self.scheduled:
                for key, per_run in self.idle_run.items():
                    units[key] = max(Decimal(0), units.get(key, Decimal(0)) - per_run * self.ticks)
            if name == "WebhookReceiverFunction":
                units["apigw:requests"] = Decimal(usage.invocations)
                if self.deployment.snapstart_gb:
                    units["snapstart:restore-gb"] = Decimal(usage.cold_starts) * usage.memory_mb / 1024
            run.invocations[name] = units["lambda:requests"]
            for key, value in units.items():
                totals[key] += value
        for key, requests_ in self.runner_units.items():
            totals[key] += Decimal(requests_)
        run.log_bytes = totals.pop("log:bytes")
        run.units = dict(totals)
        run.series = {k: v for k, v in self.logs.series.items() if k not in self.idle_series}
        return run


def _snapshot(stack: LocalStack) -> dict[str, FunctionUsage]:
    return {name: copy.deepcopy(pool.usage) for name, pool in stack.pools.items()}


def run_mix(mix: Mix, history: History) -> RunFigures:
    """Seed the history, measure idle scheduled runs, then deliver the mix and add up what it consumed.

    The scheduler is driven by hand: each tick stands for one minute of the default schedule, so idle runs
    are priced per month and subtracted from the documents' share, whatever the bench's own pace.
    """
    logs = LogMeter()
    options = StackOptions(
        port=0,
        log_sink=logs,
        # The bench ticks the scheduler itself (one tick per simulated minute).
        environ={"LOCAL_SCHEDULE_SECONDS": "3600", "TUIMPRENTA_PROCESSING_SECONDS": "1"},
        parameter_overrides={"TuimprentaPollBaseSeconds": "1", "TuimprentaPollMaxSeconds": "2"},
    )
    with LocalStack(options) as stack:
        scheduler = stack.scheduler
        if scheduler is None:
            raise RuntimeError("the template schedules no function")
        seed_history(stack, history)
        poller = RunFigures.scheduled
        # Runs until one is warm and ran a whole run: the first is a cold start (and moves the open batches an
        # earlier version kept among the closed ones once), not an idle run's steady cost.
        for _ in range(WARM_UP_RUNS):
            cold_before = stack.pools[poller].usage.cold_starts
            scheduler.tick()
            if stack.pools[poller].usage.cold_starts == cold_before:
                break
        before, logs_before = _snapshot(stack), logs.snapshot()
        for _ in range(IDLE_RUNS):
            scheduler.tick()
        after, logs_after = _snapshot(stack), logs.snapshot()
        idle_usage = usage_delta(after[poller], before[poller])
        idle_total = function_units(idle_usage, logs_after.bytes[poller] - logs_before.bytes[poller])
        idle_run = {key: value / IDLE_RUNS for key, value in idle_total.items()}
        # The always-warm poller reads its secrets again each SECRETS_MAX_AGE_SECONDS (an hour: 60 runs).
        poller_usage = stack.pools[poller].usage
        idle_run["secretsmanager:calls"] = cold_start_units(poller_usage)["secretsmanager:calls"] / SECRET_REREAD_RUNS
        idle_series = {s for s in logs_after.series if logs_after.series[s] > logs_before.series[s]}
        idle_reads = Decimal(str(idle_usage.units.get("dynamodb:read", 0))) / IDLE_RUNS

        peer = stack.peers["buildnexion"]
        routing: dict[str, str] = json.loads(stack.template.parameter_defaults()["RoutingTable"])
        registration = requests.post(
            f"{peer.base_url}/webhooks",
            json={"url": f"{stack.url}/webhooks/buildnexion", "events": sorted(routing)},
            headers={"Authorization": f"Bearer {stack.settings.buildnexion_api_key}"},
            timeout=(3.05, 10),
        )
        registration.raise_for_status()
        events = mixed_events(mix, f"{int(time.time())}")
        start_usage, start_logs = _snapshot(stack), logs.snapshot()
        runner_before = [(Counter(p.sqs_units), Counter(p.sqs_requests)) for p in stack.pollers]
        ticks = 0
        started = time.monotonic()
        for envelope in events:
            (delivery,) = peer.deliver(envelope)
            if delivery.status != 200:
                raise RuntimeError(f"{envelope['id']} was answered {delivery.status}")
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while True:
            scheduler.tick()  # one simulated minute: the poller runs as its default schedule runs it
            ticks += 1
            status = stack.status()
            if status["idle"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not settle in {SETTLE_TIMEOUT_SECONDS} s: {status}")
            time.sleep(1.0)  # the pace of the simulated minutes; the loop waits on the stack's own status
        seconds = time.monotonic() - started
        end_usage, end_logs = _snapshot(stack), logs.snapshot()
        runner_units: Counter[str] = Counter()
        runner_calls: Counter[str] = Counter()
        for poller_runner, (units_before, calls_before) in zip(stack.pollers, runner_before, strict=True):
            runner_units.update(poller_runner.sqs_units - units_before)
            runner_calls.update(poller_runner.sqs_requests - calls_before)
        doc_logs = LogMeter()
        doc_logs.bytes = end_logs.bytes - start_logs.bytes
        doc_logs.series = end_logs.series - start_logs.series
        doc_logs.lines = end_logs.lines - start_logs.lines
        doc_logs.emf_blobs = end_logs.emf_blobs - start_logs.emf_blobs
        platform_requests = sum(sum(p.calls.values()) for name, p in stack.peers.items() if name != "buildnexion")
        return RunFigures(
            mix=mix,
            history=history,
            deployment=deployment_of(stack.template),
            events=len(events),
            deliveries=queue_deliveries(stack.template, [e["type"] for e in events]),
            seconds=seconds,
            ticks=ticks,
            functions={name: usage_delta(end_usage[name], start_usage[name]) for name in end_usage},
            per_cold_start={name: cold_start_units(usage) for name, usage in end_usage.items() if usage.cold_starts},
            logs=doc_logs,
            idle_run=idle_run,
            idle_series=idle_series,
            idle_reads_per_run=idle_reads,
            idle_calls=idle_usage.calls,
            idle_cold_starts=idle_usage.cold_starts,
            runner_units=runner_units,
            runner_calls=runner_calls,
            dead_lettered=sum(q["dlq"] for q in status["queues"].values()),
            platform_requests=platform_requests,
        )


def _money(value: Decimal) -> str:
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


def _price(key: str) -> str:
    price = costmodel.PRICES[key]
    per = "" if price.per == 1 else f"/{price.per:,.0f}"
    return f"${price.usd:g}{per}"


def document_table(run: costmodel.DocumentUnits, deployment: costmodel.Deployment) -> tuple[list[str], Decimal]:
    """Dollars per million documents, per item, and their total."""
    lines = [f"  {'item (eu-west-1)':42}{'units per 1M docs':>20}{'price':>18}{'$ per 1M docs':>15}  source (as of)"]
    total = Decimal(0)
    for line in costmodel.document_lines(run, deployment):
        price = costmodel.PRICES[line.key]
        total += line.usd
        lines.append(
            f"  {price.unit:42}{line.units:>20,.1f}{_price(line.key):>18}{_money(line.usd):>15}"
            f"  {price.source} ({price.as_of})"
        )
    lines.append(f"  {'total':42}{'':>20}{'':>18}{_money(total):>15}  target <= {TARGET_PER_MILLION:.2f}")
    return lines, total


def floor_table(deliveries: Mapping[str, int], documents: int, measured: Decimal) -> tuple[list[str], Decimal]:
    """What DESIGN.md's contracts cost at the least per million documents, and what that leaves under the target."""
    lines = [f"  {'item (eu-west-1)':42}{'units per 1M docs':>20}{'price':>18}{'$ per 1M docs':>15}  what fixes it"]
    why = {
        "apigw:requests": "one webhook request per event",
        "lambda:requests": "one receiver invocation per event",
        "dynamodb:write": "dedupe record per event; ledger intent + result per document",
        "sqs:fifo": "send per event; receive + delete in batches of 10",
        "sqs:standard": "send per event; receive + delete in batches of 10",
    }
    total = Decimal(0)
    for line in costmodel.floor_lines(deliveries, documents):
        total += line.usd
        lines.append(
            f"  {costmodel.PRICES[line.key].unit:42}{line.units:>20,.1f}{_price(line.key):>18}{_money(line.usd):>15}"
            f"  {why[line.key]}"
        )
    lines.append(f"  {'total':42}{'':>20}{'':>18}{_money(total):>15}")
    lines.append(
        f"  left under the ${TARGET_PER_MILLION:.2f} target for Lambda time, logs, reads, data out and any other"
        f" write: ${TARGET_PER_MILLION - total:.2f}; this run spent ${measured - total:.2f} above the floor"
    )
    return lines, total


def fixed_table(fixed: list[costmodel.Line]) -> tuple[list[str], Decimal]:
    """Dollars per month with no traffic, per item, and their total."""
    lines = [f"  {'item (eu-west-1)':42}{'units per month':>20}{'price':>18}{'$ per month':>15}  why"]
    total = Decimal(0)
    for line in fixed:
        total += line.usd
        price = costmodel.PRICES[line.key]
        lines.append(f"  {price.unit:42}{line.units:>20,.3f}{_price(line.key):>18}{_money(line.usd):>15}  {line.note}")
    lines.append(f"  {'total':42}{'':>20}{'':>18}{_money(total):>15}  target <= {TARGET_FIXED_PER_MONTH:.2f}")
    return lines, total


def bill_table(
    run: costmodel.DocumentUnits,
    deployment: costmodel.Deployment,
    fixed: list[costmodel.Line],
    idle_series: set[tuple[str, ...]],
) -> list[str]:
    """The monthly bill at 1,000 to 1,000,000 documents a month."""
    fixed_total = sum((line.usd for line in fixed), Decimal(0))
    lines = [f"  {'documents a month':>18}{'fixed':>10}{'documents':>12}{'metric series':>15}{'bill':>12}"]
    for volume in costmodel.VOLUMES:
        per_doc = sum((line.usd for line in costmodel.document_lines(run, deployment, volume)), Decimal(0))
        variable = per_doc * volume / costmodel.MILLION
        series = costmodel.series_dollars(run, volume, idle_series)
        bill = costmodel.monthly_bill(run, deployment, fixed, idle_series, volume)
        lines.append(
            f"  {volume:>18,}{_money(fixed_total):>10}{_money(variable):>12}{_money(series):>15}{_money(bill):>12}"
        )
    return lines


def idle_lines(figures: RunFigures) -> list[str]:
    """What one idle scheduled run calls, and the metric series the documents and the idle runs publish."""
    calls = "; ".join(f"{name} {n / IDLE_RUNS:g}" for name, n in sorted(figures.idle_calls.items()))
    lines = [f"  one idle run: {calls}; {figures.idle_cold_starts} cold starts in {IDLE_RUNS} idle runs"]
    for series, seen in sorted(figures.logs.series.items()):
        where = "idle runs too" if series in figures.idle_series else f"{seen / figures.mix.documents:.2f} a document"
        lines.append(f"  series {' '.join(series[1:])}: {where}")
    lines.extend(
        f"  series {' '.join(s[1:])}: idle runs" for s in sorted(figures.idle_series - set(figures.logs.series))
    )
    return lines


def write_lines(figures: RunFigures) -> list[str]:
    """DynamoDB writes (attempts) and write units per document, per function."""
    docs = figures.mix.documents
    lines = [f"  {'function':32}{'Put':>7}{'Update':>8}{'Delete':>8}{'WRU':>8}  per document"]
    for name, usage in figures.functions.items():
        puts, updates, deletes = (usage.calls[f"dynamodb:{op}"] for op in ("PutItem", "UpdateItem", "DeleteItem"))
        wru = usage.units.get("dynamodb:write", 0.0)
        if name == figures.scheduled:
            wru = max(0.0, wru - float(figures.idle_run.get("dynamodb:write", 0)) * figures.ticks)
        lines.append(f"  {name:32}{puts / docs:>7.2f}{updates / docs:>8.2f}{deletes / docs:>8.2f}{wru / docs:>8.2f}")
    lines.append(f"  (the poller's WRU less {figures.ticks} idle runs' share; its Put/Delete counts include them)")
    return lines


def log_lines(figures: RunFigures) -> list[str]:
    """Log lines, EMF blobs and bytes per document, per function."""
    docs = figures.mix.documents
    lines = [f"  {'function':32}{'lines':>8}{'EMF':>8}{'bytes':>9}  per document (idle runs included)"]
    for name in figures.functions:
        lines.append(
            f"  {name:32}{figures.logs.lines[name] / docs:>8.2f}{figures.logs.emf_blobs[name] / docs:>8.2f}"
            f"{figures.logs.bytes[name] / docs:>9.0f}"
        )
    return lines


def function_lines(figures: RunFigures) -> list[str]:
    """Per function: invocations, billed time, peak memory: what right-sizing reads."""
    lines = [
        f"  {'function':32}{'calls':>7}{'cold':>6}{'init ms':>9}{'med ms':>8}{'billed s':>10}{'AWS s':>8}"
        f"{'MemorySize':>11}{'peak RSS':>10}{'AWS calls/doc':>15}"
    ]
    docs = figures.mix.documents
    for name, usage in figures.functions.items():
        median = statistics.median(usage.durations_ms) if usage.durations_ms else 0.0
        init = usage.init_ms / usage.cold_starts if usage.cold_starts else 0.0
        lines.append(
            f"  {name:32}{usage.invocations:>7}{usage.cold_starts:>6}{init:>9.0f}{median:>8.1f}"
            f"{usage.billed_ms / 1000:>10.2f}{aws_billed_ms(usage) / 1000:>8.2f}{usage.memory_mb:>8} MB"
            f"{usage.max_rss_kb / 1024:>7.0f} MB{sum(usage.calls.values()) / docs:>15.2f}"
        )
    return lines


def call_lines(figures: RunFigures) -> list[str]:
    """AWS calls per document by service and action, Lambda's pollers included."""
    calls: Counter[str] = Counter()
    for usage in figures.functions.values():
        calls.update(usage.calls)
    calls.update({f"{k} (Lambda poller)": v for k, v in figures.runner_calls.items()})
    docs = figures.mix.documents
    cells = [f"{name} {count / docs:.2f}" for name, count in sorted(calls.items())]
    lines = []
    for start in range(0, len(cells), 4):
        lines.append("  " + "; ".join(cells[start : start + 4]))
    lines.append(f"  in all {sum(calls.values()) / docs:.2f} AWS calls per document (idle runs included)")
    return lines


def run(quick: bool) -> None:
    """Run the mix on a table with history and print the cost figures."""
    mix = QUICK if quick else FULL
    history = QUICK_HISTORY if quick else FULL_HISTORY
    figures = run_mix(mix, history)
    documents = figures.documents()
    deployment = figures.deployment
    print(
        f"Cost ({'quick' if quick else 'full'} run, prices of eu-west-1 as checked {costmodel.PRICES_CHECKED}):"
        f" {mix.supplier_invoices} supplier invoices, {mix.sales_invoices} sales invoices,"
        f" {mix.purchase_orders} purchase orders; {figures.events} events; settled in {figures.seconds:.1f} s"
        f" ({figures.ticks} scheduled runs); {figures.dead_lettered} dead-lettered;"
        f" {figures.platform_requests / mix.documents:.2f} platform requests per document"
    )
    print(
        f"  state table history: {history.closed_batches:,} closed batches, {history.ledger_entries:,} ledger"
        f" entries, {history.limiter_windows} limiter windows; X-Ray {'on' if deployment.tracing else 'off'}"
    )
    print("\nDollars per million documents")
    lines, total = document_table(documents, deployment)
    print(*lines, sep="\n")
    print(
        f"  total ${total:.2f} per million documents (target <= ${TARGET_PER_MILLION:.2f}: "
        f"{'met' if total <= TARGET_PER_MILLION else 'NOT met'})"
    )
    print("\nThe floor: what the design's fixed contracts cost per million documents, whatever the code does")
    print(*floor_table(figures.deliveries, mix.documents, total)[0], sep="\n")
    fixed = costmodel.fixed_lines(deployment, figures.idle_run, len(figures.idle_series))
    print(f"\nFixed dollars per month (no traffic; one idle scheduled run reads {figures.idle_reads_per_run} RRU)")
    lines, fixed_total = fixed_table(fixed)
    print(*lines, sep="\n")
    print(
        f"  total ${fixed_total:.2f} a month (target <= ${TARGET_FIXED_PER_MONTH:.2f}: "
        f"{'met' if fixed_total <= TARGET_FIXED_PER_MONTH else 'NOT met'})"
    )
    print("\nThe monthly bill (metric series: those documents publish, billed for the hours they appear in)")
    print(*bill_table(documents, deployment, fixed, figures.idle_series), sep="\n")
    print("\nThe idle scheduled run, and the metric series")
    print(*idle_lines(figures), sep="\n")
    print("\nDynamoDB writes per document")
    print(*write_lines(figures), sep="\n")
    print("\nLogs per document")
    print(*log_lines(figures), sep="\n")
    print("\nAWS calls per document")
    print(*call_lines(figures), sep="\n")
    print("\nFunctions (memory right-sizing reads peak RSS and billed time)")
    print(*function_lines(figures), sep="\n")
    print(
        f"  AWS s: billed time less local waits on moto and the sandbox platforms, plus {PLATFORM_LATENCY_MS:.0f} ms"
        " per platform request and",
        f"  {', '.join(f'{k} {v:.0f} ms' for k, v in AWS_LATENCY_MS.items())} per AWS call (in-region estimates).",
        sep="\n",
    )
