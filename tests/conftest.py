"""Fixtures shared by every test layer: an isolated environment, paths, the sample events, the handler module.

Isolation (every test, every layer): the machine's AWS_* and POWERTOOLS_* variables, and every variable a
settings model reads, are removed; TEST_ENVIRONMENT is set instead. A test that needs more sets it itself
with monkeypatch (tests/integration/conftest.py's `aws` fixture sets fake credentials, a region and the
receiver's settings). Unit tests also run with sockets off: see tests/unit/conftest.py.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.loaders
import botocore.session
import pytest

ISOLATED_PREFIXES = ("AWS_", "POWERTOOLS_", "BOTO_")

# What Lambda sets before the handler imports invoice_bridge.observability, and nothing from ~/.aws.
TEST_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "webhook-receiver",
    "POWERTOOLS_METRICS_NAMESPACE": "InvoiceBridge",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def isolate(environ: MutableMapping[str, str]) -> None:
    """Drop the caller's AWS_*, BOTO_* and POWERTOOLS_* variables and set TEST_ENVIRONMENT."""
    for name in [n for n in environ if n.startswith(ISOLATED_PREFIXES)]:
        del environ[name]
    environ.update(TEST_ENVIRONMENT)


# Before any test module imports invoice_bridge.observability (Powertools reads its variables at import).
isolate(os.environ)

# One botocore loader for the whole run. Each boto3 Session (every cold start a test plays makes one) would
# otherwise parse the same service model files again: that was over half of the integration tests' CPU time.
# The models are read-only data, so sharing them changes nothing else.
SHARED_BOTOCORE_LOADER = botocore.loaders.create_loader()


@pytest.fixture(autouse=True, scope="session")
def shared_botocore_loader() -> Iterator[None]:
    """Every botocore session of the run loads service models through SHARED_BOTOCORE_LOADER."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", lambda search_path_string=None: SHARED_BOTOCORE_LOADER)
        yield


def settings_variables() -> set[str]:
    """Every variable a settings model (EnvSettings subclass, any depth) reads."""
    from invoice_bridge.config import EnvSettings

    names: set[str] = set()
    pending: list[type[EnvSettings]] = [EnvSettings]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        names.update(str(field.alias) for field in model.model_fields.values() if field.alias)
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut, fastest tests first: a mutant's run stops at its first failure, so it dies cheaply."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" not in mutant:
        return
    from tools.mutation_report import is_log_only  # only under mutmut, from its copy of the tree

    if is_log_only(mutant):
        items.clear()  # not scored (see the report): not worth a run either
        return
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from mutants/, where it keeps its stats
    durations: dict[str, float] = json.loads(stats.read_text())["duration_by_test"] if stats.exists() else {}
    items.sort(key=lambda item: ("/integration/" in item.nodeid, durations.get(item.nodeid, 0.0)))


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from TEST_ENVIRONMENT: no AWS_*/POWERTOOLS_* or settings variable from the caller."""
    settings = settings_variables()
    for name in list(os.environ):
        if name.startswith(ISOLATED_PREFIXES) or name in settings:
            monkeypatch.delenv(name)
    for name, value in TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


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


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Everything the functions' Powertools logger writes during the test (it keeps the stream it got at import)."""
    from invoice_bridge.observability import logger  # at use: the logger reads the isolated environment

    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    # Swapped, not setStream(): that flushes the stream from import time, which a runner (mutmut) may have closed.
    previous, handler.stream = handler.stream, buffer
    yield buffer
    handler.stream = previous


def emitted_metrics(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """The metrics in Powertools' EMF lines on stdout (capsys/capfd): (name, dimensions), in order."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        directive = document["_aws"]["CloudWatchMetrics"][0]
        dimensions = {name: str(document[name]) for group in directive["Dimensions"] for name in group}
        found.extend((metric["Name"], dimensions) for metric in directive["Metrics"])
    return found


class FakeClock:
    """Epoch seconds that move only when something sleeps on them (limiter and lease tests)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` at once: the clock moves on (a negative time is refused, as time.sleep refuses it)."""
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.slept.append(seconds)
        self.now += seconds
