"""The cost bench's arithmetic, checked against hand-computed examples (units x price, written out)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any, cast

import pytest

from bench import costmodel
from bench.cost import (
    FULL,
    QUICK_HISTORY,
    LogMeter,
    RunFigures,
    aws_billed_ms,
    bill_table,
    cold_start_units,
    deployment_of,
    document_table,
    fixed_table,
    floor_table,
    function_units,
    log_lines,
    mixed_events,
    queue_deliveries,
    usage_delta,
    write_lines,
)
from bench.costmodel import Deployment, DocumentUnits
from invoice_bridge.store import StateStore
from sandbox.cfn import Template
from sandbox.usage import PLATFORM_LOG_BYTES_PER_INVOCATION, FunctionUsage, InvocationUsage, request_units
from tests.conftest import ROOT

D = Decimal
NO_TRACING = Deployment(
    secrets=4,
    sqs_mapped_queues=("sqs:fifo", "sqs:fifo"),
    alarms=12,
    dashboards=1,
    scheduled_runs_per_month=D(43_800),
    tracing=False,
    log_retention_days=30,
    snapstart_gb=D(0),
)


def priced(lines: list[costmodel.Line]) -> dict[str, Decimal]:
    return {line.key: line.usd for line in lines}


@pytest.mark.parametrize("documents", [20, 200, 1])
def test_one_api_request_per_document_is_1_11_per_million_whatever_the_run_size(documents: int) -> None:
    # 1 request/doc x 1,000,000 docs x $1.11 / 1,000,000 requests = $1.11 (the double division printed
    # $0.0555 for 20 documents and $0.00555 for 200).
    run = DocumentUnits(documents=documents, units={"apigw:requests": D(documents)})
    (line,) = [line for line in costmodel.document_lines(run, NO_TRACING) if line.key == "apigw:requests"]
    assert line.units == D(1_000_000)
    assert line.usd == D("1.11")


def test_each_per_document_item_is_units_per_document_times_a_million_times_the_price() -> None:
    run = DocumentUnits(
        documents=20,
        units={
            "lambda:gb-s": D("9.6"),  # 0.48 GB-s a document
            "dynamodb:write": D(177),  # 8.85 writes a document
            "dynamodb:read": D(130),  # 6.5 read units a document
            "secretsmanager:calls": D(11),  # 0.55 calls a document
            "sqs:fifo": D(40),  # 2 requests a document
            "transfer:gb-out": D("0.0001"),  # 5 KB a document
        },
        log_bytes=D(124_000),  # 6,200 bytes a document
    )
    lines = priced(costmodel.document_lines(run, NO_TRACING))
    assert lines["lambda:gb-s"] == D("480000") * D("0.0000133334")  # = 6.400032
    assert lines["lambda:gb-s"] == D("6.400032")
    assert lines["dynamodb:write"] == D("8.85") * D("0.705")  # 8.85 M writes at $0.705 per million = 6.23925
    assert lines["dynamodb:read"] == D("6.5") * D("0.1415")  # = 0.91975
    assert lines["secretsmanager:calls"] == D("550000") * D("0.05") / 10_000  # = 2.75
    assert lines["sqs:fifo"] == D(2) * D("0.50")  # 2 M requests = 1.00
    assert lines["transfer:gb-out"] == D(5) * D("0.09")  # 5 KB x 1 M = 5 GB = 0.45
    # 6,200 bytes x 1 M = 6.2 GB ingested at $0.57 = 3.534 ...
    assert lines["logs:gb"] == D("6.2") * D("0.57")
    # ... and stored 30 days (720 of a month's 730 hours): 6.2 x 720 / 730 GB-months at $0.03
    assert lines["logs:gb-month"] == D("6.2") * 720 / 730 * D("0.03")
    assert "xray:traces" not in lines  # tracing off


def test_xray_traces_one_request_a_second_then_five_percent() -> None:
    # 1,000,000 invocations a month = 0.38 a second: all of them traced.
    assert costmodel.xray_traced(D(1_000_000)) == D(1_000_000)
    # 10,000,000 a month = 10,000,000 / 2,628,000 = 3.805 a second: 1 + 0.05 x 2.805 a second traced.
    rate = D(10_000_000) / D(2_628_000)
    assert costmodel.xray_traced(D(10_000_000)) == (1 + D("0.05") * (rate - 1)) * 2_628_000
    assert round(costmodel.xray_traced(D(10_000_000))) == 2_996_600  # 30 %, not 5 %
    traced = Deployment(**{**NO_TRACING.__dict__, "tracing": True})
    run = DocumentUnits(documents=10, invocations={"A": D(20), "B": D(7)})
    lines = priced(costmodel.document_lines(run, traced))
    # 2.7 invocations a document; at a million documents a month every one is traced: 2.7 M x $5 / M.
    assert lines["xray:traces"] == D("13.5")


def test_fixed_costs_per_month_with_no_traffic() -> None:
    idle_run = {
        "lambda:requests": D(1),
        "lambda:gb-s": D("0.0125"),
        "dynamodb:read": D("0.5"),
        "dynamodb:write": D(2),
        "sqs:standard": D(1),
        "secretsmanager:calls": D(0),
        "log:bytes": D(1000),
    }
    lines = {(line.key, line.note): line.usd for line in costmodel.fixed_lines(NO_TRACING, idle_run, idle_series=1)}
    assert lines["secretsmanager:secret-month", ""] == 4 * D("0.40")  # 1.60
    # 5 pollers x 3 long polls a minute x 43,800 minutes x 2 FIFO queues = 1,314,000 at $0.50 per million
    assert lines["sqs:fifo", "empty receives, 2 queue(s)"] == D(5 * 3 * 43_800 * 2) * D("0.50") / 1_000_000
    assert lines["scheduler:invocations", ""] == D(43_800) * D("1.00") / 1_000_000  # 0.0438
    idle = "idle scheduled runs"
    assert lines["lambda:requests", idle] == D(43_800) * D("0.20") / 1_000_000
    assert lines["lambda:gb-s", idle] == D(43_800) * D("0.0125") * D("0.0000133334")
    assert lines["dynamodb:read", idle] == D(21_900) * D("0.1415") / 1_000_000
    assert lines["dynamodb:write", idle] == D(87_600) * D("0.705") / 1_000_000
    assert lines["sqs:standard", idle] == D(43_800) * D("0.40") / 1_000_000
    assert lines["logs:gb", idle] == D("0.0438") * D("0.57")  # 43.8 MB ingested
    assert lines["logs:gb-month", idle] == D("0.0438") * 720 / 730 * D("0.03")
    assert lines["cloudwatch:metric-month", "series the idle runs publish"] == D("0.30")
    assert lines["cloudwatch:alarm-month", "beyond 10 free"] == 2 * D("0.10")
    assert lines["cloudwatch:dashboard-month", "beyond 3 free"] == 0
    assert ("xray:traces", idle) not in lines
    assert not any(key == "snapstart:cache-gb-s" for key, _ in lines)


def test_snapstart_bills_its_cache_for_the_month_and_each_restore() -> None:
    snapstart = Deployment(**{**NO_TRACING.__dict__, "snapstart_gb": D("0.5")})
    (cache,) = [line for line in costmodel.fixed_lines(snapstart, {}, 0) if line.key == "snapstart:cache-gb-s"]
    assert cache.usd == D("0.5") * 2_628_000 * D("0.0000015046")  # 0.5 GB for 730 hours = 1.977
    run = DocumentUnits(documents=100, units={"snapstart:restore-gb": D(2)})  # 4 restores of 512 MB
    restore = priced(costmodel.document_lines(run, snapstart))
    assert restore["snapstart:restore-gb"] == D(20_000) * D("0.0001397998")


def test_a_metric_series_is_billed_for_the_hours_it_is_published_in() -> None:
    # Seen 730 times a month, once an hour on average: published in 1 - e^-1 of the hours.
    assert costmodel.series_month_share(D(730)) == 1 - D(-1).exp()
    run = DocumentUnits(documents=100, series={("NS", "Synced"): 100, ("NS", "Idle"): 5})
    # Synced: once a document; at 73,000 documents a month that is 100 an hour: the whole month, $0.30.
    assert costmodel.series_dollars(run, 73_000, idle={("NS", "Idle")}) == D("0.30") * (1 - D(-100).exp())
    # At 730 documents a month, once an hour: 0.30 x 0.632 = 0.1896.
    assert round(costmodel.series_dollars(run, 730, idle={("NS", "Idle")}), 4) == D("0.1896")


def test_the_monthly_bill_is_fixed_plus_documents_plus_their_series() -> None:
    run = DocumentUnits(documents=10, units={"apigw:requests": D(10)}, series={("NS", "Synced"): 10})
    fixed = [costmodel.Line("secretsmanager:secret-month", D(4), D("1.60"))]
    # 1,000 documents: 1.60 + 1.11 x 1,000 / 1,000,000 + 0.30 x (1 - e^-(1000/730))
    expected = D("1.60") + D("0.00111") + D("0.30") * (1 - (-D(1000) / 730).exp())
    assert costmodel.monthly_bill(run, NO_TRACING, fixed, set(), 1_000) == expected


def test_the_printed_tables_show_the_hand_computed_figures() -> None:
    run = DocumentUnits(
        documents=20, units={"apigw:requests": D(20), "dynamodb:write": D(40)}, series={("NS", "Synced"): 20}
    )
    lines, total = document_table(run, NO_TRACING)
    # 1.11 (API) + 2 writes a document x 0.705 = 1.41 -> 2.52
    assert total == D("1.11") + 2 * D("0.705")
    api = next(line for line in lines if line.strip().startswith("HTTP API requests"))
    assert "1,000,000.0" in api
    assert "$1.11/1,000,000" in api
    assert " 1.41 " in next(line for line in lines if "write units" in line)
    assert "2.52" in lines[-1]
    fixed = [costmodel.Line("secretsmanager:secret-month", D(4), D("1.60"), "")]
    fixed_lines, fixed_total = fixed_table(fixed)
    assert fixed_total == D("1.60")
    assert "1.60" in fixed_lines[1]
    bill = bill_table(run, NO_TRACING, fixed, set())
    # 100,000 documents: 1.60 fixed + 2.52 x 0.1 = 0.252 + one series nearly all month (0.30 x (1 - e^-137))
    row = next(line for line in bill if line.split()[0] == "100,000")
    assert row.split() == ["100,000", "1.60", "0.2520", "0.3000", "2.15"]
    assert bill[1].split()[0:3] == ["1,000", "1.60", "0.0025"]  # 2.52 x 1,000 / 1,000,000 = 0.00252


def test_measured_usage_becomes_units_and_the_idle_runs_are_not_charged_to_documents() -> None:
    before = FunctionUsage(memory_mb=256)
    before.add(InvocationUsage(duration_ms=100, init_ms=400, calls={"dynamodb:Query": 1}, units={"dynamodb:read": 1}))
    after = FunctionUsage(memory_mb=256)
    after.add(InvocationUsage(duration_ms=100, init_ms=400, calls={"dynamodb:Query": 1}, units={"dynamodb:read": 1}))
    for _ in range(3):
        after.add(
            InvocationUsage(
                duration_ms=999.5,
                calls={"dynamodb:Query": 2, "dynamodb:PutItem": 1},
                units={"dynamodb:read": 1.0, "dynamodb:write": 1.0},
                http_calls=1,
                http_ms=30.0,
                aws_ms=9.0,
                http_bytes_out=500,
            )
        )
    delta = usage_delta(after, before)
    assert (delta.invocations, delta.cold_starts, delta.billed_ms) == (3, 0, 3 * 1000)
    # billed 3,000 ms - 3 x 9 ms on moto - 3 x 30 ms on the peers + 9 AWS calls (6 Query + 3 Put) x 6 ms
    # + 3 platform requests x 120 ms = 3,297 ms
    assert aws_billed_ms(delta) == 3000 - 27 - 90 + 9 * 6 + 3 * 120
    units = function_units(delta, log_bytes=600)
    assert units["lambda:gb-s"] == D("3.297") * 256 / 1024  # 0.82425 GB-s
    assert units["transfer:gb-out"] == D(1500) / 1_000_000_000
    assert units["log:bytes"] == 600 + 3 * PLATFORM_LOG_BYTES_PER_INVOCATION
    logs = LogMeter()
    logs.bytes = Counter({"TuimprentaPollerFunction": 600})
    figures = RunFigures(
        mix=FULL,  # 200 documents
        history=QUICK_HISTORY,
        deployment=NO_TRACING,
        events=0,
        deliveries={},
        seconds=0.0,
        ticks=2,
        functions={"TuimprentaPollerFunction": delta},
        per_cold_start={"TuimprentaPollerFunction": {"lambda:init-gb-s": D("0.1")}},
        logs=logs,
        idle_run={"lambda:requests": D(1), "dynamodb:read": D("0.5"), "lambda:gb-s": D("0.1"), "log:bytes": D(100)},
        idle_series=set(),
        idle_reads_per_run=D("0.5"),
        idle_calls=Counter(),
        idle_cold_starts=0,
        runner_units=Counter({"sqs:fifo": 4}),
        runner_calls=Counter(),
        dead_lettered=0,
        platform_requests=0,
    )
    documents = figures.documents()
    # 3 invocations less 2 idle runs; 3 read units less 2 x 0.5; 0.82425 GB-s less 2 x 0.1
    assert documents.units["lambda:requests"] == 1
    assert documents.units["dynamodb:read"] == 2
    assert documents.units["lambda:gb-s"] == D("0.62425")
    assert documents.units["dynamodb:write"] == 3
    assert documents.units["sqs:fifo"] == 4  # Lambda's pollers' receives and deletes for the documents
    assert documents.log_bytes == 600 + 3 * PLATFORM_LOG_BYTES_PER_INVOCATION - 200
    assert documents.per_cold_start == {"TuimprentaPollerFunction": {"lambda:init-gb-s": D("0.1")}}
    # The printed per-document counts, for the 200 documents of the run: 3 puts / 200 = 0.015 -> "0.01"
    # (2 decimals); 3 write units less 2 idle runs x 0 = 3 / 200 = 0.015.
    logs.lines = Counter({"TuimprentaPollerFunction": 50})
    logs.emf_blobs = Counter({"TuimprentaPollerFunction": 10})
    (_, row, _) = write_lines(figures)
    assert row.split() == ["TuimprentaPollerFunction", "0.01", "0.00", "0.00", "0.01"]
    (_, row) = log_lines(figures)
    # 50 lines / 200 = 0.25; 10 EMF blobs / 200 = 0.05; 600 bytes / 200 = 3
    assert row.split() == ["TuimprentaPollerFunction", "0.25", "0.05", "3"]


def test_the_deployment_is_counted_from_the_template() -> None:
    template = Template.load(ROOT / "template.yaml")
    deployment = deployment_of(template)
    assert deployment.secrets == len(template.resources_of_type("AWS::SecretsManager::Secret")) == 4
    assert deployment.sqs_mapped_queues == ("sqs:fifo", "sqs:fifo")  # Quipu and FacturaDirecta; the poller drains
    assert deployment.scheduled_runs_per_month == 43_800  # rate(1 minute), 730 hours
    assert deployment.alarms == len(template.resources_of_type("AWS::CloudWatch::Alarm"))
    assert deployment.dashboards == 1
    assert deployment.tracing is False  # off by default
    assert deployment.snapstart_gb == 0  # ReceiverSnapStart defaults to None
    assert deployment.log_retention_days == 30


def test_cold_starts_are_priced_by_volume_the_rarer_the_invocations_the_more_start_cold() -> None:
    # 1 invocation a document, 0.5 GB-s of INIT per cold start.
    cold_start = {"lambda:init-gb-s": D("0.5"), "secretsmanager:calls": D(2)}
    run = DocumentUnits(documents=10, invocations={"A": D(10)}, per_cold_start={"A": cold_start})
    # 1,000 documents a month: 1,000 / 43,800 = 0.0228 invocations a minute; warm 10 minutes: e^-0.228 cold.
    share = (-(D(1000) / 43_800) * 10).exp()
    assert round(share, 4) == D("0.7959")
    lines = priced(costmodel.document_lines(run, NO_TRACING, monthly_documents=1_000))
    # 1 x 0.7959 x 0.5 GB-s a document x 1 M documents x $0.0000133334 = $5.31 per million (at that volume)
    assert lines["lambda:init-gb-s"] == share * D("0.5") * 1_000_000 * D("0.0000133334")
    assert round(lines["lambda:init-gb-s"], 2) == D("5.31")
    # and each new container reads 2 secrets: 0.7959 x 2 x 1 M calls x $0.05 / 10,000 = $7.96 per million
    assert lines["secretsmanager:calls"] == share * 2 * 1_000_000 * D("0.05") / 10_000
    # 1,000,000 a month: 22.8 a minute, an environment is never idle 10 minutes: e^-228, nothing to speak of
    assert priced(costmodel.document_lines(run, NO_TRACING))["lambda:init-gb-s"] < D("1e-90")


def test_one_cold_start_costs_its_init_and_the_secrets_a_new_container_reads() -> None:
    usage = FunctionUsage(memory_mb=256)
    usage.add(InvocationUsage(duration_ms=5, init_ms=800, calls={"secretsmanager:GetSecretValue": 2}))
    usage.add(InvocationUsage(duration_ms=5, init_ms=1200, calls={"secretsmanager:GetSecretValue": 2}))
    usage.add(InvocationUsage(duration_ms=5))
    # (800 + 1,200) / 2 cold starts = 1,000 ms at 256 MB = 0.25 GB-s; 4 reads / 2 cold starts = 2
    assert cold_start_units(usage) == {"lambda:init-gb-s": D("0.25"), "secretsmanager:calls": D(2)}
    # and a document is not charged for them
    assert "secretsmanager:calls" not in function_units(usage, 0)


class RecordingDynamoDB:
    """Stands for the DynamoDB client: keeps each call's parameters, answers a get with the last item put."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.item: dict[str, Any] | None = None

    def get_item(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("GetItem", params))
        return {"Item": self.item} if self.item else {}

    def put_item(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("PutItem", params))
        self.item = params["Item"]
        return {}


