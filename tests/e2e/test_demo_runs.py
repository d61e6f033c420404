"""`invoice-bridge local demo`: two runs at once keep their own logs, Ctrl-C ends each with one line, and a run
with faults on passes and says which document a sandbox refused for good."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.demo import demo_log_path, run_demo
from sandbox.faults import WRITE_METHODS, FaultPlan, FaultSettings, json_error
from sandbox.httpserver import Reply, Request
from sandbox.settings import LocalSettings
from tests.conftest import ROOT
from tests.e2e.cli import CLI, clean_environment

pytestmark = pytest.mark.e2e


def test_each_run_is_handed_a_log_of_its_own(tmp_path: Path) -> None:
    paths = {demo_log_path(tmp_path) for _ in range(3)}
    assert len(paths) == 3
    assert all(p.parent == tmp_path / ".local" and p.exists() for p in paths)


def test_two_demos_at_once_then_ctrl_c(tmp_path: Path) -> None:
    demos = [
        subprocess.Popen(
            [CLI, "local", "demo"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            cwd=ROOT,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    logs = []
    for demo in demos:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        assert first.startswith("local stack up on "), first
        logs.append(Path(first.rsplit("function logs: ", 1)[1].rstrip(")\n")))
    for demo in demos:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    outcomes = [demo.communicate(timeout=60) for demo in demos]
    assert logs[0] != logs[1]
    assert all(log.is_relative_to(ROOT / ".local") and log.exists() for log in logs)
    for demo, (_out, err) in zip(demos, outcomes, strict=True):
        assert demo.returncode == 130, err
        assert err.strip() == "invoice-bridge: interrupted"
    for log in logs:
        log.unlink()


class RefusingPlan(FaultPlan):
    """FacturaDirecta refusing every write of po_56 for good, as a permanent fault kind does (and noting it)."""

    def apply(
        self,
        request: Request,
        answer: Callable[[], Reply],
        *,
        route: str | None = None,
        error_reply: Callable[[int, str | None], Reply] = json_error,
    ) -> Reply:
        if request.method in WRITE_METHODS and b"bn:po_56" in request.body:
            self.record_refusal("po_56", "400 INVALID_INPUT_DATA on every write of the order")
            return error_reply(400, "INVALID_INPUT_DATA")
        return super().apply(request, answer, route=route, error_reply=error_reply)


class RefusingSettings(FaultSettings):
    """LOCAL_FAULTS as given, with FacturaDirecta's plan refusing po_56."""

    def plan(self, peer: str) -> FaultPlan:
        return RefusingPlan(self, peer) if peer == "facturadirecta" else super().plan(peer)


def test_the_demo_with_faults_on_passes_and_reports_a_refused_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith(("LOCAL_", "BUILDNEXION_", "QUIPU_", "TUIMPRENTA_"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("FACTURADIRECTA_API_URL", raising=False)
    # What the report ran (error=0.2, seed 3), on short schedules.
    monkeypatch.setenv("LOCAL_FAULTS", "error=0.2,seed=3")
    monkeypatch.setenv("LOCAL_SCHEDULE_SECONDS", "1")
    monkeypatch.setenv("TUIMPRENTA_PROCESSING_SECONDS", "0.5")
    monkeypatch.setattr(LocalSettings, "fault_settings", lambda self: RefusingSettings.parse(self.faults))

    code = run_demo(root=ROOT, events_dir=ROOT / "events" / "buildnexion", port=0)
    out = capsys.readouterr().out
    log = Path(re.findall(r"function logs: (\S+)\)", out)[0])
    log.unlink()

    assert code == 0, out
    assert "Traceback" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.endswith("consuming")}
    # destination, sent, synced, failed, refused, dead-lettered, ...
    assert rows["facturadirecta"][1:5] == ["4", "1", "0", "1"]  # po_55 synced; po_56 refused (created, canceled)
    assert int(rows["facturadirecta"][5]) >= 1  # one letter per refused write: one or both of po_56's events
    assert rows["quipu"][1:6] == ["4", "2", "0", "0", "0"]
    assert rows["tuimprenta"][1:6] == ["3", "2", "0", "0", "0"]
    assert "facturadirecta po_56: 400 INVALID_INPUT_DATA on every write of the order; dead-lettered: " in out
    injected = next(line for line in out.splitlines() if line.startswith("faults injected (LOCAL_FAULTS): "))
    assert "'error'" in injected  # the random 5xx really played
    assert "but for the documents a sandbox refused for good" in out
