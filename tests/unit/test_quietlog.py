"""serve's default log for people: metric blobs and idle poller runs are left out, everything else kept."""

from __future__ import annotations

import json

from sandbox.quietlog import quiet, worth_showing

EMF = '{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"service":"tuimprenta-poller","TuimprentaOpenBatches":[0.0]}'


def run_done(**report: object) -> str:
    full = {"skipped": False, "iterations": 1, "batches_submitted": 0, "issued": 0, "problems": [], **report}
    return json.dumps({"level": "INFO", "message": "poller run done", "report": full})


def test_metric_blobs_and_idle_runs_are_left_out() -> None:
    assert not worth_showing(EMF)
    assert not worth_showing(run_done(iterations=3))


def test_a_run_that_did_something_and_every_other_line_are_kept() -> None:
    assert worth_showing(run_done(issued=2))
    assert worth_showing(run_done(problems=["batch_1 lost"]))
    assert worth_showing(json.dumps({"level": "INFO", "message": "document synced", "object_id": "inv_1"}))
    assert worth_showing("START RequestId: 1")
    assert worth_showing("{not json")
    assert worth_showing("[1, 2]")


def test_quiet_passes_on_only_what_is_worth_showing() -> None:
    seen: list[tuple[str, str]] = []
    sink = quiet(lambda function, line: seen.append((function, line)))
    sink("TuimprentaPollerFunction", EMF)
    sink("TuimprentaPollerFunction", run_done())
    sink("QuipuSyncFunction", "synced")
    assert seen == [("QuipuSyncFunction", "synced")]
