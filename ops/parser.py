"""The operator commands' arguments, kept apart from their code so `invoice-bridge --help` imports little."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from invoice_bridge.config import Destination

DESTINATIONS = [d.value for d in Destination]
LOG_FUNCTIONS = ["webhook-receiver", "quipu-sync", "tuimprenta-poller", "facturadirecta-exporter"]


COMMANDS = ("info", "doctor", "status", "dlq", "replay", "backfill", "webhook", "reconcile", "logs")
JSON_HELP = "print JSON for scripts instead of text (the target line then goes to stderr)"
YES_HELP = "do not ask before writing to a deployed stack"
DRY_RUN_HELP = "read and show what would be written, write nothing"


def day(text: str) -> date:
    """A YYYY-MM-DD day for --since/--until, with a message that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: give YYYY-MM-DD, e.g. 2026-11-01") from None


def refuse_until_before_since(parser: argparse.ArgumentParser, since: date | None, until: date | None) -> None:
    """Exit 2 with a one-line message when --until is not after --since."""
    if since and until and until <= since:
        parser.error(f"--until {until} must be after --since {since} (--until is exclusive)")


def register(commands_parser: Any) -> None:
    """Add the operator commands to the `invoice-bridge` parser."""
    where = argparse.ArgumentParser(add_help=False)
    where.set_defaults(help_parser=None)
    group = where.add_mutually_exclusive_group()
    group.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed stack, found through CloudFormation; without --stack or --local: INVOICE_BRIDGE_STACK "
        "(a stack name, or 'local'), else the stack_name of samconfig.user.toml (make deploy writes it)",
    )
    group.add_argument(
        "--local",
        metavar="URL",
        nargs="?",
        const="",
        help="the running local stack (default URL: http://127.0.0.1:$LOCAL_PORT, port 3000)",
    )
    where.add_argument(
        "--region", help="the deployed stack's region (default: INVOICE_BRIDGE_REGION, samconfig.user.toml, AWS_REGION)"
    )
    where.add_argument("--json", action="store_true", help=JSON_HELP)
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--yes", action="store_true", help=YES_HELP)
    writes.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    info = commands_parser.add_parser(
        "info",
        parents=[where],
        help="the stack's outputs, its WebhookUrl and which secrets are still empty (exit 1 while any is)",
    )
    info.set_defaults(operation="info")

    doctor = commands_parser.add_parser(
        "doctor",
        parents=[where],
        help="check a stack works: secrets filled, a webhook secret stored, a signed smoke event answered 'ignored'",
    )
    doctor.set_defaults(operation="doctor")

    logs = commands_parser.add_parser(
        "logs", parents=[where], help="every log line about one object or event id (CloudWatch Logs Insights)"
    )
    logs.add_argument("--id", required=True, help="an object id (inv_..., sin_..., po_...) or an event id (evt_...)")
    logs.add_argument("--hours", type=float, default=24.0, help="how far back to look, in hours (default 24)")
    logs.add_argument("--function", choices=LOG_FUNCTIONS, help="one function's log group only (default: all four)")
    logs.set_defaults(operation="logs")

    status = commands_parser.add_parser(
        "status", parents=[where], help="per destination: synced, waiting, dead-lettered"
    )
    status.set_defaults(operation="status")

    dlq = commands_parser.add_parser("dlq", help="dead-lettered events").add_subparsers(
        dest="dlq_command", required=True, metavar="{list,redrive,drop}", title="commands"
    )
    listing = dlq.add_parser("list", parents=[where], help="each dead-lettered event with its reason")
    listing.add_argument("destination", choices=DESTINATIONS)
    listing.set_defaults(operation="dlq_list")
    redrive = dlq.add_parser("redrive", parents=[where, writes], help="send dead-lettered events back to their queue")
    redrive.add_argument("destination", choices=DESTINATIONS)
    redrive.add_argument("--id", action="append", help="a message id or object id (repeatable); default: all")
    redrive.set_defaults(operation="dlq_redrive")
    drop = dlq.add_parser(
        "drop", parents=[where, writes], help="delete dead-lettered events for good (asks, even locally)"
    )
    drop.add_argument("destination", choices=DESTINATIONS)
    drop.add_argument("--id", action="append", required=True, help="a message id or object id (repeatable)")
    drop.set_defaults(operation="dlq_drop")

    replay = commands_parser.add_parser(
        "replay", parents=[where, writes], help="enqueue objects' latest state from BuildNexion as fresh events"
    )
    replay.add_argument("object_ids", nargs="+", metavar="OBJECT_ID")
    replay.add_argument(
        "--kind",
        choices=["invoice", "sales_invoice", "purchase_order"],
        help="the object kind, when the id's prefix does not tell",
    )
    replay.set_defaults(operation="replay")

    backfill = commands_parser.add_parser(
        "backfill", parents=[where, writes], help="enqueue every object BuildNexion updated in a period (resumable)"
    )
    backfill.add_argument("destination", choices=DESTINATIONS)
    backfill.add_argument(
        "--since", type=day, required=True, metavar="YYYY-MM-DD", help="first day (UTC) of BuildNexion updates"
    )
    backfill.add_argument("--until", type=day, metavar="YYYY-MM-DD", help="the day (UTC) to stop before (exclusive)")
    backfill.add_argument("--restart", action="store_true", help="start over instead of resuming")
    backfill.set_defaults(operation="backfill")

    webhook = commands_parser.add_parser("webhook", help="BuildNexion webhook registration").add_subparsers(
        dest="webhook_command", required=True, metavar="{register,retire-secret}", title="commands"
    )
    webhook_register = webhook.add_parser(
        "register", parents=[where], help="register the stack's URL and store the returned secret"
    )
    webhook_register.add_argument("--yes", action="store_true", help=YES_HELP)
    webhook_register.set_defaults(operation="webhook_register")
    retire = webhook.add_parser("retire-secret", parents=[where], help="keep only the newest webhook secret")
    retire.add_argument(
        "--yes", action="store_true", help="go ahead: deliveries signed with the older secrets then get 401"
    )
    retire.set_defaults(operation="webhook_retire")

    reconcile = commands_parser.add_parser(
        "reconcile", parents=[where], help="compare synced totals with BuildNexion; exit 1 on a difference"
    )
    reconcile.add_argument("destination", choices=DESTINATIONS)
    reconcile.add_argument(
        "--since", type=day, metavar="YYYY-MM-DD", help="only documents synced on or after this day (UTC)"
    )
    reconcile.set_defaults(operation="reconcile")
