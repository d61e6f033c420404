"""The operator commands as typed at a terminal, against a deployed stack (moto): the target line, the
confirmation before a write, --dry-run, and the writes themselves."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from botocore.stub import ANY, Stubber

from invoice_bridge import observability
from invoice_bridge.config import Destination
from invoice_bridge.ledger import Ledger, LedgerEntry, StateTable
from ops import cli as ops_cli
from ops import commands
from ops.defaults import NO_TARGET
from ops.target import Target
from sandbox.buildnexion import BuildNexionPeer
from sandbox.cli import main
from tests.integration.conftest import Aws
from tests.integration.test_ops import T0, dead_letter, envelope, invoice
from tests.integration.test_ops import peer as peer  # the fixtures, shared
from tests.integration.test_ops import target as target

ACCOUNT = "123456789012"
TARGET_LINE = f"target: stack test-stack (account {ACCOUNT}, region eu-west-1)"


class Terminal(io.StringIO):
    """stdin as a person at a terminal types it."""

    def isatty(self) -> bool:
        """A terminal: the command may ask."""
        return True


class Pipe(io.StringIO):
    """stdin from a pipe or a cron job: nobody to ask."""

    def isatty(self) -> bool:
        """Not a terminal."""
        return False


@pytest.fixture(autouse=True)
def _layer_logging_restored() -> Iterator[None]:
    """The CLI quiets the layer for the process (as a command should); the tests after these need it back."""
    level, emitting = observability.logger.log_level, dict(observability._emit)
    yield
    observability.logger.setLevel(level)
    observability._emit.update(emitting)


@pytest.fixture
def deployed(target: Target, monkeypatch: pytest.MonkeyPatch) -> Target:
    """`--stack test-stack` finds the moto stack (as CloudFormation would, with its account and region)."""
    target.account, target.region = ACCOUNT, "eu-west-1"
    opened: list[tuple[str, str | None]] = []

    def from_stack(stack: str, region: str | None) -> Target:
        opened.append((stack, region))
        assert stack == "test-stack", stack
        return target

    monkeypatch.setattr(ops_cli, "from_stack", from_stack)
    monkeypatch.setattr("sys.stdin", Pipe(""))
    monkeypatch.delenv("INVOICE_BRIDGE_STACK", raising=False)
    return target


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """(exit status, stdout lines, stderr) of `invoice-bridge ARGV`."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_every_command_names_the_deployed_target_on_its_first_line(
    deployed: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    peer.put_objects([invoice(1, T0)])
    for argv in (
        ["status"],
        ["dlq", "list", "quipu"],
        ["dlq", "redrive", "quipu", "--dry-run"],
        ["dlq", "drop", "quipu", "--id", "x", "--dry-run"],
        ["replay", "inv_bf0001", "--dry-run"],
        ["backfill", "quipu", "--since", "2026-11-01", "--dry-run"],
        ["reconcile", "quipu"],
    ):
        _, out, err = invoke(capsys, *argv, "--stack", "test-stack")
        assert out[0] == TARGET_LINE, (argv, out, err)


def test_json_output_stays_json_and_the_target_goes_to_stderr(
    deployed: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "status", "--stack", "test-stack", "--json")
    assert code == 0
    assert [row["destination"] for row in json.loads("\n".join(out))] == ["quipu", "tuimprenta", "facturadirecta"]
    assert err.splitlines()[0] == TARGET_LINE


def test_without_a_target_nothing_runs_and_the_message_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("INVOICE_BRIDGE_STACK", raising=False)
    monkeypatch.setattr("ops.defaults.REPO_ROOT", tmp_path)  # no samconfig.user.toml there
    code, out, err = invoke(capsys, "status")
    assert (code, out) == (2, [])
    assert err.strip() == f"invoice-bridge: {NO_TARGET}"


