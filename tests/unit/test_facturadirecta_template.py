"""template.yaml for FacturaDirectaExporterFunction: event source, timeouts, least privilege, logs, alarm."""

from __future__ import annotations

from typing import Any

from sandbox.cfn import Template
from tests.conftest import ROOT

TEMPLATE = Template.load(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE.resources
FUNCTION = RESOURCES["FacturaDirectaExporterFunction"]["Properties"]


def test_consumes_its_fifo_queue_with_partial_batch_responses_and_a_concurrency_cap() -> None:
    (event,) = FUNCTION["Events"].values()
    props = event["Properties"]
    assert event["Type"] == "SQS"
    assert props["Queue"] == {"Fn::GetAtt": ["FacturaDirectaQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "FacturaDirectaMaxConcurrency"}
    assert int(TEMPLATE.parameter_defaults()["FacturaDirectaMaxConcurrency"]) >= 2


def test_queue_visibility_is_six_times_the_function_timeout() -> None:
    visibility = RESOURCES["FacturaDirectaQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility == 6 * FUNCTION["Timeout"] == 360


def test_policies_are_exactly_what_the_exporter_calls() -> None:
    assert "Policies" not in FUNCTION  # its own role: SAM would attach managed policies to a generated one
    role = FUNCTION["Role"]["Fn::GetAtt"][0]
    statements = [s for p in RESOURCES[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    by_resource = {str(s["Resource"]): sorted(s["Action"]) for s in statements}
    assert by_resource == {
        str({"Fn::GetAtt": ["FacturaDirectaExporterLogGroup", "Arn"]}): ["logs:CreateLogStream", "logs:PutLogEvents"],
        "*": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
        str({"Fn::GetAtt": ["StateTable", "Arn"]}): ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"],
        str({"Fn::GetAtt": ["FacturaDirectaQueue", "Arn"]}): sorted(
            ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
        ),
        str({"Fn::GetAtt": ["FacturaDirectaDeadLetterQueue", "Arn"]}): ["sqs:SendMessage"],
        str([{"Ref": "FacturaDirectaSecret"}, {"Ref": "BuildNexionSecret"}]): ["secretsmanager:GetSecretValue"],
    }


def test_own_log_group_and_an_errors_alarm() -> None:
    assert FUNCTION["LoggingConfig"]["LogGroup"] == {"Ref": "FacturaDirectaExporterLogGroup"}
    assert RESOURCES["FacturaDirectaExporterLogGroup"]["Type"] == "AWS::Logs::LogGroup"
    alarm = RESOURCES["FacturaDirectaExporterErrorAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "FacturaDirectaExporterFunction"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
