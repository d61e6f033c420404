"""template.yaml against the code: handlers import, settings are all set, resources are as the issue asks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from invoice_bridge.config import EnvSettings
from invoice_bridge.worker import BASE_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS
from sandbox.cfn import FunctionSpec, Template
from tests.conftest import ROOT, load_handler_module

TEMPLATE = Template.load(ROOT / "template.yaml")
FUNCTIONS = TEMPLATE.functions


def function_ids(spec: FunctionSpec) -> str:
    return spec.logical_id


@pytest.mark.parametrize("spec", FUNCTIONS, ids=function_ids)
def test_every_handler_imports_without_settings_or_clients(spec: FunctionSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    # Import must succeed with no configuration at all: settings and clients come at the first invocation.
    for name in list(spec.environment):
        monkeypatch.delenv(name, raising=False)
    module_name, _, attribute = spec.handler.rpartition(".")
    module = load_handler_module(spec.code_dir, f"imported_{spec.logical_id}")
    assert module_name == "app"
    assert callable(getattr(module, attribute))


@pytest.mark.parametrize("spec", FUNCTIONS, ids=function_ids)
def test_every_setting_the_function_reads_is_set_by_the_template(spec: FunctionSpec) -> None:
    module = load_handler_module(spec.code_dir, f"settings_{spec.logical_id}")
    models = [
        v for v in vars(module).values() if isinstance(v, type) and issubclass(v, EnvSettings) and v is not EnvSettings
    ]
    assert models, f"{spec.logical_id} uses no settings model"
    read = {str(field.alias) for model in models for field in model.model_fields.values()}
    assert read <= set(spec.environment), f"not set by template.yaml: {sorted(read - set(spec.environment))}"


def test_only_the_settings_module_reads_the_environment() -> None:
    offenders = []
    for path in [*(ROOT / "layers/common/invoice_bridge").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        if path.name == "config.py":
            continue
        if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_layer_requirements_match_the_project_runtime_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = (ROOT / "layers/common/requirements.txt").read_text(encoding="utf-8").splitlines()
    layer = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert sorted(layer) == sorted(project["dependencies"])


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return TEMPLATE.resources_of_type(kind)


def test_runtime_and_architecture() -> None:
    function_globals = TEMPLATE.document["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]
    layer = TEMPLATE.resources["CommonLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"


def test_http_api_routes() -> None:
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for spec in FUNCTIONS
        for e in spec.events_of_type("HttpApi").values()
    }
    assert routes == {("POST", "/webhooks/buildnexion"), ("POST", "/webhooks/tuimprenta")}


def test_queues_fifo_where_order_matters_and_each_with_a_dead_letter_queue() -> None:
    queues = resources("AWS::SQS::Queue")
    fifo = {name for name, q in queues.items() if q["Properties"].get("FifoQueue")}
    assert {"QuipuQueue", "FacturaDirectaQueue"} <= fifo
    assert "TuimprentaQueue" not in fifo
    for name in ("QuipuQueue", "TuimprentaQueue", "FacturaDirectaQueue"):
        props = queues[name]["Properties"]
        dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        # The retries before the dead-letter queue span a platform outage of half an hour: the backoffs
        # between receives, at their shortest (jitter 0.8), add up to at least 30 minutes.
        receives = props["RedrivePolicy"]["maxReceiveCount"]
        budget = sum(min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (n - 1) * 0.8) for n in range(1, receives))
        assert budget >= 30 * 60, (name, receives, budget)
        assert bool(queues[dlq]["Properties"].get("FifoQueue")) == (name in fifo)
        assert props["VisibilityTimeout"] >= 60
        # A 256 KiB webhook body plus its message attributes must fit, on the queue and in its DLQ.
        assert props["MaximumMessageSize"] > 256 * 1024
        assert queues[dlq]["Properties"]["MaximumMessageSize"] >= props["MaximumMessageSize"]


def test_every_dead_letter_queue_has_an_alarm_and_so_do_receiver_errors() -> None:
    alarms = resources("AWS::CloudWatch::Alarm").values()
    by_metric: dict[str, set[str]] = {}
    for alarm in alarms:
        for dimension in alarm["Properties"]["Dimensions"]:
            if "Fn::GetAtt" in dimension["Value"]:
                by_metric.setdefault(alarm["Properties"]["MetricName"], set()).add(dimension["Value"]["Fn::GetAtt"][0])
    dead_letter_queues = {"QuipuDeadLetterQueue", "TuimprentaDeadLetterQueue", "FacturaDirectaDeadLetterQueue"}
    assert by_metric["ApproximateNumberOfMessagesVisible"] == dead_letter_queues
    assert by_metric["ApproximateAgeOfOldestMessage"] == {"QuipuQueue", "TuimprentaQueue", "FacturaDirectaQueue"}
    assert any(
        a["Properties"]["MetricName"] == "Errors"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": "WebhookReceiverFunction"}
        for a in alarms
    )


def test_tables_on_demand_with_ttl_and_point_in_time_recovery() -> None:
    tables = resources("AWS::DynamoDB::Table")
    assert set(tables) == {"StateTable"}
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["TimeToLiveSpecification"]["Enabled"] is True
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert [k["AttributeName"] for k in tables["StateTable"]["Properties"]["KeySchema"]] == ["pk", "sk"]


def test_one_secret_per_platform() -> None:
    assert set(resources("AWS::SecretsManager::Secret")) == {
        "BuildNexionSecret",
        "QuipuSecret",
        "TuimprentaSecret",
        "FacturaDirectaSecret",
    }


def _statements(function: str) -> list[dict[str, Any]]:
    """The statements of a function's own role (tests/unit/test_template_iam.py checks them after the transform)."""
    role = TEMPLATE.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in TEMPLATE.resources[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _granted(function: str, prefix: str) -> dict[str, list[str]]:
    """Actions starting with `prefix` by the resource they are granted on (str of the intrinsic)."""
    found: dict[str, list[str]] = {}
    for statement in _statements(function):
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
            found.setdefault(str(resource), []).extend(a for a in statement["Action"] if a.startswith(prefix))
    return {k: sorted(v) for k, v in found.items() if v}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=function_ids)
