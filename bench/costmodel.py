"""The cost model: AWS's eu-west-1 prices, and the arithmetic from billed units to dollars.

Pure functions over measured units (bench/cost.py measures them through the local stack), so every figure
the bench prints can be checked by hand (tests/unit/test_cost_model.py does, with the arithmetic written out).
Money is Decimal throughout; measured units enter as Decimal too.

Three kinds of cost:
- per document: units a document's events cause (requests, GB-seconds, reads and writes, log bytes...),
  priced per million documents;
- fixed per month: what a deployed stack costs with no traffic (secrets, Lambda's SQS pollers' empty
  receives, the scheduled poller's idle runs, alarms and dashboards beyond the free tier, metric series
  the idle runs publish, SnapStart's cache when it is on);
- by volume: X-Ray (Lambda samples 1 request a second and 5 % of the rest, so the traced share depends on
  the rate), cold starts (INIT is billed; the rarer the invocations, the more of them start cold) and the
  metric series documents publish (a metric is billed for the hours it is published in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

# AWS prices a month as 730 hours.
HOURS_PER_MONTH = Decimal(730)
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60
MILLION = Decimal(1_000_000)
GB = Decimal(1_000_000_000)
VOLUMES = (1_000, 10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class Price:
    """One published price: `usd` per `per` units of `unit`."""

    usd: Decimal
    per: Decimal
    unit: str
    source: str
    as_of: str  # the date the price took effect (the page lists it as current)


# AWS's published prices for eu-west-1 (Europe, Ireland), first tier. Transcribed by hand from the pages
# below; PRICES_CHECKED is when the table was last compared with them (DynamoDB's write price corrected
# to $0.705 per million that day). Free tiers are ignored except where FREE_* says otherwise.
PRICES_CHECKED = "2026-12-03"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_SQS = "https://aws.amazon.com/sqs/pricing/"
_DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
_CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
_D = Decimal
PRICES: dict[str, Price] = {
    "apigw:requests": Price(
        _D("1.11"), MILLION, "HTTP API requests", "https://aws.amazon.com/api-gateway/pricing/", "2020-03-12"
    ),
    "lambda:requests": Price(_D("0.20"), MILLION, "Lambda requests", _LAMBDA, "2020-12-01"),
    "lambda:gb-s": Price(_D("0.0000133334"), _D(1), "Lambda arm64 GB-seconds", _LAMBDA, "2021-09-29"),
    "lambda:init-gb-s": Price(
        _D("0.0000133334"), _D(1), "Lambda arm64 GB-seconds, cold starts' INIT", _LAMBDA, "2025-08-01"
    ),
    "sqs:standard": Price(_D("0.40"), MILLION, "SQS standard requests (64 KB chunks)", _SQS, "2019-01-01"),
    "sqs:fifo": Price(_D("0.50"), MILLION, "SQS FIFO requests (64 KB chunks)", _SQS, "2019-01-01"),
    "dynamodb:write": Price(_D("0.705"), MILLION, "DynamoDB on-demand write units", _DYNAMODB, "2024-11-01"),
    "dynamodb:read": Price(_D("0.1415"), MILLION, "DynamoDB on-demand read units", _DYNAMODB, "2024-11-01"),
    "secretsmanager:calls": Price(_D("0.05"), _D(10_000), "Secrets Manager API calls", _SECRETS, "2018-04-04"),
    "logs:gb": Price(_D("0.57"), _D(1), "CloudWatch Logs ingested GB (logs, EMF)", _CLOUDWATCH, "2019-01-01"),
    "logs:gb-month": Price(_D("0.03"), _D(1), "CloudWatch Logs stored GB-month", _CLOUDWATCH, "2019-01-01"),
    "transfer:gb-out": Price(
        _D("0.09"),
        _D(1),
        "Data out to the internet (GB)",
        "https://aws.amazon.com/ec2/pricing/on-demand/",
        "2019-01-01",
    ),
    "xray:traces": Price(
        _D("5.00"), MILLION, "X-Ray traces recorded", "https://aws.amazon.com/xray/pricing/", "2017-04-19"
    ),
    "snapstart:restore-gb": Price(_D("0.0001397998"), _D(1), "SnapStart restores (GB restored)", _LAMBDA, "2024-11-18"),
    "snapstart:cache-gb-s": Price(_D("0.0000015046"), _D(1), "SnapStart cache (GB-s)", _LAMBDA, "2024-11-18"),
    "scheduler:invocations": Price(
        _D("1.00"),
        MILLION,
        "EventBridge Scheduler invocations",
        "https://aws.amazon.com/eventbridge/pricing/",
        "2022-11-10",
    ),
    "cloudwatch:metric-month": Price(
        _D("0.30"), _D(1), "CloudWatch custom metric-months (EMF)", _CLOUDWATCH, "2019-01-01"
    ),
    "cloudwatch:alarm-month": Price(_D("0.10"), _D(1), "CloudWatch standard alarm-months", _CLOUDWATCH, "2019-01-01"),
    "cloudwatch:dashboard-month": Price(_D("3.00"), _D(1), "CloudWatch dashboard-months", _CLOUDWATCH, "2019-01-01"),
    "secretsmanager:secret-month": Price(_D("0.40"), _D(1), "Secrets Manager secret-months", _SECRETS, "2018-04-04"),
}
# CloudWatch's always-free tier: 10 alarms and 3 dashboards per account. Custom metrics' free ten are not
# counted: an account that runs anything else has used them.
FREE_ALARMS = 10
FREE_DASHBOARDS = 3
# Lambda's pollers of an SQS event source mapping: about five, each long-polling 20 s, while the queue is
# empty (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html, "polling and batching behavior").
SQS_IDLE_POLLERS = 5
SQS_LONG_POLL_SECONDS = 20
# How long Lambda keeps an idle execution environment is not published; 10 minutes is what is commonly seen.
# A function invoked λ times a minute on average starts cold on e^(-10 λ) of its invocations.
WARM_MINUTES = Decimal(10)
# Lambda's X-Ray sampling (not configurable for Lambda): the first request each second, then 5 % of the rest.
XRAY_RESERVOIR_PER_SECOND = Decimal(1)
XRAY_RATE = Decimal("0.05")


def dollars(key: str, units: Decimal) -> Decimal:
    """What `units` of the priced item `key` cost."""
    price = PRICES[key]
    return units * price.usd / price.per


def per_million(units: Decimal, documents: int) -> Decimal:
    """Units per document times a million: the units a million documents cause."""
    if documents < 1:
        raise ValueError("a run prices at least one document")
    return units / documents * MILLION


def xray_traced(invocations_per_month: Decimal) -> Decimal:
    """Traces recorded for one function's invocations a month, spread evenly: 1 a second, then 5 %."""
    rate = invocations_per_month / SECONDS_PER_MONTH
    if rate <= XRAY_RESERVOIR_PER_SECOND:
        return invocations_per_month
    per_second = XRAY_RESERVOIR_PER_SECOND + XRAY_RATE * (rate - XRAY_RESERVOIR_PER_SECOND)
    return per_second * SECONDS_PER_MONTH


