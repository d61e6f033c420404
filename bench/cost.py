"""Cost per million documents: a mixed run through the local stack, priced at AWS's published eu-west-1 prices.

The run is the chaos mix without faults: supplier invoices (some updated, some voided), sales invoices
(some canceled) and purchase orders (some updated, some canceled), each event signed and delivered by the
sandbox BuildNexion to the local gateway, through the real handlers, until the stack is idle. Every
function process meters its AWS calls (botocore events, sandbox/usage.py), its platform requests, its
billed duration (INIT included on a cold start, rounded up to 1 ms) and its peak memory; the local
runner counts the SQS requests Lambda's pollers make; the log sink counts the bytes CloudWatch Logs
would ingest. A document is one BuildNexion object (its create, updates and void/cancel together).

Local latencies are not Lambda's: moto answers on loopback and the sandbox platforms answer in about a
millisecond. The priced duration therefore takes each function's measured billed time, removes the time
spent waiting on moto and on the sandbox platforms, and adds back an assumed in-region AWS latency per
call and an assumed platform latency per request (AWS_LATENCY_MS, PLATFORM_LATENCY_MS): the CPU time and
the rate-limit waits stay as measured. Both figures are printed.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import requests

from sandbox.stack import REPO_ROOT, LocalStack, StackOptions
from sandbox.usage import PLATFORM_LOG_BYTES_PER_INVOCATION, FunctionUsage

EVENTS = REPO_ROOT / "events" / "buildnexion"
TARGET_PER_MILLION = 5.00
REGION = "eu-west-1"
SETTLE_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Price:
    """One published price: `usd` per `per` units of `unit`."""

    usd: float
    per: float
    unit: str
    source: str
    as_of: str  # the date the price took effect (the pricing page lists it as current)


# AWS's published prices for eu-west-1 (Europe, Ireland), first tier, free tiers ignored.
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_SQS = "https://aws.amazon.com/sqs/pricing/"
_DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
_CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
PRICES: dict[str, Price] = {
    "apigw:requests": Price(
        1.11, 1e6, "HTTP API requests (<= 512 KB)", "https://aws.amazon.com/api-gateway/pricing/", "2020-03-12"
    ),
    "lambda:requests": Price(0.20, 1e6, "Lambda requests", _LAMBDA, "2020-12-01"),
    "lambda:gb-s": Price(0.0000133334, 1, "Lambda arm64 GB-seconds", _LAMBDA, "2021-09-29"),
    "sqs:standard": Price(0.40, 1e6, "SQS standard requests (64 KB chunks)", _SQS, "2019-01-01"),
    "sqs:fifo": Price(0.50, 1e6, "SQS FIFO requests (64 KB chunks)", _SQS, "2019-01-01"),
    "dynamodb:write": Price(0.70675, 1e6, "DynamoDB on-demand write units", _DYNAMODB, "2024-11-01"),
    "dynamodb:read": Price(0.1415, 1e6, "DynamoDB on-demand read units", _DYNAMODB, "2024-11-01"),
    "secretsmanager:calls": Price(0.05, 1e4, "Secrets Manager API calls", _SECRETS, "2018-04-04"),
    "logs:gb": Price(0.57, 1, "CloudWatch Logs ingested GB (logs, EMF)", _CLOUDWATCH, "2019-01-01"),
    "xray:traces": Price(5.00, 1e6, "X-Ray traces recorded", "https://aws.amazon.com/xray/pricing/", "2017-04-19"),
    "cloudwatch:metric-month": Price(0.30, 1, "CloudWatch custom metric-month (EMF)", _CLOUDWATCH, "2019-01-01"),
    "secretsmanager:secret-month": Price(0.40, 1, "Secrets Manager secret-month", _SECRETS, "2018-04-04"),
}

# Assumed latencies on AWS (the local ones are moto's and the sandbox peers'): in-region SDK calls from
# Lambda, and a request to an outside platform over the internet.
AWS_LATENCY_MS = {"dynamodb": 6.0, "sqs": 12.0, "secretsmanager": 20.0}
PLATFORM_LATENCY_MS = 120.0
# X-Ray's default sampling rule: the first request each second, then 5%; at volume, 5% of invocations.
XRAY_SAMPLING = 0.05


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


@dataclass
class RunFigures:
    """What one mixed run consumed."""

    mix: Mix
    events: int
    seconds: float
    functions: dict[str, FunctionUsage]
    log_bytes: Counter[str]
    runner_units: Counter[str]
    runner_calls: Counter[str]
    metric_series: set[tuple[str, ...]]
    dead_lettered: int
    platform_requests: int


class LogMeter:
    """The stack's log sink: bytes per function, and the distinct EMF metric series seen."""

    def __init__(self) -> None:
        self.bytes: Counter[str] = Counter()
        self.series: set[tuple[str, ...]] = set()

    def __call__(self, function: str, line: str) -> None:
        self.bytes[function] += len(line.encode("utf-8")) + 1
        if '"_aws"' not in line:
            return
        try:
            document = json.loads(line)
        except ValueError:
            return
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                values = tuple(f"{d}={document.get(d)}" for d in dimensions)
                for metric in directive.get("Metrics", []):
                    self.series.add((directive.get("Namespace", ""), metric.get("Name", ""), *values))


