"""Fixtures shared by every test layer: paths, the sample events, and the handler module."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Lambda sets these before the handler imports invoice_bridge.observability; so must the test session.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "InvoiceBridge")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "webhook-receiver")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
BUILDNEXION_EVENTS = sorted((EVENTS / "buildnexion").glob("*.json"))


def load_event(relative: str) -> dict[str, Any]:
    """A sample event from events/ as a dict."""
    document: dict[str, Any] = json.loads((EVENTS / relative).read_text(encoding="utf-8"))
    return document


def load_handler_module(code_dir: Path, name: str) -> ModuleType:
    """Import a function's app.py under a unique module name (every function's module is called app)."""
    spec = importlib.util.spec_from_file_location(name, code_dir / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def receiver_app() -> ModuleType:
    """functions/webhook_receiver/app.py, imported once (import must not read settings or make clients)."""
    return load_handler_module(ROOT / "functions" / "webhook_receiver", "webhook_receiver_app")