def cold_share(invocations_per_month: Decimal) -> Decimal:
    """The share of a function's invocations that start cold, its invocations spread at random."""
    per_minute = invocations_per_month / MINUTES_PER_MONTH
    return (-per_minute * WARM_MINUTES).exp()


def series_month_share(occurrences_per_month: Decimal) -> Decimal:
    """The share of a month's hours a metric series is published in, its occurrences spread at random.

    CloudWatch bills a custom metric for the hours it is published in (prorated by the hour): a series
    seen λ times an hour on average is published in 1 - e^-λ of the hours.
    """
    per_hour = occurrences_per_month / HOURS_PER_MONTH
    return 1 - (-per_hour).exp()


@dataclass(frozen=True)
class Deployment:
    """What the template deploys that costs by the month (counted from template.yaml)."""

    secrets: int
    sqs_mapped_queues: tuple[str, ...]  # "sqs:fifo" / "sqs:standard" per queue Lambda polls
    alarms: int
    dashboards: int
    scheduled_runs_per_month: Decimal
    tracing: bool
    log_retention_days: int
    snapstart_gb: Decimal  # memory of the functions with SnapStart on (0: off)


@dataclass(frozen=True)
class Line:
    """One priced item: its units and dollars (per million documents, or per month)."""

    key: str
    units: Decimal
    usd: Decimal
    note: str = ""


@dataclass
class DocumentUnits:
    """Billed units a run's documents caused, in all (not per document)."""

    documents: int
    units: dict[str, Decimal] = field(default_factory=dict)
    log_bytes: Decimal = Decimal(0)
    # Invocations per function (X-Ray samples per function; cold starts per function), what one cold start
    # costs per function (its INIT's GB-seconds, its secret reads), and metric series occurrences.
    invocations: dict[str, Decimal] = field(default_factory=dict)
    per_cold_start: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    series: dict[tuple[str, ...], int] = field(default_factory=dict)


def log_storage_gb_months(log_bytes: Decimal, retention_days: int) -> Decimal:
    """GB-months stored: each byte stays for the retention (uncompressed: an upper bound)."""
    return log_bytes / GB * Decimal(retention_days) * 24 / HOURS_PER_MONTH


def document_lines(run: DocumentUnits, deployment: Deployment, monthly_documents: int = 1_000_000) -> list[Line]:
    """Dollars per million documents, per item; X-Ray and cold starts priced at `monthly_documents` a month."""
    units = dict(run.units)
    units["logs:gb"] = run.log_bytes / GB
    units["logs:gb-month"] = log_storage_gb_months(run.log_bytes, deployment.log_retention_days)
    scale = Decimal(monthly_documents) / run.documents
    for name, n in run.invocations.items():
        cold_starts = n * cold_share(n * scale)
        for key, per_start in run.per_cold_start.get(name, {}).items():
            units[key] = units.get(key, Decimal(0)) + cold_starts * per_start
    if deployment.tracing:
        traced = sum((xray_traced(n * scale) for n in run.invocations.values()), Decimal(0))
        units["xray:traces"] = traced / scale
    lines = []
    for key in PRICES:
        if key not in units:
            continue
        million = per_million(units[key], run.documents)
        lines.append(Line(key, million, dollars(key, million)))
    return lines


