"""Two `invoice-bridge local demo` runs at once keep their own logs, and Ctrl-C ends each with one line."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from sandbox.demo import demo_log_path
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