def test_the_receivers_dedupe_costs_one_write_and_half_a_read_a_delivery_priced_by_hand() -> None:
    # Given the receiver's dedupe calls for one delivery, as the bench's meter bills them
    client = RecordingDynamoDB()
    store = StateStore(cast(Any, client), "state")
    now = 1_800_000_000.0
    assert not store.enqueued("evt_01JDEMO0000000000000000001", now)
    assert store.remember_enqueued("evt_01JDEMO0000000000000000001", "quipu", "a" * 36, now, 604_800)
    units = Counter[str]()
    for operation, params in client.calls:
        units.update(request_units("dynamodb", operation, params, {}))
    # an eventually consistent GetItem: half a read unit; a put of an item under 1 KB: one write unit
    assert units == {"dynamodb:read": 0.5, "dynamodb:write": 1.0}
    # and a redelivery is answered by the read alone
    assert store.enqueued("evt_01JDEMO0000000000000000001", now + 5)
    # When the bench's 1.35 BuildNexion deliveries a document are priced (27 events for 20 documents) ...
    deliveries = D("1.35")
    run = DocumentUnits(
        documents=20,
        units={"dynamodb:write": 20 * deliveries * D(1), "dynamodb:read": 20 * deliveries * D("0.5")},
    )
    lines = priced(costmodel.document_lines(run, NO_TRACING))
    # Then 1.35 M writes x $0.705 / M = $0.95175 and 0.675 M read units x $0.1415 / M = $0.0955125 a million
    # documents: $1.0472625, where Powertools' in-progress put and completed update cost 2 x 1.35 M x $0.705 / M
    # = $1.9035.
    assert lines["dynamodb:write"] == D("0.95175")
    assert lines["dynamodb:read"] == D("0.0955125")
    assert lines["dynamodb:write"] + lines["dynamodb:read"] == D("1.0472625")
    assert 2 * deliveries * D("0.705") == D("1.9035")