def run_mix(mix: Mix) -> RunFigures:
    """Deliver the mix through the local stack and add up what every function consumed."""
    logs = LogMeter()
    options = StackOptions(
        port=0,
        log_sink=logs,
        environ={"LOCAL_SCHEDULE_SECONDS": "1", "TUIMPRENTA_PROCESSING_SECONDS": "1"},
        parameter_overrides={"TuimprentaPollBaseSeconds": "1", "TuimprentaPollMaxSeconds": "2"},
    )
    with LocalStack(options) as stack:
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
        started = time.monotonic()
        for envelope in events:
            (delivery,) = peer.deliver(envelope)
            if delivery.status != 200:
                raise RuntimeError(f"{envelope['id']} was answered {delivery.status}")
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while not (status := stack.status())["idle"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not settle in {SETTLE_TIMEOUT_SECONDS} s: {status}")
            time.sleep(0.2)  # a poll interval: the loop waits on the stack's own status
        seconds = time.monotonic() - started
        runner_units: Counter[str] = Counter()
        runner_calls: Counter[str] = Counter()
        for poller in stack.pollers:
            runner_units.update(poller.sqs_units)
            runner_calls.update(poller.sqs_requests)
        platform_requests = sum(sum(p.calls.values()) for name, p in stack.peers.items() if name != "buildnexion")
        return RunFigures(
            mix=mix,
            events=len(events),
            seconds=seconds,
            functions={name: pool.usage for name, pool in stack.pools.items()},
            log_bytes=logs.bytes,
            runner_units=runner_units,
            runner_calls=runner_calls,
            metric_series=logs.series,
            dead_lettered=sum(q["dlq"] for q in status["queues"].values()),
            platform_requests=platform_requests,
        )


def aws_billed_ms(usage: FunctionUsage) -> float:
    """The billed duration on AWS: measured, less the local waits on moto and the peers, plus AWS's."""
    aws_wait = sum(n * AWS_LATENCY_MS.get(call.split(":")[0], 10.0) for call, n in usage.calls.items())
    adjusted = usage.billed_ms - usage.aws_ms - usage.http_ms + aws_wait + usage.http_calls * PLATFORM_LATENCY_MS
    # Each invocation is still billed at least 1 ms.
    return max(float(usage.invocations), adjusted)


def cost_lines(figures: RunFigures) -> tuple[list[str], float]:
    """The cost table and the total per million documents."""
    docs = figures.mix.documents
    per_million = 1e6 / docs
    units: defaultdict[str, float] = defaultdict(float)
    units["apigw:requests"] = figures.functions["WebhookReceiverFunction"].invocations
    gb_s_local = gb_s_aws = 0.0
    for usage in figures.functions.values():
        units["lambda:requests"] += usage.invocations
        gb_s_local += usage.gb_seconds
        gb_s_aws += aws_billed_ms(usage) / 1000 * usage.memory_mb / 1024
        for key, value in usage.units.items():
            units[key] += value
    units["lambda:gb-s"] = gb_s_aws
    for key, value in figures.runner_units.items():
        units[key] += value
    log_bytes = sum(figures.log_bytes.values()) + units["lambda:requests"] * PLATFORM_LOG_BYTES_PER_INVOCATION
    units["logs:gb"] = log_bytes / 1e9
    units["xray:traces"] = units["lambda:requests"] * XRAY_SAMPLING
    lines = [
        f"  {'item (eu-west-1)':40}{'units/doc':>12}{'price':>14}  {'$ per 1M docs':>14}  source (as of)",
    ]
    total = 0.0
    for key, price in PRICES.items():
        if key not in units:
            continue
        per_doc = units[key] / docs
        dollars = per_doc * per_million * price.usd / price.per
        total += dollars
        per = "" if price.per == 1 else f"/{price.per:.0e}".replace("+0", "")
        lines.append(
            f"  {price.unit:40}{per_doc:>12.4g}{f'${price.usd:g}{per}':>14}  {dollars:>14.4f}  "
            f"{price.source} ({price.as_of})"
        )
    lines.append(f"  {'total':40}{'':>12}{'':>14}  {total:>14.2f}  target <= {TARGET_PER_MILLION:.2f}")
    lines.append(
        f"  Lambda GB-s per doc: {gb_s_aws / docs:.4g} priced (AWS latencies assumed), {gb_s_local / docs:.4g} as"
        " measured locally"
    )
    return lines, total


def fixed_lines(figures: RunFigures) -> list[str]:
    """What the bundle costs per month whatever the volume."""
    metrics = PRICES["cloudwatch:metric-month"]
    secrets = PRICES["secretsmanager:secret-month"]
    series = len(figures.metric_series)
    return [
        f"  {series} custom metric series seen (EMF) x ${metrics.usd:.2f} = ${series * metrics.usd:.2f}/month;"
        f" 4 secrets x ${secrets.usd:.2f} = ${4 * secrets.usd:.2f}/month; idle SQS long polls and the poller's",
        "  empty scheduled runs are time-driven, not per document, and are not in the table above.",
    ]


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
    lines.append(f"  in all {sum(calls.values()) / docs:.2f} AWS calls per document")
    return lines


def run(quick: bool) -> None:
    """Run the mix and print the cost figures."""
    mix = QUICK if quick else FULL
    figures = run_mix(mix)
    lines, total = cost_lines(figures)
    print(
        f"Cost per million documents ({'quick' if quick else 'full'} run): {mix.supplier_invoices} supplier invoices,"
        f" {mix.sales_invoices} sales invoices, {mix.purchase_orders} purchase orders; {figures.events} events;"
        f" settled in {figures.seconds:.1f} s; {figures.dead_lettered} dead-lettered;"
        f" {figures.platform_requests / mix.documents:.2f} platform requests per document"
    )
    print(*lines, sep="\n")
    print(
        f"  total ${total:.2f} per million documents (target <= ${TARGET_PER_MILLION:.2f}: "
        f"{'met' if total <= TARGET_PER_MILLION else 'NOT met'})"
    )
    print("\nFixed monthly costs")
    print(*fixed_lines(figures), sep="\n")
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
