"""The operator commands' arguments, kept apart from their code so `invoice-bridge --help` imports little."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from invoice_bridge.config import Destination

DESTINATIONS = [d.value for d in Destination]


def register(commands_parser: Any) -> None:
    """Add the operator commands to the `invoice-bridge` parser."""
    where = argparse.ArgumentParser(add_help=False)
    where.set_defaults(help_parser=None)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--stack", metavar="NAME", help="a deployed stack, found through CloudFormation")
    group.add_argument(
        "--local",
        metavar="URL",
        nargs="?",
        const="",
        help="the running local stack, the default target (default URL: http://127.0.0.1:$LOCAL_PORT, port 3000)",
    )
    where.add_argument("--region", help="the deployed stack's region (default: AWS_REGION / the CLI's)")

    status = commands_parser.add_parser("status", parents=[where], help="per destination: synced, failed, waiting")
    status.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")
    status.set_defaults(operation="status")

    dlq = commands_parser.add_parser("dlq", help="dead-lettered events").add_subparsers(
        dest="dlq_command", required=True, metavar="{list,redrive,drop}", title="commands"
    )
    listing = dlq.add_parser("list", parents=[where], help="each dead-lettered event with its reason")
    listing.add_argument("destination", choices=DESTINATIONS)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(operation="dlq_list")
    redrive = dlq.add_parser("redrive", parents=[where], help="send dead-lettered events back to their queue")
    redrive.add_argument("destination", choices=DESTINATIONS)
    redrive.add_argument("--id", action="append", help="a message id or object id (repeatable); default: all")
    redrive.set_defaults(operation="dlq_redrive")
    drop = dlq.add_parser("drop", parents=[where], help="delete dead-lettered events for good")
    drop.add_argument("destination", choices=DESTINATIONS)
    drop.add_argument("--id", action="append", required=True, help="a message id or object id (repeatable)")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drop.set_defaults(operation="dlq_drop")

    replay = commands_parser.add_parser(
        "replay", parents=[where], help="enqueue objects' latest state from BuildNexion as fresh events"
    )
    replay.add_argument("object_ids", nargs="+", metavar="OBJECT_ID")
    replay.add_argument(
        "--kind",
        choices=["invoice", "sales_invoice", "purchase_order"],
        help="the object kind, when the id's prefix does not tell",
    )
    replay.set_defaults(operation="replay")

    backfill = commands_parser.add_parser(
        "backfill", parents=[where], help="enqueue every object BuildNexion updated in a period (resumable)"
    )
    backfill.add_argument("destination", choices=DESTINATIONS)
    backfill.add_argument("--since", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--until", type=date.fromisoformat, metavar="YYYY-MM-DD", help="exclusive")
    backfill.add_argument("--restart", action="store_true", help="start over instead of resuming")
    backfill.set_defaults(operation="backfill")

    webhook = commands_parser.add_parser("webhook", help="BuildNexion webhook registration").add_subparsers(
        dest="webhook_command", required=True, metavar="{register,retire-secret}", title="commands"
    )
    webhook_register = webhook.add_parser(
        "register", parents=[where], help="register the stack's URL and store the returned secret"
    )
    webhook_register.set_defaults(operation="webhook_register")
    retire = webhook.add_parser("retire-secret", parents=[where], help="keep only the newest webhook secret")
    retire.add_argument("--yes", action="store_true")
    retire.set_defaults(operation="webhook_retire")

    reconcile = commands_parser.add_parser(
        "reconcile", parents=[where], help="compare synced totals with BuildNexion; exit 1 on a difference"
    )
    reconcile.add_argument("destination", choices=DESTINATIONS)
    reconcile.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD")
    reconcile.set_defaults(operation="reconcile")
