"""SnapStart for the receiver: a template parameter, off by default, and restored environments reseed `random`."""

# ruff: noqa: S311 - the jitter generator under test is not cryptographic

from __future__ import annotations

import importlib.util
import random
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from invoice_bridge import snapstart
from sandbox.cfn import Template
from tests.conftest import ROOT

TEMPLATE = Template.load(ROOT / "template.yaml")
RECEIVER = "WebhookReceiverFunction"


def test_snapstart_is_a_parameter_off_by_default() -> None:
    parameter = TEMPLATE.document["Parameters"]["ReceiverSnapStart"]
    assert parameter["AllowedValues"] == ["PublishedVersions", "None"]
    assert parameter["Default"] == "None"


def test_the_receiver_applies_the_parameter_on_its_published_alias() -> None:
    properties = TEMPLATE.document["Resources"][RECEIVER]["Properties"]
    assert properties["SnapStart"] == {"ApplyOn": {"Ref": "ReceiverSnapStart"}}
    # SnapStart snapshots published versions only: the routes must invoke an alias, not $LATEST.
    assert properties["AutoPublishAlias"] == "live"
    runtime = properties.get("Runtime") or TEMPLATE.document["Globals"]["Function"]["Runtime"]
    assert runtime == "python3.12"  # the first Python runtime SnapStart supports


def test_only_the_receiver_uses_snapstart() -> None:
    resources = TEMPLATE.document["Resources"]
    with_snapstart = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function" and "SnapStart" in resource.get("Properties", {})
    ]
    assert with_snapstart == [RECEIVER]


def test_without_the_runtime_hooks_library_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert snapstart.register_after_restore_hooks() is False


def test_after_a_restore_random_is_reseeded(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[Callable[[], Any]] = []
    runtime = types.ModuleType(snapstart.RUNTIME_HOOKS_MODULE)
    runtime.register_after_restore = hooks.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, snapstart.RUNTIME_HOOKS_MODULE, runtime)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert snapstart.register_after_restore_hooks() is True
    assert hooks == [snapstart.reseed_random]

    # Two environments restored from one snapshot start with the same `random` state...
    snapshot = random.getstate()
    try:
        first_restore = [random.random() for _ in range(4)]
        random.setstate(snapshot)
        assert [random.random() for _ in range(4)] == first_restore
        # ...and draw different jitter once the hook has run.
        random.setstate(snapshot)
        for hook in hooks:
            hook()
        assert [random.random() for _ in range(4)] != first_restore
    finally:
        random.seed()
