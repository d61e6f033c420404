"""Which stack an operator command acts on when the command line names none, and what ops may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ops.defaults import NO_TARGET, NoTargetError, TargetSpec, resolve
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _no_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INVOICE_BRIDGE_STACK", "INVOICE_BRIDGE_REGION", "LOCAL_PORT"):
        monkeypatch.delenv(name, raising=False)


def user_config(folder: Path, text: str) -> Path:
    (folder / "samconfig.user.toml").write_text(text, encoding="utf-8")
    return folder


def test_nothing_named_is_an_error_that_says_how_to_name_a_target(tmp_path: Path) -> None:
    with pytest.raises(NoTargetError) as raised:
        resolve(None, None, None, root=tmp_path)
    assert str(raised.value) == NO_TARGET
    for way in ("--stack NAME", "--local", "INVOICE_BRIDGE_STACK"):
        assert way in NO_TARGET


def test_flags_win_over_every_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOICE_BRIDGE_STACK", "from-env")
    root = user_config(tmp_path, '[default.deploy.parameters]\nstack_name = "saved"\nregion = "eu-south-2"\n')
    assert resolve("named", "us-east-1", None, root=root) == TargetSpec(stack="named", region="us-east-1")
    assert resolve(None, None, "", root=root) == TargetSpec(local_url="http://127.0.0.1:3000", source="--local")
    monkeypatch.setenv("LOCAL_PORT", "3999")
    assert resolve(None, None, "", root=root).local_url == "http://127.0.0.1:3999"


def test_the_environment_names_a_stack_or_the_local_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = user_config(tmp_path, '[default.deploy.parameters]\nstack_name = "saved"\nregion = "eu-south-2"\n')
    monkeypatch.setenv("INVOICE_BRIDGE_STACK", "prod")
    assert resolve(None, None, None, root=root) == TargetSpec(
        stack="prod", region="eu-south-2", source="INVOICE_BRIDGE_STACK"
    )
    monkeypatch.setenv("INVOICE_BRIDGE_REGION", "eu-west-3")
    assert resolve(None, None, None, root=root).region == "eu-west-3"
    monkeypatch.setenv("INVOICE_BRIDGE_STACK", "local")
    assert resolve(None, None, None, root=root).is_local


def test_the_stack_make_deploy_saved_is_the_last_default(tmp_path: Path) -> None:
    root = user_config(tmp_path, '[default.deploy.parameters]\nstack_name = "saved"\nregion = "eu-south-2"\n')
    assert resolve(None, None, None, root=root) == TargetSpec(
        stack="saved", region="eu-south-2", source="samconfig.user.toml"
    )
    user_config(tmp_path, "version = 0.1\n")
    with pytest.raises(NoTargetError):
        resolve(None, None, None, root=tmp_path)
    user_config(tmp_path, "not toml [")
    with pytest.raises(NoTargetError, match="cannot read"):
        resolve(None, None, None, root=tmp_path)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_ops_imports_nothing_from_sandbox() -> None:
    # ops reaches the local stack over HTTP, as a deployed one; sandbox/cli imports ops, not the other way.
    # (After merge, the import-linter contract "ops never imports sandbox" in pyproject.toml says the same.)
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "sandbox")
        for path in sorted((ROOT / "ops").glob("*.py"))
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}
    assert imported_modules(ROOT / "ops" / "cli.py") >= {"ops.defaults"}  # the walk does see imports