def test_invoice_bridge_stack_names_the_default_target(
    deployed: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOICE_BRIDGE_STACK", "test-stack")
    code, out, _ = invoke(capsys, "status")
    assert (code, out[0]) == (0, TARGET_LINE)


def test_a_write_to_a_deployed_stack_without_a_terminal_is_refused_until_yes(
    aws: Aws, deployed: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    peer.put_objects([invoice(1, T0)])
    code, out, _ = invoke(capsys, "replay", "inv_bf0001", "--stack", "test-stack")
    assert code == 2
    assert out[1] == (
        "refusing to replay inv_bf0001 on stack test-stack without confirmation: pass --yes "
        "(or --dry-run to see what would be written)"
    )
    assert aws.depth("QuipuQueue") == 0
    code, out, _ = invoke(capsys, "replay", "inv_bf0001", "--stack", "test-stack", "--yes")
    assert code == 0
    assert out[1] == "inv_bf0001: enqueued as invoice.updated for quipu"
    assert aws.depth("QuipuQueue") == 1


def test_the_operator_is_asked_and_only_yes_writes(
    aws: Aws,
    deployed: Target,
    peer: BuildNexionPeer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer.put_objects([invoice(1, T0)])
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = invoke(capsys, "backfill", "quipu", "--since", "2026-11-01", "--stack", "test-stack")
    assert code == 2
    assert out[1:] == [
        "enqueue every quipu object updated since 2026-11-01 on stack test-stack? type 'yes' to go ahead: "
        "nothing written"
    ]
    assert aws.depth("QuipuQueue") == 0
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    code, out, _ = invoke(capsys, "backfill", "quipu", "--since", "2026-11-01", "--stack", "test-stack")
    assert code == 0
    assert out[-1] == "backfill done: 1 object(s) enqueued"
    assert aws.depth("QuipuQueue") == 1


def test_the_local_stack_is_written_without_asking_but_drop_always_asks(
    aws: Aws, target: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target.local_url = "http://127.0.0.1:3000"
    monkeypatch.setattr(ops_cli, "from_local", lambda url: target)
    monkeypatch.setattr("sys.stdin", Pipe(""))
    peer.put_objects([invoice(1, T0)])
    code, out, _ = invoke(capsys, "replay", "inv_bf0001", "--local")
    assert (code, out) == (
        0,
        ["target: local stack at http://127.0.0.1:3000", "inv_bf0001: enqueued as invoice.updated for quipu"],
    )
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "x", "inv_1")
    code, out, _ = invoke(capsys, "dlq", "drop", "quipu", "--id", "inv_1", "--local")
    assert code == 2
    assert "pass --yes" in out[1]
    assert aws.depth("QuipuDeadLetterQueue") == 1


def test_dry_runs_show_what_would_be_written_and_write_nothing(
    aws: Aws, deployed: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three invoices at BuildNexion and two dead letters
    peer.put_objects([invoice(i, T0 + timedelta(minutes=i)) for i in range(3)])
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "x", "inv_1")
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_2"), "y", "inv_2")
    letters = {letter.object_id: letter.message_id for letter in commands.dlq_list(deployed, Destination.QUIPU)}

    # When each write runs with --dry-run (and no --yes, from a pipe)
    stack = ("--stack", "test-stack", "--dry-run")
    replayed = invoke(capsys, "replay", "inv_bf0001", *stack)
    backfilled = invoke(capsys, "backfill", "quipu", "--since", "2026-11-01", *stack)
    redriven = invoke(capsys, "dlq", "redrive", "quipu", "--id", "inv_1", *stack)
    dropped = invoke(capsys, "dlq", "drop", "quipu", "--id", "inv_2", *stack)

    # Then each says what it would do
    assert replayed[:2] == (0, [TARGET_LINE, "inv_bf0001: would be enqueued as invoice.updated for quipu"])
    assert backfilled[0] == 0
    assert backfilled[1][-1] == "dry run: 3 object(s) would be enqueued; nothing was written"
    assert redriven[:2] == (0, [TARGET_LINE, "would redrive 1 message(s) to the quipu queue", f"  {letters['inv_1']}"])
    assert dropped[:2] == (0, [TARGET_LINE, "would drop 1 message(s)"])
    # and nothing moved, nothing was enqueued, and no backfill checkpoint was saved
    assert aws.depth("QuipuQueue") == 0
    assert sorted(letter.object_id for letter in commands.dlq_list(deployed, Destination.QUIPU)) == ["inv_1", "inv_2"]
    # (a dry run stopped half-way leaves no checkpoint behind either: the real run starts from the beginning)
    halfway = commands.backfill(deployed, Destination.QUIPU, date(2026, 11, 1), page_size=2, dry_run=True)
    next(halfway)
    halfway.close()
    *_, last = commands.backfill(deployed, Destination.QUIPU, date(2026, 11, 1), page_size=2)
    assert last.enqueued == 3
    assert aws.depth("QuipuQueue") == 3


def test_redrive_and_drop_with_yes_write_and_the_first_failure_time_survives(
    aws: Aws, deployed: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e1", "inv_1"), "x", "inv_1")
    dead_letter(aws, "QuipuDeadLetterQueue", envelope("e2", "inv_2"), "y", "inv_2")
    (first,) = [letter for letter in commands.dlq_list(deployed, Destination.QUIPU) if letter.object_id == "inv_1"]

    code, out, _ = invoke(capsys, "dlq", "redrive", "quipu", "--id", "inv_1", "--stack", "test-stack", "--yes")
    assert (code, out) == (0, [TARGET_LINE, "redriven 1 message(s) to the quipu queue"])
    (back,) = aws.queue_messages("QuipuQueue")
    assert back["MessageAttributes"]["first_failed_at"]["StringValue"] == first.first_failure
    # dead-lettered again by a worker (which keeps the message's attributes): the first failure still shows
    aws.session.client("sqs").send_message(
        QueueUrl=aws.provisioned.queues["QuipuDeadLetterQueue"].url,
        MessageBody=back["Body"],
        MessageAttributes={
            **back["MessageAttributes"],
            "failed_at": {"DataType": "String", "StringValue": "2030-01-01T00:00:00+00:00"},
        },
        MessageGroupId="inv_1",
        MessageDeduplicationId="again",
    )
    again = [letter for letter in commands.dlq_list(deployed, Destination.QUIPU) if letter.object_id == "inv_1"]
    assert [letter.first_failure for letter in again] == [first.first_failure]

    code, out, _ = invoke(capsys, "dlq", "drop", "quipu", "--id", "inv_2", "--stack", "test-stack", "--yes")
    assert (code, out) == (0, [TARGET_LINE, "dropped 1 message(s)"])
    assert [letter.object_id for letter in commands.dlq_list(deployed, Destination.QUIPU)] == ["inv_1"]


def test_reconcile_says_which_totals_it_could_not_compare_and_fails_only_on_a_difference(
    aws: Aws, deployed: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(StateTable(aws.session.client("dynamodb"), aws.provisioned.tables["StateTable"]))
    unrecorded, recorded = invoice(1, T0), invoice(2, T0)
    peer.put_objects([unrecorded, recorded])
    ledger.save(LedgerEntry(destination="quipu", object_id=unrecorded["id"]).synced("q1", T0))
    ledger.save(
        LedgerEntry(destination="quipu", object_id=recorded["id"]).synced(
            "q2", T0, remote_total_cents=recorded["total_amount"]
        )
    )
    capsys.readouterr()  # the ledger's own metric lines
    code, out, _ = invoke(capsys, "reconcile", "quipu", "--stack", "test-stack")
    assert (code, out[1:]) == (
        0,
        [
            "1 document(s) have no platform total recorded (a worker that does not read it back): their versions "
            "were compared, their totals were not",
            "2 synced document(s) checked, 0 difference(s)",
        ],
    )
    wrong = invoice(3, T0)
    peer.put_objects([wrong])
    ledger.save(
        LedgerEntry(destination="quipu", object_id=wrong["id"]).synced(
            "q3", T0, remote_total_cents=wrong["total_amount"] + 1
        )
    )
    capsys.readouterr()
    code, out, _ = invoke(capsys, "reconcile", "quipu", "--stack", "test-stack", "--json")
    assert code == 1
    report = json.loads("\n".join(out))
    assert (report["checked"], report["totals_not_compared"]) == (3, [unrecorded["id"]])
    assert [d["object_id"] for d in report["differences"]] == [wrong["id"]]


def test_info_names_the_webhook_url_and_the_secrets_still_empty(
    aws: Aws, deployed: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed.outputs["WebhookUrl"] = "https://abc.execute-api.eu-west-1.amazonaws.com/webhooks/buildnexion"
    deployed.secretsmanager().put_secret_value(
        SecretId=deployed.outputs["QuipuSecretArn"], SecretString=json.dumps({"app_id": "", "app_secret": ""})
    )
    del deployed.outputs["FacturaDirectaSecretArn"]  # as a stack deployed with DeployFacturaDirecta=false
    code, out, _ = invoke(capsys, "info", "--stack", "test-stack")
    assert code == 1  # a secret is still empty
    assert out[:2] == [TARGET_LINE, f"WebhookUrl: {deployed.outputs['WebhookUrl']}"]
    assert out[-5:] == [
        "BuildNexion secret: filled",
        "Quipu secret: still empty: app_id, app_secret",
        "Tuimprenta secret: filled",
        "FacturaDirecta: not deployed",
        "fill them: docs/operations.md, 'Filling and rotating secrets'",
    ]
    assert "sandbox-quipu" not in "\n".join(out)  # no secret value is printed


def test_logs_asks_logs_insights_for_the_id_in_every_function_and_prints_each_line(
    deployed: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = deployed.logs()
    stubber = Stubber(client)
    groups = [f"/aws/lambda/test-stack-{f}" for f in commands.LOG_FUNCTIONS]
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {
            "logGroupNames": groups,
            "startTime": ANY,
            "endTime": ANY,
            "queryString": commands.log_query("inv_8f3k2"),
        },
    )
    stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q1"})
    row = [
        {"field": "@timestamp", "value": "2026-11-03 10:15:00.000"},
        {"field": "@log", "value": f"{ACCOUNT}:/aws/lambda/test-stack-quipu-sync"},
        {"field": "level", "value": "INFO"},
        {"field": "message", "value": "document synced"},
        {"field": "destination", "value": "quipu"},
        {"field": "@ptr", "value": "x"},
    ]
    stubber.add_response("get_query_results", {"status": "Complete", "results": [row]}, {"queryId": "q1"})
    with stubber:
        code, out, _ = invoke(capsys, "logs", "--id", "inv_8f3k2", "--stack", "test-stack")
    stubber.assert_no_pending_responses()
    assert (code, out) == (
        0,
        [
            TARGET_LINE,
            "2026-11-03 10:15:00.000 quipu-sync INFO document synced destination=quipu",
            "1 line(s) about inv_8f3k2 in the last 24 h",
        ],
    )
    assert 'filter correlation_id = "inv_8f3k2" or object_id = "inv_8f3k2"' in commands.log_query("inv_8f3k2")
    code, _, err = invoke(capsys, "logs", "--id", 'x" or 1=1', "--stack", "test-stack")
    assert (code, err.strip()) == (
        2,
        "invoice-bridge: 'x\" or 1=1' is not an object or event id (letters, digits, '_' and '-')",
    )


def test_webhook_register_on_a_deployed_stack_asks_and_never_prints_the_secret(
    deployed: Target, peer: BuildNexionPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed.outputs["WebhookUrl"] = "https://abc.execute-api.eu-west-1.amazonaws.com/webhooks/buildnexion"
    code, out, _ = invoke(capsys, "webhook", "register", "--stack", "test-stack")
    assert code == 2
    assert "refusing to register" in out[1]
    code, out, _ = invoke(capsys, "webhook", "register", "--stack", "test-stack", "--yes")
    assert code == 0
    stored = deployed.read_secret("BuildNexionSecretArn")["webhook_secrets"]
    assert not any(secret in "\n".join(out) for secret in stored)


def test_status_of_a_stack_without_a_platform_lists_the_others(
    deployed: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    del deployed.outputs["TuimprentaQueueUrl"]  # as a stack deployed with DeployTuimprenta=false
    code, out, _ = invoke(capsys, "status", "--stack", "test-stack", "--json")
    assert code == 0
    assert [row["destination"] for row in json.loads("\n".join(out))] == ["quipu", "facturadirecta"]


def test_webhook_register_subscribes_only_to_what_a_deployed_platform_takes(
    deployed: Target, peer: BuildNexionPeer
) -> None:
    deployed.outputs["WebhookUrl"] = "https://abc.execute-api.eu-west-1.amazonaws.com/webhooks/buildnexion"
    del deployed.outputs["QuipuQueueUrl"]  # as a stack deployed with DeployQuipu=false
    subscription_id, _ = commands.webhook_register(deployed)
    (subscription,) = [s for s in peer._subscriptions if s.id == subscription_id]
    assert set(subscription.events) == {t for t, d in deployed.routing_table.items() if d != "quipu"}
    assert not any(event.startswith("invoice.") for event in subscription.events)
