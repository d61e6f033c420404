"""What `invoice-bridge` says when it is asked something it cannot do: one line, naming what to change."""

from __future__ import annotations

import argparse

import pytest

from sandbox.cli import build_parser
from tests.e2e.cli import assert_one_line_error, run_cli

pytestmark = pytest.mark.e2e


def test_invoice_bridge_alone_lists_every_command() -> None:
    result = run_cli()
    assert_one_line_error(
        result, "choose a command: local, info, doctor, status, dlq, replay, backfill, webhook, reconcile, logs"
    )


def test_an_operator_command_without_a_target_says_how_to_name_one() -> None:
    result = run_cli("status")
    assert_one_line_error(result, "no target: pass --stack NAME", "--local", "INVOICE_BRIDGE_STACK")
    assert result.stdout == ""


def test_a_day_that_is_not_a_date_is_explained() -> None:
    result = run_cli("backfill", "quipu", "--since", "yesterday", "--local")
    assert_one_line_error(result, "--since: 'yesterday' is not a day: give YYYY-MM-DD")


def test_until_before_since_is_refused() -> None:
    result = run_cli("backfill", "quipu", "--since", "2026-11-02", "--until", "2026-11-01", "--local")
    assert result.returncode == 2
    assert_one_line_error(result, "--until 2026-11-01 must be after --since 2026-11-02")


def test_a_bad_faults_flag_is_blamed_on_the_flag_and_a_bad_variable_on_the_variable() -> None:
    assert_one_line_error(run_cli("local", "serve", "--faults", "error=lots"), "--faults: error='lots'")
    from_env = run_cli("local", "serve", "--port", "0", env={"LOCAL_FAULTS": "error=lots"}, timeout=120)
    assert_one_line_error(from_env, "LOCAL_FAULTS: error='lots'")


def test_serve_refuses_a_routing_table_naming_an_unknown_destination() -> None:
    result = run_cli("local", "serve", "--parameter-overrides", 'RoutingTable={"invoice.created": "nowhere"}')
    assert result.returncode == 2
    assert_one_line_error(result, "RoutingTable routes invoice.created to 'nowhere', which is not a destination")


def test_every_option_of_the_operator_commands_has_help() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name in ("info", "doctor", "status", "dlq", "replay", "backfill", "webhook", "reconcile", "logs"):
        for command, sub in _leaves(name, commands.choices[name]):
            missing += [f"{command} {a.option_strings[0]}" for a in sub._actions if a.option_strings and not a.help]
    assert missing == []


def _leaves(name: str, parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        return [(name, parser)]
    return [leaf for sub, child in nested[0].choices.items() for leaf in _leaves(f"{name} {sub}", child)]