def test_policies_name_their_resources(spec: FunctionSpec) -> None:
    assert "Policies" not in TEMPLATE.resources[spec.logical_id]["Properties"]  # SAM would add managed ones
    for statement in _statements(spec.logical_id):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions)
        if statement["Resource"] == "*":
            assert set(actions) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_outputs() -> None:
    outputs = set(TEMPLATE.document["Outputs"])
    assert {"WebhookUrl", "QuipuQueueUrl", "TuimprentaQueueUrl", "FacturaDirectaQueueUrl"} <= outputs
    assert "StateTableName" in outputs


def test_samconfig_exists_for_deploys() -> None:
    assert (Path(ROOT) / "samconfig.toml").is_file()


def test_quipu_sync_function_consumes_its_fifo_queue_as_the_issue_asks() -> None:
    function = TEMPLATE.resources["QuipuSyncFunction"]["Properties"]
    (event,) = function["Events"].values()
    props = event["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["QuipuQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"]["MaximumConcurrency"] >= 2
    queue = TEMPLATE.resources["QuipuQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "QuipuSyncLogGroup"}
    assert _granted("QuipuSyncFunction", "dynamodb:") == {
        str({"Fn::GetAtt": ["StateTable", "Arn"]}): ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]
    }
    assert _granted("QuipuSyncFunction", "sqs:") == {
        str({"Fn::GetAtt": ["QuipuQueue", "Arn"]}): sorted(
            ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
        ),
        str({"Fn::GetAtt": ["QuipuDeadLetterQueue", "Arn"]}): ["sqs:SendMessage"],
    }
    assert sorted(_granted("QuipuSyncFunction", "secretsmanager:")) == sorted(
        [str({"Ref": "BuildNexionSecret"}), str({"Ref": "QuipuSecret"})]
    )
    alarms = resources("AWS::CloudWatch::Alarm").values()
    assert any(
        a["Properties"]["MetricName"] == "Errors"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": "QuipuSyncFunction"}
        for a in alarms
    )
    environment = function["Environment"]["Variables"]
    assert environment["QUIPU_VOID_MODE"] == {"Ref": "QuipuVoidMode"}
    assert environment["QUIPU_ATTACH_PDF"] == {"Ref": "QuipuAttachPdf"}
    assert environment["QUIPU_OWNER_SLUG"] == {"Ref": "QuipuOwnerSlug"}


def test_tuimprenta_poller_runs_on_a_schedule_within_its_queues_visibility() -> None:
    resource = TEMPLATE.resources["TuimprentaPollerFunction"]
    props = resource["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "TuimprentaPollSchedule"}
    assert TEMPLATE.parameter_defaults()["TuimprentaPollSchedule"] == "rate(1 minute)"
    queue = TEMPLATE.resources["TuimprentaQueue"]["Properties"]
    assert props["Timeout"] < queue["VisibilityTimeout"]
    assert int(TEMPLATE.parameter_defaults()["TuimprentaRunSeconds"]) < props["Timeout"]
    assert int(TEMPLATE.document["Parameters"]["TuimprentaRunSeconds"]["MaxValue"]) < props["Timeout"]
    assert resource["Metadata"]["InvoiceBridge"]["DrainsQueue"] == "TuimprentaQueue"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "TuimprentaPollerLogGroup"}
    assert any(
        a["Properties"]["MetricName"] == "Errors"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": "TuimprentaPollerFunction"}
        for a in resources("AWS::CloudWatch::Alarm").values()
    )


def test_tuimprenta_poller_policies_are_exact() -> None:
    by_resource = {
        **_granted("TuimprentaPollerFunction", "dynamodb:"),
        **_granted("TuimprentaPollerFunction", "sqs:"),
    }
    assert by_resource == {
        str({"Fn::GetAtt": ["StateTable", "Arn"]}): sorted(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"]
        ),
        str({"Fn::GetAtt": ["TuimprentaQueue", "Arn"]}): sorted(
            ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        ),
        str({"Fn::GetAtt": ["TuimprentaDeadLetterQueue", "Arn"]}): ["sqs:SendMessage"],
    }
    assert sorted(_granted("TuimprentaPollerFunction", "secretsmanager:")) == sorted(
        [str({"Ref": "TuimprentaSecret"}), str({"Ref": "BuildNexionSecret"})]
    )
