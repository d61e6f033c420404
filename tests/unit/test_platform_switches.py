"""Deploy only the platforms you use: with a platform switched off, none of its resources remain, and nothing
that remains refers to one of them (except through an Fn::If on that platform's condition)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.cfn import Template
from tests.conftest import ROOT

TEMPLATE = Template.load(ROOT / "template.yaml")
SWITCHES = {"DeployQuipu": "UseQuipu", "DeployTuimprenta": "UseTuimprenta", "DeployFacturaDirecta": "UseFacturaDirecta"}
PREFIXES = {"DeployQuipu": "Quipu", "DeployTuimprenta": "Tuimprenta", "DeployFacturaDirecta": "FacturaDirecta"}


def references(value: Any, off: str) -> set[str]:
    """Logical ids `value` refers to, skipping the branch an Fn::If on the condition `off` does not take."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item, off)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Fn::If" and arg[0] == off:
                found |= references(arg[2], off)
            elif key == "Ref":
                found.add(str(arg))
            elif key == "Fn::GetAtt":
                found.add(str(arg[0]))
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                names = set() if isinstance(arg, str) else set(arg[1])
                found |= {part.split("}")[0].split(".")[0] for part in text.split("${")[1:]} - names
                if not isinstance(arg, str):
                    found |= references(arg[1], off)
            else:
                found |= references(arg, off)
    return found


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_a_platform_switched_off_leaves_nothing_behind_and_nothing_refers_to_it(switch: str) -> None:
    condition = SWITCHES[switch]
    assert TEMPLATE.document["Parameters"][switch]["AllowedValues"] == ["true", "false"]
    resources = TEMPLATE.resources
    removed = {name for name, spec in resources.items() if spec.get("Condition") == condition}
    platform_resources = {name for name in resources if name.startswith(PREFIXES[switch])}
    # every queue, worker, log group, secret and alarm of the platform goes (the Dashboard stays, emptied)
    assert platform_resources <= removed, platform_resources - removed
    kinds = {resources[name]["Type"] for name in removed}
    assert {
        "AWS::SQS::Queue",
        "AWS::Serverless::Function",
        "AWS::SecretsManager::Secret",
        "AWS::CloudWatch::Alarm",
    } <= kinds
    for name, spec in resources.items():
        if name not in removed:
            assert not references(spec, condition) & removed, name
    for name, output in TEMPLATE.document["Outputs"].items():
        if output.get("Condition") != condition:
            assert not references(output, condition) & removed, name
