"""Operator commands against the running local stack (`--local`), as an operator types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from invoice_bridge.config import DEFAULT_ROUTING, Destination
from ops import commands
from ops.target import from_local
from sandbox.buildnexion import BuildNexionPeer
from sandbox.stack import LocalStack, StackOptions
from tests.conftest import BUILDNEXION_EVENTS, ROOT, load_event
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).parent / "invoice-bridge")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    options = StackOptions(root=ROOT, port=0, environ=environ, log_sink=lambda fn, line: None)
    with LocalStack(options) as running:
        yield running


def run_cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | extra_env
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False)


def test_local_outputs_name_every_resource_the_commands_use(stack: LocalStack) -> None:
    target = from_local(stack.url)
    for key in (
        "QuipuQueueUrl",
        "QuipuDeadLetterQueueUrl",
        "StateTableName",
        "BuildNexionSecretArn",
        "BuildNexionApiUrl",
        "WebhookUrl",
    ):
        assert target.outputs[key], key
    assert target.outputs["WebhookUrl"] == f"{stack.url}/webhooks/buildnexion"
    assert target.routing_table == {k: v.value for k, v in DEFAULT_ROUTING.items()}


def test_status_json_through_the_cli(stack: LocalStack) -> None:
    result = run_cli("status", "--local", stack.url, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["destination"] for row in rows] == ["quipu", "tuimprenta", "facturadirecta"]
    assert all(set(row) >= {"synced", "failed", "pending", "in_flight", "dead_lettered"} for row in rows)


def test_status_table_for_people(stack: LocalStack) -> None:
    # Given a terminal of 80 columns (a pipe counts as one), then one of COLUMNS=60
    result = run_cli("status", "--local", stack.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Then the first line names the target, and the table fits: one line per destination, none wider than 80
    assert lines[0] == f"target: local stack at {stack.url}"
    assert max(len(line) for line in lines) <= 80
    header = " ".join(line for line in lines[1:4])
    for word in ("destination", "synced", "pending", "flight", "dead-", "lettered", "oldest", "last", "success"):
        assert word in header
    starts = [line.split()[0] for line in lines if line.split()]
    for destination in ("quipu", "tuimprenta", "facturadirecta"):
        assert starts.count(destination) == 1, result.stdout  # one line per row: nothing wrapped
    narrow = subprocess.run(
        [CLI, "status", "--local", stack.url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "COLUMNS": "60"},
        cwd=ROOT,
        check=False,
    )
    assert max(len(line) for line in narrow.stdout.splitlines()[1:]) <= 60


def test_no_stack_running_is_one_line_not_a_traceback() -> None:
    result = run_cli("status", "--local", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "invoice-bridge: no local stack answers at http://127.0.0.1:9: start it with `invoice-bridge local serve`"
    )


def test_a_secret_rotation_through_webhook_register_rejects_no_delivery(stack: LocalStack) -> None:
    # Given BuildNexion delivering to the local stack with the sandbox's secret
    peer: BuildNexionPeer = stack.peers["buildnexion"]
    peer.subscribe(f"{stack.url}/webhooks/buildnexion", sorted(DEFAULT_ROUTING))
    envelopes = [load_event(f"buildnexion/{path.name}") for path in BUILDNEXION_EVENTS[:3]]
    target = from_local(stack.url)
    statuses: list[int | None] = []

    def deliver(index: int, suffix: str) -> None:
        envelope = {**envelopes[index], "id": f"{envelopes[index]['id']}_{suffix}"}
        statuses.extend(delivery.status for delivery in peer.deliver(envelope))

    # When the operator registers again (a rotation), delivers, retires the old secret, delivers again
    deliver(0, "before")
    result = run_cli("webhook", "register", "--local", stack.url)
    assert result.returncode == 0, result.stderr
    deliver(1, "during")
    assert len(target.read_secret("BuildNexionSecretArn")["webhook_secrets"]) == 2
    result = run_cli("webhook", "retire-secret", "--yes", "--local", stack.url)
    assert result.returncode == 0, result.stderr
    deliver(2, "after")

    # Then no delivery was rejected, and only the new secret is left on our side
    assert statuses == [200, 200, 200]
    (kept,) = target.read_secret("BuildNexionSecretArn")["webhook_secrets"]
    assert kept.startswith("whsec_")
    # the local stack shows the secret to sign with from now on (a deployed stack never prints one)
    assert result.stdout.splitlines()[-1] == (
        f"local stack: sign with them (local send, local sign): export BUILDNEXION_WEBHOOK_SECRET={kept}"
    )


def test_dlq_drop_asks_for_confirmation(stack: LocalStack) -> None:
    result = subprocess.run(
        [CLI, "dlq", "drop", "quipu", "--id", "x", "--local", stack.url],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    assert "pass --yes" in result.stdout


def test_a_dead_lettered_invoice_is_found_repaired_at_the_source_redriven_and_synced(stack: LocalStack) -> None:
    # Given an invoice whose VAT rate was mistyped at the source (210 %), which Quipu refuses for good
    peer: BuildNexionPeer = stack.peers["buildnexion"]
    peer.subscribe(f"{stack.url}/webhooks/buildnexion", ["invoice.created"])
    envelope = load_event("buildnexion/01_invoice_created.json")
    envelope["id"] = "evt_ops_repair_1"
    bad = envelope["data"]["object"]
    bad.update({"id": "inv_ops_repair", "invoice_number": "F-OPS-REPAIR-1"})
    bad["lines"] = [{**bad["lines"][0], "vat_percent": "210"}]
    assert {d.status for d in peer.deliver(envelope)} == {200}
    target = from_local(stack.url)

    # When the operator lists the dead-letter queue, it is there with Quipu's reason
    def dead_lettered() -> commands.DeadLetter | None:
        return next((d for d in commands.dlq_list(target, Destination.QUIPU) if d.object_id == bad["id"]), None)

    letter = wait_for(dead_lettered, 90, "the invoice to be dead-lettered")
    assert "vat_percent" in letter.reason
    result = run_cli("dlq", "list", "quipu", "--local", stack.url)
    assert bad["id"] in result.stdout

    # and once the VAT rate is fixed at the source, a redrive of that one event syncs it
    fixed = {**bad, "lines": [{**bad["lines"][0], "vat_percent": "21"}], "updated_at": "2026-11-03T11:00:00Z"}
    peer.put_objects([fixed])
    result = run_cli("dlq", "redrive", "quipu", "--id", bad["id"], "--local", stack.url)
    assert result.returncode == 0, result.stderr
    assert "redriven 1 message(s)" in result.stdout

    quipu: Any = stack.peers["quipu"]

    def synced() -> Any:
        found = [i for i in quipu.invoices.values() if i.number == fixed["invoice_number"]]
        return found[0] if found else None

    invoice = wait_for(synced, 90, "the repaired invoice to reach Quipu")
    assert invoice.total_cents == fixed["total_amount"]
    assert not any(d.object_id == bad["id"] for d in commands.dlq_list(target, Destination.QUIPU))
    rows = {row.destination: row for row in commands.status(target)}
    assert rows["quipu"].dead_lettered == 0


def test_local_send_has_the_sandbox_buildnexion_hold_the_object_so_backfill_finds_it(
    stack: LocalStack, tmp_path: Path
) -> None:
    envelope = load_event("buildnexion/08_purchase_order_created.json")
    envelope["id"] = "evt_send_holds_1"
    envelope["data"]["object"].update({"id": "po_send_holds", "updated_at": "2026-11-20T08:00:00Z"})
    event_file = tmp_path / "po.json"
    event_file.write_text(json.dumps(envelope), encoding="utf-8")
    result = run_cli("local", "send", str(event_file), "--url", f"{stack.url}/webhooks/buildnexion")
    assert result.returncode == 0, result.stderr
    peer: BuildNexionPeer = stack.peers["buildnexion"]
    assert "po_send_holds" in {o["id"] for o in peer.objects_of("purchase_order")}
    *_, last = commands.backfill(from_local(stack.url), Destination.FACTURADIRECTA, date(2026, 11, 20), restart=True)
    assert last.enqueued >= 1


def test_a_missing_aws_profile_is_one_line_for_a_deployed_stack_and_ignored_for_the_local_one() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "AWS_PROFILE": "no-such-profile"}
    deployed = subprocess.run(
        [CLI, "status", "--stack", "x", "--region", "eu-west-1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert (deployed.returncode, deployed.stderr.strip()) == (
        2,
        "invoice-bridge: The config profile (no-such-profile) could not be found",
    )
    local = subprocess.run(
        [CLI, "status", "--local", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert local.returncode == 2
    assert "no local stack answers" in local.stderr
    assert "Traceback" not in local.stderr


def test_reconcile_tuimprenta_after_the_demo_invoices_exits_0(stack: LocalStack) -> None:
    # Given the demo's two sales invoices issued by the sandbox tuimprenta
    peer: BuildNexionPeer = stack.peers["buildnexion"]
    peer.subscribe(f"{stack.url}/webhooks/buildnexion", ["sales_invoice.created"])
    for name in ("05_sales_invoice_created.json", "06_sales_invoice_created.json"):
        envelope = load_event(f"buildnexion/{name}")
        envelope["id"] = f"{envelope['id']}_reconcile"
        assert {d.status for d in peer.deliver(envelope)} == {200}
    target = from_local(stack.url)
    wait_for(
        lambda: next(r for r in commands.status(target) if r.destination == "tuimprenta").synced >= 2,
        120,
        "both sales invoices to be issued",
    )

    # When the operator reconciles tuimprenta
    result = run_cli("reconcile", "tuimprenta", "--local", stack.url)

    # Then nothing is reported as a difference: a total the worker did not record is said, not failed
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"target: local stack at {stack.url}"
    assert lines[-1].startswith(("2 synced document(s) checked, 0 difference(s)",)), result.stdout


def test_doctor_finds_the_local_stack_working_and_says_what_is_missing_when_it_is_not(stack: LocalStack) -> None:

    def passing() -> subprocess.CompletedProcess[str] | None:
        run = run_cli("doctor", "--local", stack.url)
        return run if run.returncode == 0 else None

    # an earlier test may have rotated the webhook secret: the receiver caches it for up to 60 s
    result = wait_for(passing, 90, "doctor to pass once the receiver's secret cache holds the stored secret")
    assert result.stdout.splitlines()[1:] == [
        "ok   BuildNexion secret: filled",
        "ok   Quipu secret: filled",
        "ok   Tuimprenta secret: filled",
        "ok   FacturaDirecta secret: filled",
        f"ok   signed smoke event: {stack.url}/webhooks/buildnexion answered 200 ignored",
    ]
    # a Quipu secret with a field left empty fails the check, naming the field (never a value)
    target = from_local(stack.url)
    quipu = target.read_secret("QuipuSecretArn")
    sm = target.secretsmanager()
    try:
        sm.put_secret_value(SecretId=target.outputs["QuipuSecretArn"], SecretString=json.dumps({"app_id": "x"}))
        result = run_cli("doctor", "--local", stack.url)
        assert result.returncode == 1
        assert "FAIL Quipu secret: still empty: app_secret (docs/operations.md, secrets)" in result.stdout.splitlines()
    finally:
        sm.put_secret_value(SecretId=target.outputs["QuipuSecretArn"], SecretString=json.dumps(quipu))


def test_the_failing_events_each_end_in_their_destination_s_dead_letter_queue(stack: LocalStack) -> None:
    files = sorted(str(p) for p in (ROOT / "events" / "failing").glob("*.json"))
    assert len(files) == 3
    target = from_local(stack.url)
    # Signed with the secret the stack holds now (a rotation test of this module may have replaced the default),
    # as the CLI tells the operator to after a rotation.
    secret = target.read_secret("BuildNexionSecretArn")["webhook_secrets"][-1]
    result = run_cli(
        "local", "send", *files, "--url", f"{stack.url}/webhooks/buildnexion", BUILDNEXION_WEBHOOK_SECRET=secret
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {
        Destination.QUIPU: "inv_failing_vat",
        Destination.TUIMPRENTA: "sin_failing_tax_rate",
        Destination.FACTURADIRECTA: "po_failing_five_rates",
    }

    def dead_lettered(destination: Destination, object_id: str) -> commands.DeadLetter | None:
        return next((x for x in commands.dlq_list(target, destination) if x.object_id == object_id), None)

    for destination, object_id in expected.items():
        letter = wait_for(
            partial(dead_lettered, destination, object_id), 120, f"{object_id} on the {destination.value} DLQ"
        )
        assert letter.reason, letter


def test_local_inspect_shows_what_each_sandbox_platform_holds(stack: LocalStack) -> None:
    # Given a purchase order synced to the sandbox FacturaDirecta
    peer: BuildNexionPeer = stack.peers["buildnexion"]
    peer.subscribe(f"{stack.url}/webhooks/buildnexion", ["purchase_order.created"])
    envelope = load_event("buildnexion/10_purchase_order_created.json")
    envelope["id"] = f"{envelope['id']}_inspect"
    assert {d.status for d in peer.deliver(envelope)} == {200}
    target = from_local(stack.url)
    wait_for(
        lambda: next(r for r in commands.status(target) if r.destination == "facturadirecta").synced >= 1,
        120,
        "the purchase order to be synced",
    )
    number = envelope["data"]["object"]["number"]

    # When a newcomer asks what the sandbox FacturaDirecta holds, Then the order is there, read without a token
    result = run_cli("local", "inspect", "facturadirecta", "--url", stack.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"the sandbox facturadirecta at {stack.url} holds: ")
    assert number.rsplit("-", 1)[0] in result.stdout or number in result.stdout
    for platform in ("quipu", "tuimprenta"):
        shown = run_cli("local", "inspect", platform, "--url", stack.url, "--json")
        assert shown.returncode == 0, shown.stderr
        assert isinstance(json.loads(shown.stdout), dict)
    quipu = json.loads(run_cli("local", "inspect", "quipu", "--url", stack.url, "--json").stdout)
    assert len(quipu["invoices"]) == len(stack.peers["quipu"].invoices)
