"""The CloudWatch dashboard against the code: every metric it shows is emitted, with the same dimensions."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from invoice_bridge.config import Destination
from invoice_bridge.errors import RejectionReason
from sandbox.cfn import Template
from tests.conftest import ROOT

TEMPLATE = Template.load(ROOT / "template.yaml")
LAYER = ROOT / "layers" / "common" / "invoice_bridge"
# Which function's code a module runs in: the service dimension Powertools adds to every metric it flushes.
SERVICES_BY_PACKAGE = {
    "quipu": {"quipu-sync"},
    "tuimprenta": {"tuimprenta-poller"},
    "facturadirecta": {"facturadirecta-exporter"},
    "sync": {"quipu-sync", "tuimprenta-poller", "facturadirecta-exporter"},  # the engine every worker runs
}
WORKERS = {"quipu-sync", "tuimprenta-poller", "facturadirecta-exporter"}
SHARED_BY_WORKERS = {"worker.py", "ledger.py", "limiter.py", "http.py"}
EMITTERS = {"count", "observe", "gauge"}
HANDLER_SERVICES = {
    "webhook_receiver": "webhook-receiver",
    "quipu_sync": "quipu-sync",
    "tuimprenta_poller": "tuimprenta-poller",
    "facturadirecta_exporter": "facturadirecta-exporter",
}


def dashboard_body() -> tuple[str, dict[str, Any]]:
    """The dashboard's Fn::Sub text and its variables (the names of resources a platform switch may leave out)."""
    sub = TEMPLATE.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])


def dashboard_metrics() -> list[list[str]]:
    body, _ = dashboard_body()
    # ${...} placeholders are resolved by CloudFormation; any text stands in for them here.
    document = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    found = []
    for widget in document["widgets"]:
        for metric in widget["properties"]["metrics"]:
            found.append([part for part in metric if isinstance(part, str)])
    return found


def emitted() -> dict[str, list[tuple[frozenset[str], set[str], Path]]]:
    """Metric name → (dimension names, services that can emit it, module) for every call in the layer."""
    calls: dict[str, list[tuple[frozenset[str], set[str], Path]]] = {}
    handlers = {p: HANDLER_SERVICES[p.parent.name] for p in (ROOT / "functions").glob("*/app.py")}
    for path in [*LAYER.rglob("*.py"), *handlers]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = path.relative_to(ROOT / "functions") if path in handlers else path.relative_to(LAYER)
        if path in handlers:
            services = {handlers[path]}
        elif relative.parts[0] in SERVICES_BY_PACKAGE:
            services = SERVICES_BY_PACKAGE[relative.parts[0]]
        elif relative.name in SHARED_BY_WORKERS:
            services = WORKERS
        else:
            services = {"webhook-receiver"}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in EMITTERS):
                continue
            name = node.args[0]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                continue
            dimensions = next((a for a in node.args[1:] if isinstance(a, ast.Dict)), None)
            keys = frozenset(
                str(k.value) for k in (dimensions.keys if dimensions else []) if isinstance(k, ast.Constant)
            )
            calls.setdefault(name.value, []).append((keys, services, relative))
    return calls


def test_the_template_sets_the_service_names_the_dashboard_uses() -> None:
    services = {spec.environment.get("POWERTOOLS_SERVICE_NAME") for spec in TEMPLATE.functions}
    assert services == WORKERS | {"webhook-receiver"}


ALLOWED_VALUES = {
    "destination": {d.value for d in Destination},
    "platform": {"quipu", "tuimprenta", "facturadirecta", "buildnexion"},
    "reason": set(get_args(RejectionReason)),
}


@pytest.mark.parametrize("metric", [m for m in dashboard_metrics() if m[0] == "InvoiceBridge"], ids=lambda m: m[1])
def test_every_custom_metric_on_the_dashboard_is_emitted_with_those_dimensions(metric: list[str]) -> None:
    _, name, *pairs = metric
    dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
    service = dimensions.pop("service")
    calls = emitted().get(name)
    assert calls, f"{name}: no code emits it"
    matching = [(keys, services) for keys, services, _ in calls if keys == frozenset(dimensions)]
    assert matching, f"{name}: emitted with {[sorted(k) for k, _, _ in calls]}, shown with {sorted(dimensions)}"
    assert any(service in services for _, services in matching), f"{name}: {service} does not emit it"
    for key, value in dimensions.items():
        assert value in ALLOWED_VALUES[key], f"{name}: {key}={value} is never emitted"


def test_every_aws_metric_names_a_resource_of_the_template() -> None:
    body, variables = dashboard_body()
    for reference in re.findall(r"\$\{([^}]+)\}", body):
        if reference in variables:
            # [condition, the resource's name, a stand-in when the platform is not deployed]
            condition, named, _ = variables[reference]["Fn::If"]
            reference = named.get("Ref") or ".".join(named["Fn::GetAtt"])
            assert TEMPLATE.resources[reference.split(".")[0]].get("Condition") == condition, reference
        logical_id = reference.split(".")[0]
        assert logical_id.startswith("AWS::") or logical_id in TEMPLATE.resources, reference


def test_the_dashboard_shows_what_the_issue_asks() -> None:
    titles = " | ".join(
        w["properties"]["title"] for w in json.loads(re.sub(r"\$\{[^}]+\}", "x", dashboard_body()[0]))["widgets"]
    )
    for words in (
        "Webhooks by outcome",
        "synced per destination",
        "Dead-lettered",
        "Oldest event waiting",
        "Dead-letter queue depth",
        "Quipu rate limit",
        "open batches",
        "errors",
        "duration",
    ):
        assert words in titles
