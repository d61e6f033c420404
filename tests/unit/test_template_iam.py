"""template.yaml's IAM after the SAM transform (issue 18, finding 10): what each function may really do.

The template is translated by samtranslator (what `sam deploy` runs), so managed policies SAM would attach
and the event source mappings it would create are seen as CloudFormation gets them.
"""

from __future__ import annotations

import copy
import fnmatch
from functools import cache
from typing import Any, cast

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from invoice_bridge.facturadirecta.exporter import DESTINATION as FACTURADIRECTA
from invoice_bridge.facturadirecta.exporter import PROVIDER_KIND
from invoice_bridge.keys import (
    BUILDNEXION_EVENTS_PK,
    TUIMPRENTA_BATCHES_PK,
    TUIMPRENTA_EVENTS_PK,
    TUIMPRENTA_OPEN_BATCHES_PK,
    ledger_pk,
    reference_pk,
)
from invoice_bridge.ledger import StateTable
from invoice_bridge.limiter import limiter_key
from invoice_bridge.quipu.client import TokenStore
from invoice_bridge.quipu.sync import DESTINATION as QUIPU
from invoice_bridge.tuimprenta.batches import CANCELS_PK
from invoice_bridge.tuimprenta.poller import DESTINATION as TUIMPRENTA
from invoice_bridge.tuimprenta.poller import LEASE_NAME
from sandbox.cfn import REGION, Template
from tests.conftest import ROOT

# AWS defines these on no resource type: `*` is the only resource that names them (Service Authorization
# Reference, AWS X-Ray). Any other `*` is a finding.
ACTIONS_WITHOUT_RESOURCE_TYPES = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})
FUNCTIONS = (
    "WebhookReceiverFunction",
    "QuipuSyncFunction",
    "TuimprentaPollerFunction",
    "FacturaDirectaExporterFunction",
)


@cache
def transformed() -> dict[str, Any]:
    """The template as `sam deploy` hands it to CloudFormation (code locations as `sam package` writes them)."""
    document = copy.deepcopy(Template.load(ROOT / "template.yaml").document)
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = f"s3://artifacts/{logical_id}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    output: dict[str, Any] = translator.translate(document, parameter_values={}, get_managed_policy_map=dict)
    return output


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in transformed()["Resources"].items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_of(function: str) -> tuple[str, dict[str, Any]]:
    role = transformed()["Resources"][function]["Properties"]["Role"]
    assert isinstance(role, dict), f"{function}: role {role!r} is not one of the template"
    assert "Fn::GetAtt" in role, f"{function}: role {role!r} is not one of the template"
    name = role["Fn::GetAtt"][0]
    return name, transformed()["Resources"][name]


def statements_of(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def deployed(value: Any) -> Any:
    """`value` as it is with every platform deployed (the default): `Fn::If` takes its first branch."""
    if isinstance(value, dict) and "Fn::If" in value:
        return value["Fn::If"][1]
    return value


def grants(function: str, action: str) -> list[Any]:
    """Every resource `function`'s role is allowed `action` on (every platform deployed)."""
    _, role = role_of(function)
    return [
        deployed(r)
        for s in statements_of(role)
        if s["Effect"] == "Allow" and action in as_list(s["Action"])
        for r in as_list(s["Resource"])
    ]


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def test_every_function_has_a_role_of_the_template() -> None:
    assert set(resources("AWS::Lambda::Function")) == set(FUNCTIONS)
    roles = {role_of(f)[0] for f in FUNCTIONS}
    assert len(roles) == len(FUNCTIONS)  # none shared


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_managed_policy_and_no_wildcard_resource_in_a_function_s_effective_policy(function: str) -> None:
    name, role = role_of(function)
    assert role["Properties"].get("ManagedPolicyArns", []) == [], f"{name} attaches managed policies"
    for statement in statements_of(role):
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), f"{name}: wildcard action in {actions}"
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= ACTIONS_WITHOUT_RESOURCE_TYPES, f"{name}: {actions} on every resource"
        for resource in as_list(statement["Resource"]):
            # A literal ARN with a wildcard ("arn:aws:sqs:*:*:*") is a `*` too.
            assert not isinstance(resource, str) or resource == "*" or "*" not in resource, f"{name}: {resource}"


def test_no_role_of_the_stack_grants_anything_on_every_resource() -> None:
    # Including the roles SAM generates (the scheduler's role that invokes the poller).
    for name, role in resources("AWS::IAM::Role").items():
        assert role["Properties"].get("ManagedPolicyArns", []) == [], name
        for statement in statements_of(role):
            if "*" in as_list(statement["Resource"]):
                assert set(as_list(statement["Action"])) <= ACTIONS_WITHOUT_RESOURCE_TYPES, name


def test_each_event_source_mapping_reads_only_its_own_queue() -> None:
    mappings = resources("AWS::Lambda::EventSourceMapping").values()
    consumed = {m["Properties"]["FunctionName"]["Ref"]: m["Properties"]["EventSourceArn"] for m in mappings}
    assert consumed == {
        "QuipuSyncFunction": arn("QuipuQueue"),
        "FacturaDirectaExporterFunction": arn("FacturaDirectaQueue"),
    }
    for function, queue in {**consumed, "TuimprentaPollerFunction": arn("TuimprentaQueue")}.items():
        for action in (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        ):
            assert grants(function, action) == [queue], (function, action)
    assert grants("WebhookReceiverFunction", "sqs:ReceiveMessage") == []


