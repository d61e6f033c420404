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
    policies = FUNCTION["Policies"]
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    assert {
        "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
        "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]},
        "Effect": "Allow",
    } in statements
    assert {
        "Action": ["sqs:ChangeMessageVisibility"],
        "Resource": {"Fn::GetAtt": ["FacturaDirectaQueue", "Arn"]},
        "Effect": "Allow",
    } in statements
    named = [p for p in policies if "Statement" not in p]
    assert {
        "SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["FacturaDirectaDeadLetterQueue", "QueueName"]}}
    } in named
    secrets = sorted(
        p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
        for p in named
        if "AWSSecretsManagerGetSecretValuePolicy" in p
    )
    assert secrets == ["BuildNexionSecret", "FacturaDirectaSecret"]
    assert len(named) == 3


def test_own_log_group_and_an_errors_alarm() -> None:
    assert FUNCTION["LoggingConfig"]["LogGroup"] == {"Ref": "FacturaDirectaExporterLogGroup"}
    assert RESOURCES["FacturaDirectaExporterLogGroup"]["Type"] == "AWS::Logs::LogGroup"
    alarm = RESOURCES["FacturaDirectaExporterErrorAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "FacturaDirectaExporterFunction"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
