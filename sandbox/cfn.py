"""Reads template.yaml for the local stack: CloudFormation tags, Globals, functions and intrinsics."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template uses something the local stack cannot play; names the resource and property."""


# The C loader when PyYAML has it: the tests parse the template once per moto fixture.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """YAML loader that turns `!Ref x` into `{"Ref": x}` and `!Sub s` into `{"Fn::Sub": s}`."""


def _tag_constructor(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag_constructor)


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data, intrinsics as their long form."""
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template")
    return document


@dataclass(frozen=True)
class FunctionSpec:
    """An AWS::Serverless::Function as the local stack runs it (Globals merged in)."""

    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]
    events: dict[str, dict[str, Any]]
    reserved_concurrency: int | None = None

    def events_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        """The function's events of the given SAM types, by name."""
        return {name: e for name, e in self.events.items() if e.get("Type") in types}


@dataclass
class Template:
    """A parsed template and the directory its relative paths start from."""

    document: dict[str, Any]
    root: Path
    functions: list[FunctionSpec] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Template:
        """Parse the template at `path`."""
        template = cls(load_template(path), path.parent)
        template.functions = template._functions()
        return template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """Resources by logical id."""
        resources: dict[str, dict[str, Any]] = self.document["Resources"]
        return resources

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The resources of one type, by logical id."""
        return {k: v for k, v in self.resources.items() if v.get("Type") == resource_type}

    def parameter_defaults(self) -> dict[str, str]:
        """Each parameter's default value."""
        return {name: str(spec.get("Default", "")) for name, spec in (self.document.get("Parameters") or {}).items()}

    def _functions(self) -> list[FunctionSpec]:
        globals_ = (self.document.get("Globals") or {}).get("Function") or {}
        specs = []
        for logical_id, resource in self.resources_of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties") or {}
            env = dict(((globals_.get("Environment") or {}).get("Variables")) or {})
            env.update(((props.get("Environment") or {}).get("Variables")) or {})
            code_uri = props.get("CodeUri")
            handler = props.get("Handler") or globals_.get("Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise TemplateError(f"{logical_id}: CodeUri and Handler must be plain strings")
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_dir=(self.root / code_uri).resolve(),
                    handler=handler,
                    timeout=int(props.get("Timeout") or globals_.get("Timeout") or 3),
                    memory=int(props.get("MemorySize") or globals_.get("MemorySize") or 128),
                    environment=env,
                    events=dict(props.get("Events") or {}),
                    reserved_concurrency=props.get("ReservedConcurrentExecutions"),
                )
            )
        return specs


_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class Intrinsics:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If and the pseudo parameters against local values."""

    def __init__(
        self,
        parameters: Mapping[str, str],
        refs: Mapping[str, str],
        attributes: Mapping[tuple[str, str], str],
        conditions: Mapping[str, bool] | None = None,
    ) -> None:
        self._values: dict[str, str] = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "invoice-bridge-local",
            **parameters,
            **refs,
        }
        self._attributes = dict(attributes)
        self._conditions = dict(conditions or {})

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic replaced by its local value."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._lookup(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                try:
                    return self._attributes[(logical_id, attribute)]
                except KeyError:
                    raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: not available locally") from None
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return _SUB_VARIABLE.sub(lambda m: self._sub_variable(m.group(1), variables), text)
            if key == "Fn::Join":
                separator, items = arg
                return str(separator).join(str(i) for i in self.resolve(items))
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self._conditions.get(condition) else when_false)
        return {k: self.resolve(v) for k, v in value.items()}

    def _lookup(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise TemplateError(f"Ref {name}: no local value") from None

    def _sub_variable(self, name: str, variables: Mapping[str, Any]) -> str:
        if name in variables:
            return str(variables[name])
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return str(self.resolve({"Fn::GetAtt": [logical_id, attribute]}))
        return self._lookup(name)