def test_workers_send_only_to_their_own_dead_letter_queue_and_the_receiver_only_to_the_work_queues() -> None:
    assert grants("QuipuSyncFunction", "sqs:SendMessage") == [arn("QuipuDeadLetterQueue")]
    assert grants("TuimprentaPollerFunction", "sqs:SendMessage") == [arn("TuimprentaDeadLetterQueue")]
    assert grants("FacturaDirectaExporterFunction", "sqs:SendMessage") == [arn("FacturaDirectaDeadLetterQueue")]
    assert grants("WebhookReceiverFunction", "sqs:SendMessage") == [
        arn("QuipuQueue"),
        arn("TuimprentaQueue"),
        arn("FacturaDirectaQueue"),
    ]


def test_each_function_reads_only_its_own_secrets() -> None:
    secrets = {f: sorted(r["Ref"] for r in grants(f, "secretsmanager:GetSecretValue")) for f in FUNCTIONS}
    assert secrets == {
        "WebhookReceiverFunction": ["BuildNexionSecret", "TuimprentaSecret"],
        "QuipuSyncFunction": ["BuildNexionSecret", "QuipuSecret"],
        "TuimprentaPollerFunction": ["BuildNexionSecret", "TuimprentaSecret"],
        "FacturaDirectaExporterFunction": ["BuildNexionSecret", "FacturaDirectaSecret"],
    }


# The keys each function's code reads and writes, from the code's own key functions and constants (a lease
# item is `lease#<name>`, see invoice_bridge.ledger.Leases; a reference's lease is named after its key).
QUIPU_TOKEN = TokenStore(cast(StateTable, None), "app-id").lease_name
QUIPU_CONTACTS = reference_pk(QUIPU, "contact")
FACTURADIRECTA_PROVIDERS = reference_pk(FACTURADIRECTA, PROVIDER_KIND)
CODE_KEYS: dict[str, set[str]] = {
    "WebhookReceiverFunction": {TUIMPRENTA_EVENTS_PK, BUILDNEXION_EVENTS_PK},
    "QuipuSyncFunction": {
        ledger_pk(QUIPU),
        QUIPU_CONTACTS,
        f"lease#{QUIPU_CONTACTS}#B12345678",
        QUIPU_TOKEN,
        f"lease#{QUIPU_TOKEN}",
        limiter_key(QUIPU, "app-id"),
    },
    "TuimprentaPollerFunction": {
        ledger_pk(TUIMPRENTA),
        f"lease#{LEASE_NAME}",
        TUIMPRENTA_BATCHES_PK,
        TUIMPRENTA_OPEN_BATCHES_PK,
        CANCELS_PK,
        TUIMPRENTA_EVENTS_PK,
        limiter_key(TUIMPRENTA, "api-key"),
    },
    "FacturaDirectaExporterFunction": {
        ledger_pk(FACTURADIRECTA),
        FACTURADIRECTA_PROVIDERS,
        f"lease#{FACTURADIRECTA_PROVIDERS}#B12345678",
    },
}


def state_table_statements(function: str) -> list[dict[str, Any]]:
    _, role = role_of(function)
    return [s for s in statements_of(role) if arn("StateTable") in as_list(s["Resource"])]


def leading_keys(statement: dict[str, Any]) -> list[str]:
    condition = statement.get("Condition", {})
    for operator in ("ForAllValues:StringLike", "ForAllValues:StringEquals"):
        if "dynamodb:LeadingKeys" in condition.get(operator, {}):
            return as_list(condition[operator]["dynamodb:LeadingKeys"])
    return []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_reaches_only_its_own_keys_of_the_state_table(function: str) -> None:
    statements = state_table_statements(function)
    assert statements, f"{function} does not use the state table"
    for statement in statements:
        patterns = leading_keys(statement)
        assert patterns, f"{function}: a state table grant without dynamodb:LeadingKeys"
        # Every key the code uses is granted, and every pattern is one the code uses.
        for key in CODE_KEYS[function]:
            assert any(fnmatch.fnmatchcase(key, p) for p in patterns), f"{function}: {key} not granted"
        for pattern in patterns:
            assert any(fnmatch.fnmatchcase(k, pattern) for k in CODE_KEYS[function]), f"{function}: {pattern} unused"


@pytest.mark.parametrize(
    ("function", "key"),
    [
        ("TuimprentaPollerFunction", "token#quipu#digest"),  # Quipu's access token
        ("FacturaDirectaExporterFunction", "token#quipu#digest"),
        ("WebhookReceiverFunction", "ledger#quipu"),
        ("WebhookReceiverFunction", "token#quipu#digest"),
        ("QuipuSyncFunction", "ledger#tuimprenta"),
        ("QuipuSyncFunction", "tuimprenta#batches"),
        ("FacturaDirectaExporterFunction", "ledger#quipu"),
        ("TuimprentaPollerFunction", "lease#token#quipu#digest"),
    ],
)
def test_no_function_reaches_another_s_keys(function: str, key: str) -> None:
    for statement in state_table_statements(function):
        assert not any(fnmatch.fnmatchcase(key, p) for p in leading_keys(statement)), (function, key)


def test_every_queue_refuses_plain_http() -> None:
    queues = resources("AWS::SQS::Queue")
    assert len(queues) == 6  # three work queues and their dead-letter queues
    policies = resources("AWS::SQS::QueuePolicy").values()
    for queue in queues:
        denying = [
            s
            for p in policies
            if {"Ref": queue} in p["Properties"]["Queues"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s["Principal"] == "*"
            and as_list(s["Action"]) == ["sqs:*"]
            and arn(queue) in as_list(s["Resource"])
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denying, f"{queue} has no TLS-only policy"
