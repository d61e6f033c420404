"""Operator commands against the running local stack (`--local`), as an operator types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoice_bridge.config import DEFAULT_ROUTING
from ops.target import from_local
from sandbox.buildnexion import BuildNexionPeer
from sandbox.stack import LocalStack, StackOptions
from tests.conftest import BUILDNEXION_EVENTS, ROOT, load_event

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).parent / "invoice-bridge")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    options = StackOptions(root=ROOT, port=0, environ=environ, log_sink=lambda fn, line: None)
    with LocalStack(options) as running:
        yield running


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
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
    result = run_cli("status", "--local", stack.url)
    assert result.returncode == 0, result.stderr
    header, *_ = [line for line in result.stdout.splitlines() if "destination" in line]
    for column in ("synced", "failed", "pending", "in flight", "dead-lettered", "oldest waiting", "last success"):
        assert column in header
    assert any(line.strip("│ ").startswith("facturadirecta") for line in result.stdout.splitlines())


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
    assert "whsec_" not in result.stdout.replace("webhook secret", "")  # no secret is printed


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