def test_the_full_runs_eight_series_cost_2_40_a_month_at_a_million_documents() -> None:
    # The last full run's series (200 documents): how often each was published, from its printed rates.
    published: dict[tuple[str, ...], int] = {
        ("InvoiceBridge", "DocumentSynced", "facturadirecta"): 86,  # 0.43 a document
        ("InvoiceBridge", "DocumentSynced", "quipu"): 84,  # 0.42
        ("InvoiceBridge", "DocumentSynced", "tuimprenta"): 70,  # 0.35
        ("InvoiceBridge", "PlatformRateLimited", "quipu"): 2,  # 0.01
        ("InvoiceBridge", "RateLimitWaitMs", "quipu"): 64,  # 0.32
        ("InvoiceBridge", "WebhookAccepted", "facturadirecta"): 86,  # 0.43
        ("InvoiceBridge", "WebhookAccepted", "quipu"): 88,  # 0.44
        ("InvoiceBridge", "WebhookAccepted", "tuimprenta"): 90,  # 0.45
    }
    run = DocumentUnits(documents=200, series=published)
    # At a million documents a month the rarest, 2 in 200, is 10,000 a month = 13.7 an hour: published in
    # 1 - e^-13.7 of the hours, so every series is billed (nearly) the whole month: 8 x $0.30 = $2.40.
    rarest = D(2) / 200 * 1_000_000 / 730
    assert round(rarest, 1) == D("13.7")
    assert round(costmodel.series_dollars(run, 1_000_000, idle=set()), 2) == D("2.40")
    # At 1,000 documents a month, DocumentSynced for quipu (84 in 200) is 420 a month = 0.575 an hour:
    # 0.30 x (1 - e^-0.575) = 0.1312 for that series alone.
    quipu = DocumentUnits(documents=200, series={("InvoiceBridge", "DocumentSynced", "quipu"): 84})
    assert round(costmodel.series_dollars(quipu, 1_000, idle=set()), 4) == D("0.1312")


