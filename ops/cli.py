"""`invoice-bridge status | dlq | replay | backfill | webhook | reconcile`: the operator's commands."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from invoice_bridge.config import Destination
from invoice_bridge.errors import PlatformError
from invoice_bridge.observability import quiet_for_command_line
from ops import commands
from ops.target import Target, TargetError, from_local, from_stack
from sandbox.settings import LocalPort


def _target(args: argparse.Namespace) -> Target:
    if args.stack:
        return from_stack(args.stack, args.region)
    return from_local(args.local or default_local_url())


def default_local_url() -> str:
    """Where `invoice-bridge local serve` listens by default (LOCAL_PORT, else 3000)."""
    return f"http://127.0.0.1:{LocalPort.from_env().local_port}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _status(args: argparse.Namespace, console: Console) -> int:
    rows = commands.status(_target(args))
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    table = Table(title="invoice-bridge status")
    for column in (
        "destination",
        "synced",
        "failed",
        "pending",
        "in flight",
        "dead-lettered",
        "oldest waiting",
        "last success",
        "totals mismatches",
    ):
        table.add_column(column, justify="left" if column in {"destination", "last success"} else "right")
    for row in rows:
        table.add_row(
            row.destination,
            str(row.synced),
            str(row.failed),
            str(row.pending),
            str(row.in_flight),
            str(row.dead_lettered),
            _age(row.oldest_waiting_seconds),
            row.last_success.strftime("%Y-%m-%d %H:%M:%S UTC") if row.last_success else "-",
            ", ".join(row.mismatches) or "0",
        )
    console.print(table)
    return 0


def _dlq_list(args: argparse.Namespace, console: Console) -> int:
    letters = commands.dlq_list(_target(args), Destination(args.destination))
    if args.json:
        print(
            json.dumps(
                [
                    {k: v for k, v in letter.__dict__.items() if k not in {"body", "receipt_handle"}}
                    for letter in letters
                ],
                indent=2,
            )
        )
        return 0
    table = Table(title=f"{args.destination}: {len(letters)} dead-lettered")
    for column in ("message id", "object", "event type", "reason", "attempts", "first failure"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter.message_id,
            letter.object_id,
            letter.event_type,
            letter.reason,
            str(letter.attempts),
            letter.first_failure,
        )
    console.print(table)
    return 0


def _dlq_redrive(args: argparse.Namespace, console: Console) -> int:
    result = commands.dlq_redrive(_target(args), Destination(args.destination), args.id or [])
    if result.task_handle:
        console.print(f"started SQS's message move task {result.task_handle}: every message goes back to the queue")
        return 0
    console.print(f"redriven {len(result.moved)} message(s) to the {args.destination} queue")
    for missing in result.missing:
        console.print(f"[red]not on the dead-letter queue: {missing}[/red]")
    for object_id in result.replay_only:
        console.print(
            f"{object_id}: a rejected invoice, not an event; fix it at the source, then "
            f"`invoice-bridge replay {object_id}` (and `dlq drop` this report)"
        )
    return 1 if result.missing or result.replay_only else 0


def _dlq_drop(args: argparse.Namespace, console: Console) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("refusing to drop without confirmation: pass --yes")
            return 2
        answer = console.input(
            f"drop {', '.join(args.id)} from the {args.destination} dead-letter queue for good? "
            "type 'drop' to confirm: "
        )
        if answer.strip() != "drop":
            console.print("nothing dropped")
            return 1
    result = commands.dlq_drop(_target(args), Destination(args.destination), args.id)
    console.print(f"dropped {len(result.moved)} message(s)")
    for missing in result.missing:
        console.print(f"[red]not on the dead-letter queue: {missing}[/red]")
    return 1 if result.missing else 0


def _replay(args: argparse.Namespace, console: Console) -> int:
    for object_id, event_type, destination in commands.replay(_target(args), args.object_ids, args.kind):
        console.print(f"{object_id}: enqueued as {event_type} for {destination}")
    return 0


def _backfill(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    destination = Destination(args.destination)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[enqueued]} enqueued"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    checkpoint = None
    with progress:
        task = progress.add_task(f"backfill {destination.value} since {args.since}", total=None, enqueued=0)
        try:
            for checkpoint in commands.backfill(target, destination, args.since, args.until, restart=args.restart):
                progress.update(task, enqueued=checkpoint.enqueued)
        except KeyboardInterrupt:
            progress.stop()
            done = checkpoint.enqueued if checkpoint else 0
            console.print(f"interrupted after {done} object(s); run the same command again to resume")
            return 130
        progress.update(task, total=1, completed=1)
    console.print(f"backfill done: {checkpoint.enqueued if checkpoint else 0} object(s) enqueued")
    return 0


def _webhook_register(args: argparse.Namespace, console: Console) -> int:
    subscription, kept = commands.webhook_register(_target(args))
    console.print(f"registered webhook {subscription}; the BuildNexion secret now holds {kept} webhook secret(s)")
    if kept > 1:
        console.print("once BuildNexion signs only with the new one, run `invoice-bridge webhook retire-secret`")
    return 0


def _webhook_retire(args: argparse.Namespace, console: Console) -> int:
    if not args.yes:
        console.print(
            "this keeps only the newest webhook secret; deliveries signed with older ones will get 401. "
            "Pass --yes to go ahead."
        )
        return 2
    removed = commands.webhook_retire_secret(_target(args))
    console.print(f"retired {removed} old webhook secret(s)")
    return 0


def _reconcile(args: argparse.Namespace, console: Console) -> int:
    checked, differences = commands.reconcile(_target(args), Destination(args.destination), args.since)
    for difference in differences:
        console.print(f"{difference.object_id} ({difference.remote_id or '-'}): {difference.problem}")
    console.print(f"{checked} synced document(s) checked, {len(differences)} difference(s)")
    return 1 if differences else 0


HANDLERS = {
    "status": _status,
    "dlq_list": _dlq_list,
    "dlq_redrive": _dlq_redrive,
    "dlq_drop": _dlq_drop,
    "replay": _replay,
    "backfill": _backfill,
    "webhook_register": _webhook_register,
    "webhook_retire": _webhook_retire,
    "reconcile": _reconcile,
}


def run(args: argparse.Namespace) -> int:
    """Run an operator command; TargetError becomes one line on stderr and exit 2."""
    quiet_for_command_line()
    # Piped output (a file, a CI log) has no terminal width to follow: wide enough that no column is cut.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        code: int = HANDLERS[args.operation](args, console)
    except TargetError as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 2
    except PlatformError as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 1
    return code
