"""Run `invoice-bridge` as a user would: a process, its output and its exit status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import ROOT

CLI = str(Path(sys.executable).parent / "invoice-bridge")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without AWS, proxy or local-stack settings, plus `extra`."""
    drop = ("AWS_", "BUILDNEXION_", "TUIMPRENTA_", "QUIPU_", "FACTURADIRECTA_", "LOCAL_", "POWERTOOLS_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
    }
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`invoice-bridge ARGS...` to completion."""
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        env=clean_environment(env),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Failed with a single line on stderr naming `phrases`, and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