def test_the_full_mix_routes_175_events_to_fifo_queues_and_90_to_the_standard_one() -> None:
    events = mixed_events(FULL, "t")
    template = Template.load(ROOT / "template.yaml")
    # Quipu: 60 created + 20 updated (i % 3 == 1) + 8 voided (i % 8 == 2) = 88; FacturaDirecta: 60 + 20 + 7
    # canceled (i % 8 == 4, i < 60) = 87; tuimprenta: 80 created + 10 canceled (i % 8 == 3) = 90
    assert queue_deliveries(template, [e["type"] for e in events]) == {"sqs:fifo": 88 + 87, "sqs:standard": 90}


def test_the_floor_of_designs_contracts_is_4_82_per_million_for_the_full_mix() -> None:
    lines = {line.key: line for line in costmodel.floor_lines({"sqs:fifo": 175, "sqs:standard": 90}, 200)}
    # 265 events for 200 documents: 1.325 per document
    assert lines["apigw:requests"].units == 1_325_000
    assert lines["apigw:requests"].usd == D("1.325") * D("1.11")  # 1.47075
    assert lines["lambda:requests"].usd == D("1.325") * D("0.20")  # 0.265
    # a dedupe record per event and the ledger's intent and result per document: (265 + 2 x 200) / 200 = 3.325
    assert lines["dynamodb:write"].units == 3_325_000
    assert lines["dynamodb:write"].usd == D("3.325") * D("0.705")  # 2.344125
    # a send and a tenth each of a receive and a delete: 175 x 1.2 / 200 = 1.05 FIFO, 90 x 1.2 / 200 = 0.54 standard
    assert lines["sqs:fifo"].usd == D("1.05") * D("0.50")  # 0.525
    assert lines["sqs:standard"].usd == D("0.54") * D("0.40")  # 0.216
    printed, total = floor_table({"sqs:fifo": 175, "sqs:standard": 90}, 200, measured=D("11.37"))
    assert total == D("1.47075") + D("0.265") + D("2.344125") + D("0.525") + D("0.216")  # 4.820875
    assert "4.82" in printed[-2]
    # 5.00 - 4.82 = 0.18 left for everything else; the run measured 11.37 - 4.82 = 6.55 above the floor
    assert "$0.18;" in printed[-1]
    assert "$6.55 above the floor" in printed[-1]
