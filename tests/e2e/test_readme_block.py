"""The README's local-stack block, pasted whole into bash, works: on a machine with a proxy and a stray profile."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.e2e.cli import clean_environment, free_port

pytestmark = pytest.mark.e2e

MARKER = "<!-- local-stack-block:"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, flags=re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_block_runs_whole() -> None:
    block = readme_block()
    assert "local wait" in block
    assert "kill" in block
    port = free_port()
    env = clean_environment(
        {
            "LOCAL_PORT": str(port),
            # A newcomer's machine: a corporate proxy without NO_PROXY, and a profile that does not exist here.
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "AWS_PROFILE": "no-such-profile",
        }
    )
    result = subprocess.run(
        ["bash", "-e", "-c", block], capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr + (ROOT / ".local" / "serve.log").read_text()
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"the local stack at http://127.0.0.1:{port} is ready"
    assert lines[1].startswith("events/buildnexion/01_invoice_created.json: 200 ")
    status = json.loads(lines[2])
    assert set(status) == {"idle", "queues", "open_batches"}
    log = (ROOT / ".local" / "serve.log").read_text(encoding="utf-8")
    assert log.startswith(f"invoice-bridge local stack listening on http://127.0.0.1:{port}")
    assert "Traceback" not in log
    assert "stopping" in log
