"""The poller as its handler builds it: one rate-limit window per API key, its counts, what a claim records."""

from __future__ import annotations

import json

import pytest

from invoice_bridge.errors import ConfigurationError
from invoice_bridge.limiter import DEFAULT_MARGIN_SECONDS, DynamoRateLimiter, limiter_key
from invoice_bridge.observability import metrics
from tests.integration.test_tuimprenta_poller import API_KEY, Harness, envelope, harness  # noqa: F401 - a fixture


def test_every_request_of_a_run_takes_a_slot_in_the_api_keys_shared_window(harness: Harness) -> None:
    # Given two invoices to issue
    harness.send(envelope("sin_r1"), envelope("sin_r2"))
    # When a run issues them
    report = harness.run()
    assert report.issued == 2
    # Then the window shared by every user of this API key (named by its digest, never the key) holds a
    # grant for each request the run made
    item = harness.table().client.get_item(
        TableName=harness.environment["STATE_TABLE_NAME"],
        Key={"pk": {"S": limiter_key("tuimprenta", API_KEY)}, "sk": {"S": "window"}},
    )["Item"]
    assert len(item["grants"]["L"]) == sum(harness.peer.calls.values())
    assert API_KEY not in str(item)


def test_a_run_counts_its_loops_its_batches_and_what_stays_open(harness: Harness) -> None:
    metrics.clear_metrics()  # the handler flushes them after each run; none is left from another test
    harness.peer.processing_seconds = 60.0  # the batch stays open past this run
    harness.send(envelope("sin_m1"))
    report = harness.run(RUN_SECONDS="0")
    # how long the oldest open batch has been open since its claim, which TuimprentaBatchAgeAlarm watches
    (oldest,) = metrics.metric_set["TuimprentaOldestOpenBatchSeconds"]["Value"]
    assert 0.0 <= oldest < 60.0
    # one loop drains and submits, the next finds nothing more to do
    assert (report.iterations, report.batches_submitted, report.invoices_submitted) == (2, 1, 1)
    # what the handler's flush will publish: one batch left open (a batch created is its log line and the
    # run's report, not a metric series of its own)
    assert "TuimprentaBatchCreated" not in metrics.metric_set
    assert metrics.metric_set["TuimprentaOpenBatches"]["Value"] == [1.0]
    metrics.clear_metrics()


def test_a_claimed_invoice_records_the_version_it_claimed(harness: Harness) -> None:
    event = envelope("sin_v1")
    harness.peer.processing_seconds = 60.0
    harness.send(event)
    harness.run(RUN_SECONDS="0")
    entry = harness.ledger().get("tuimprenta", "sin_v1")
    assert entry is not None
    assert entry.source_updated_at is not None
    assert entry.source_updated_at.isoformat() == event["data"]["object"]["updated_at"].replace("Z", "+00:00")
    assert (entry.details["state"], entry.details["attempt"]) == ("batched", "1")


def test_a_warm_poller_keeps_one_http_session_and_one_rate_limit_window_per_api_key(harness: Harness) -> None:
    # Given the poller as its handler builds it once per cold start
    poller = harness.poller()
    settings = harness.settings()
    # When two runs each build their tuimprenta client
    first, second = poller._client_factory(), poller._client_factory()
    # Then they share the connections of one session, and take slots in the API key's per-minute window
    assert first.session is second.session
    limiter = first.limiter
    assert isinstance(limiter, DynamoRateLimiter)
    assert (limiter.limit, limiter.window) == (settings.rate_limit_per_minute, 60 + DEFAULT_MARGIN_SECONDS)
    assert limiter.platform == "tuimprenta"


def test_a_tuimprenta_secret_without_its_api_key_stops_the_run_naming_the_secret_and_field(harness: Harness) -> None:
    harness.aws.session.client("secretsmanager").put_secret_value(
        SecretId=harness.settings().tuimprenta_secret_id, SecretString=json.dumps({"webhook_secret": "whsec"})
    )
    with pytest.raises(ConfigurationError) as raised:
        harness.run()
    assert str(raised.value).startswith("secret tuimprenta field api_key")