def fixed_lines(deployment: Deployment, idle_run: Mapping[str, Decimal], idle_series: int) -> list[Line]:
    """Dollars per month with no traffic, per item. `idle_run`: billed units of one idle scheduled run."""
    lines = [Line("secretsmanager:secret-month", Decimal(deployment.secrets), Decimal(0))]
    receives_per_queue = SQS_IDLE_POLLERS * MINUTES_PER_MONTH * 60 / SQS_LONG_POLL_SECONDS
    for kind in sorted(set(deployment.sqs_mapped_queues)):
        queues = deployment.sqs_mapped_queues.count(kind)
        lines.append(Line(kind, receives_per_queue * queues, Decimal(0), f"empty receives, {queues} queue(s)"))
    runs = deployment.scheduled_runs_per_month
    lines.append(Line("scheduler:invocations", runs, Decimal(0)))
    for key, per_run in sorted(idle_run.items()):
        if key == "log:bytes":
            continue
        lines.append(Line(key, per_run * runs, Decimal(0), "idle scheduled runs"))
    idle_log_bytes = idle_run.get("log:bytes", Decimal(0)) * runs
    lines.append(Line("logs:gb", idle_log_bytes / GB, Decimal(0), "idle scheduled runs"))
    lines.append(
        Line(
            "logs:gb-month",
            log_storage_gb_months(idle_log_bytes, deployment.log_retention_days),
            Decimal(0),
            "idle scheduled runs",
        )
    )
    if deployment.tracing:
        lines.append(Line("xray:traces", xray_traced(runs), Decimal(0), "idle scheduled runs"))
    lines.append(Line("cloudwatch:metric-month", Decimal(idle_series), Decimal(0), "series the idle runs publish"))
    lines.append(
        Line("cloudwatch:alarm-month", Decimal(max(0, deployment.alarms - FREE_ALARMS)), Decimal(0), "beyond 10 free")
    )
    lines.append(
        Line(
            "cloudwatch:dashboard-month",
            Decimal(max(0, deployment.dashboards - FREE_DASHBOARDS)),
            Decimal(0),
            "beyond 3 free",
        )
    )
    if deployment.snapstart_gb:
        lines.append(Line("snapstart:cache-gb-s", deployment.snapstart_gb * SECONDS_PER_MONTH, Decimal(0), "1 version"))
    return [Line(line.key, line.units, dollars(line.key, line.units), line.note) for line in lines]


# What DESIGN.md fixes for every event, whatever the code does: BuildNexion POSTs it to the webhook (an API
# Gateway request, a receiver invocation), the receiver dedupes it in DynamoDB (one write) and sends it to its
# queue, and a worker receives and deletes it in batches of at most 10. For every document a worker writes its
# intent to the ledger before the effect and the result after it (two writes).
FLOOR_BATCH = 10
FLOOR_LEDGER_WRITES_PER_DOCUMENT = 2


def floor_lines(deliveries: Mapping[str, int], documents: int) -> list[Line]:
    """The least DESIGN.md's contracts cost per million documents; `deliveries`: events per queue price key."""
    events = sum(deliveries.values())
    units: dict[str, Decimal] = {
        "apigw:requests": Decimal(events),
        "lambda:requests": Decimal(events),
        "dynamodb:write": Decimal(events + FLOOR_LEDGER_WRITES_PER_DOCUMENT * documents),
    }
    for kind, sent in deliveries.items():
        # a send, and its share of a batched receive and a batched delete
        units[kind] = Decimal(sent) * (1 + Decimal(2) / FLOOR_BATCH)
    lines = []
    for key in PRICES:
        if key in units:
            million = per_million(units[key], documents)
            lines.append(Line(key, million, dollars(key, million)))
    return lines


def series_dollars(run: DocumentUnits, monthly_documents: int, idle: set[tuple[str, ...]]) -> Decimal:
    """The metric series documents publish (not the idle runs' own), at `monthly_documents` a month."""
    price = PRICES["cloudwatch:metric-month"].usd
    total = Decimal(0)
    for series, occurrences in run.series.items():
        if series in idle:
            continue
        per_month = Decimal(occurrences) / run.documents * monthly_documents
        total += price * series_month_share(per_month)
    return total


def monthly_bill(
    run: DocumentUnits, deployment: Deployment, fixed: list[Line], idle: set[tuple[str, ...]], monthly_documents: int
) -> Decimal:
    """The whole month at `monthly_documents` documents: fixed, per document, and the series documents add."""
    per_document = sum((line.usd for line in document_lines(run, deployment, monthly_documents)), Decimal(0))
    return (
        sum((line.usd for line in fixed), Decimal(0))
        + per_document * monthly_documents / MILLION
        + series_dollars(run, monthly_documents, idle)
    )
