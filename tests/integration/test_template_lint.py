"""`sam validate --lint` passes with each platform switched off (its Deploy* parameter's default set to false)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SAM = str(Path(sys.executable).parent / "sam")


@pytest.mark.parametrize("switch", ["DeployQuipu", "DeployTuimprenta", "DeployFacturaDirecta"])
def test_sam_validate_lint_passes_with_the_platform_off(switch: str, tmp_path: Path) -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    start = text.index(f"\n  {switch}:\n")
    default = text.index('Default: "true"', start)
    off = text[:default] + 'Default: "false"' + text[default + len('Default: "true"') :]
    template = tmp_path / "template.yaml"
    template.write_text(off, encoding="utf-8")
    for folder in ("functions", "layers"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1", "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [SAM, "validate", "--lint", "--template", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
