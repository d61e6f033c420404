"""The import contracts (`lint-imports`, run by `make lint`) catch a peer that imports the product.

Each test runs import-linter on a copy of the packages with one import added, so the real tree is never
touched; the copy comes first on PYTHONPATH, ahead of the editable install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
DELIBERATE = "from invoice_bridge.money import dumps  # noqa: F401\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The packages and pyproject.toml, copied."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sandbox", "ops", "functions"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    shutil.copytree(ROOT / "layers/common/invoice_bridge", tmp_path / "layers/common/invoice_bridge", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "layers/common")])
    limit = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *limit],
        cwd=tree,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def add_line(path: Path, line: str) -> None:
    """`line` at the end of the module (a module-level import wherever it stands)."""
    with path.open("a", encoding="utf-8") as module:
        module.write("\n" + line)


def test_the_facturadirecta_peer_and_the_chaos_checker_keep_their_contracts(tree: Path) -> None:
    result = lint(tree, "peer-facturadirecta", "chaos-check", "layer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_a_deliberate_product_import_in_the_peer_breaks_its_contract(tree: Path) -> None:
    add_line(tree / "sandbox/facturadirecta.py", DELIBERATE)
    result = lint(tree, "peer-facturadirecta")
    assert result.returncode == 1
    assert "sandbox.facturadirecta -> invoice_bridge.money" in result.stdout


def test_a_product_import_reached_through_another_sandbox_module_breaks_it_too(tree: Path) -> None:
    # The peer imports sandbox.httpserver; the product's code would run in the peer all the same.
    add_line(tree / "sandbox/httpserver.py", DELIBERATE)
    result = lint(tree, "peer-facturadirecta")
    assert result.returncode == 1
    assert "sandbox.httpserver -> invoice_bridge.money" in result.stdout


def test_the_layer_importing_the_local_stack_breaks_the_layers_contract(tree: Path) -> None:
    add_line(tree / "layers/common/invoice_bridge/money.py", "import sandbox.console  # noqa: F401\n")
    result = lint(tree, "layer")
    assert result.returncode == 1
    assert "invoice_bridge.money -> sandbox.console" in result.stdout
