"""`invoice-bridge status | dlq | replay | backfill | webhook | reconcile`: the operator's commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from invoice_bridge.config import Destination
from invoice_bridge.errors import PlatformError
from invoice_bridge.observability import quiet_for_command_line
from ops import commands
from ops.defaults import NoTargetError, TargetSpec, resolve
from ops.target import HTTP_TIMEOUT, Target, TargetError, from_local, from_stack

# Without a terminal (a pipe, a CI log) tables are laid out for this many columns unless COLUMNS says otherwise.
PIPE_WIDTH = 80


def target_spec(args: argparse.Namespace) -> TargetSpec:
    """The stack the command names (flags, INVOICE_BRIDGE_STACK or samconfig.user.toml)."""
    return resolve(args.stack, args.region, args.local)


def _connect(spec: TargetSpec) -> Target:
    if spec.local_url is not None:
        return from_local(spec.local_url)
    assert spec.stack is not None  # resolve() names a stack or a local URL
    return from_stack(spec.stack, spec.region)


def _announce(args: argparse.Namespace, console: Console, target: Target) -> None:
    """The target as the first line: on stdout for people, on stderr under --json (stdout stays JSON)."""
    if getattr(args, "json", False):
        print(target.describe(), file=sys.stderr, flush=True)
    else:
        console.print(target.describe(), highlight=False, markup=False)


def _confirmed(args: argparse.Namespace, console: Console, target: Target, what: str, *, always: bool = False) -> bool:
    """True to go ahead: --yes, --dry-run, the local stack (unless `always`), or the operator typed 'yes'."""
    if getattr(args, "yes", False) or getattr(args, "dry_run", False) or (target.is_local and not always):
        return True
    where = "the local stack" if target.is_local else f"stack {target.name}"
    if not sys.stdin.isatty():
        console.print(
            f"refusing to {what} on {where} without confirmation: pass --yes "
            "(or --dry-run to see what would be written)",
            highlight=False,
            markup=False,
        )
        return False
    console.file.write(f"{what} on {where}? type 'yes' to go ahead: ")
    console.file.flush()
    answer = sys.stdin.readline()
    if answer.strip() != "yes":
        console.print("nothing written", highlight=False)
        return False
    return True


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(title: str | None = None) -> Table:
    # No outer border and one space between columns: the status table's nine figures fit 80 columns.
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title_justify="left",
    )


def _status(args: argparse.Namespace, console: Console, target: Target) -> int:
    rows = commands.status(target)
    if args.json:
        _print_json([row.as_json() for row in rows])
        return 0
    table = _table()
    headers = (
        "destination",
        "synced",
        "pending",
        "in\nflight",
        "dead-\nlettered",
        "oldest\nwaiting",
        "last\nsuccess",
        "totals\nmismatch",
    )
    for column in headers:
        table.add_column(column, justify="left" if column == "destination" else "right", no_wrap=True)
    now = datetime.now(UTC)
    for row in rows:
        table.add_row(
            row.destination,
            str(row.synced),
            str(row.pending),
            str(row.in_flight),
            str(row.dead_lettered),
            _age(row.oldest_waiting_seconds),
            f"{_age((now - row.last_success).total_seconds())} ago" if row.last_success else "-",
            str(len(row.mismatches)),
        )
    console.print(table)
    for row in rows:
        if row.mismatches:
            console.print(f"{row.destination} totals mismatch: {', '.join(row.mismatches)}", highlight=False)
    if any(row.dead_lettered for row in rows):
        console.print("dead-lettered: see `invoice-bridge dlq list <destination>`", highlight=False)
    return 0


def _dlq_list(args: argparse.Namespace, console: Console, target: Target) -> int:
    letters = commands.dlq_list(target, Destination(args.destination))
    if args.json:
        _print_json(
            [{k: v for k, v in letter.__dict__.items() if k not in {"body", "receipt_handle"}} for letter in letters]
        )
        return 0
    console.print(f"{args.destination}: {len(letters)} dead-lettered", highlight=False)
    table = _table()
    for column in ("object", "event type", "attempts", "first failure", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.object_id, letter.event_type, str(letter.attempts), letter.first_failure[:19], letter.reason
        )
    if letters:
        console.print(table)
        console.print("message ids: --json; redrive or drop takes an object id or a message id", highlight=False)
    return 0


def _ids_phrase(ids: list[str] | None, destination: str) -> str:
    return f"{', '.join(ids)} of the {destination} dead-letter queue" if ids else f"every {destination} dead letter"


def _dlq_redrive(args: argparse.Namespace, console: Console, target: Target) -> int:
    if not _confirmed(args, console, target, f"redrive {_ids_phrase(args.id, args.destination)}"):
        return 2
    result = commands.dlq_redrive(target, Destination(args.destination), args.id or [], dry_run=args.dry_run)
    if args.json:
        _print_json(result.as_json())
    elif result.task_handle:
        console.print(f"started SQS's message move task {result.task_handle}: every message goes back to the queue")
    else:
        verb = "would redrive" if result.dry_run else "redriven"
        console.print(f"{verb} {len(result.moved)} message(s) to the {args.destination} queue", highlight=False)
        for message_id in result.moved if result.dry_run else []:
            console.print(f"  {message_id}", highlight=False)
    if not args.json:
        for missing in result.missing:
            console.print(f"[red]not on the dead-letter queue: {missing}[/red]")
        for object_id in result.replay_only:
            console.print(
                f"{object_id}: a rejected invoice, not an event; fix it at the source, then "
                f"`invoice-bridge replay {object_id}` (and `dlq drop` this report)",
                highlight=False,
            )
    return 1 if result.missing or result.replay_only else 0


def _dlq_drop(args: argparse.Namespace, console: Console, target: Target) -> int:
    if not _confirmed(args, console, target, f"drop {_ids_phrase(args.id, args.destination)} for good", always=True):
        return 2
    result = commands.dlq_drop(target, Destination(args.destination), args.id, dry_run=args.dry_run)
    if args.json:
        _print_json(result.as_json())
    else:
        console.print(f"{'would drop' if result.dry_run else 'dropped'} {len(result.moved)} message(s)")
        for missing in result.missing:
            console.print(f"[red]not on the dead-letter queue: {missing}[/red]")
    return 1 if result.missing else 0


def _replay(args: argparse.Namespace, console: Console, target: Target) -> int:
    if not _confirmed(args, console, target, f"replay {', '.join(args.object_ids)}"):
        return 2
    done = commands.replay(target, args.object_ids, args.kind, dry_run=args.dry_run)
    if args.json:
        _print_json([{"object_id": o, "event_type": t, "destination": d, "dry_run": args.dry_run} for o, t, d in done])
        return 0
    for object_id, event_type, destination in done:
        verb = "would be enqueued" if args.dry_run else "enqueued"
        console.print(f"{object_id}: {verb} as {event_type} for {destination}", highlight=False)
    return 0


def _backfill(args: argparse.Namespace, console: Console, target: Target) -> int:
    destination = Destination(args.destination)
    period = f"updated since {args.since}" + (f" and before {args.until}" if args.until else "")
    if not _confirmed(args, console, target, f"enqueue every {destination.value} object {period}"):
        return 2
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[enqueued]} " + ("to enqueue" if args.dry_run else "enqueued")),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=args.json,
    )
    checkpoint = None
    with progress:
        task = progress.add_task(f"backfill {destination.value} since {args.since}", total=None, enqueued=0)
        try:
            for checkpoint in commands.backfill(
                target, destination, args.since, args.until, restart=args.restart, dry_run=args.dry_run
            ):
                progress.update(task, enqueued=checkpoint.enqueued)
        except KeyboardInterrupt:
            progress.stop()
            done = checkpoint.enqueued if checkpoint else 0
            console.print(f"interrupted after {done} object(s); run the same command again to resume")
            return 130
        progress.update(task, total=1, completed=1)
    count = checkpoint.enqueued if checkpoint else 0
    if args.json:
        _print_json({"destination": destination.value, "enqueued": count, "dry_run": args.dry_run})
    elif args.dry_run:
        console.print(f"dry run: {count} object(s) would be enqueued; nothing was written", highlight=False)
    else:
        console.print(f"backfill done: {count} object(s) enqueued", highlight=False)
    return 0


def _webhook_register(args: argparse.Namespace, console: Console, target: Target) -> int:
    if not _confirmed(args, console, target, f"register {target.output('WebhookUrl')} with BuildNexion"):
        return 2
    subscription, kept = commands.webhook_register(target)
    if args.json:
        _print_json({"subscription": subscription, "webhook_secrets": kept})
        return 0
    console.print(f"registered webhook {subscription}; the BuildNexion secret now holds {kept} webhook secret(s)")
    if kept > 1:
        console.print("once BuildNexion signs only with the new one, run `invoice-bridge webhook retire-secret`")
    _show_local_secrets(console, target)
    return 0


def _show_local_secrets(console: Console, target: Target) -> None:
    """On the local stack only: the sandbox secrets to sign with, or `local send` is refused after a rotation."""
    if not target.is_local:
        return  # a deployed stack's secret is never printed
    secrets = [s for s in target.read_secret("BuildNexionSecretArn").get("webhook_secrets", []) if s]
    console.print(
        f"local stack: sign with them (local send, local sign): export BUILDNEXION_WEBHOOK_SECRET={','.join(secrets)}",
        highlight=False,
        markup=False,
    )


def _webhook_retire(args: argparse.Namespace, console: Console, target: Target) -> int:
    if not args.yes:
        console.print(
            "this keeps only the newest webhook secret; deliveries signed with older ones will get 401. "
            "Pass --yes to go ahead."
        )
        return 2
    removed = commands.webhook_retire_secret(target)
    if args.json:
        _print_json({"retired": removed})
        return 0
    console.print(f"retired {removed} old webhook secret(s)")
    _show_local_secrets(console, target)
    return 0


def _reconcile(args: argparse.Namespace, console: Console, target: Target) -> int:
    checked, found = commands.reconcile(target, Destination(args.destination), args.since)
    differences = [d for d in found if not d.unverified]
    unverified = [d for d in found if d.unverified]
    if args.json:
        _print_json(
            {
                "checked": checked,
                "differences": [d.__dict__ for d in differences],
                "totals_not_compared": [d.object_id for d in unverified],
            }
        )
    else:
        for difference in differences:
            console.print(f"{difference.object_id} ({difference.remote_id or '-'}): {difference.problem}")
        if unverified:
            console.print(
                f"{len(unverified)} document(s) have no platform total recorded (a worker that does not read it "
                "back): their versions were compared, their totals were not"
            )
        console.print(f"{checked} synced document(s) checked, {len(differences)} difference(s)")
    return 1 if differences else 0


def _info(args: argparse.Namespace, console: Console, target: Target) -> int:
    empty = commands.empty_secret_fields(target)
    if args.json:
        _print_json({"target": target.as_json(), "outputs": target.outputs, "empty_secret_fields": empty})
        return 0
    console.print(f"WebhookUrl: {target.outputs.get('WebhookUrl', '-')}", highlight=False)
    table = _table()
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for key, value in sorted(target.outputs.items()):
        table.add_row(key, value)
    console.print(table)
    todo = 0
    for output, fields in empty.items():
        secret = output.removesuffix("SecretArn")
        if fields is None:
            console.print(f"{secret}: not deployed", highlight=False)
        elif fields:
            todo += 1
            console.print(f"{secret} secret: still empty: {', '.join(fields)}", highlight=False)
        else:
            console.print(f"{secret} secret: filled", highlight=False)
    if todo:
        console.print("fill them: docs/operations.md, 'Filling and rotating secrets'", highlight=False)
    return 1 if todo else 0


def _logs(args: argparse.Namespace, console: Console, target: Target) -> int:
    functions = [args.function] if args.function else list(commands.LOG_FUNCTIONS)
    rows = commands.logs(target, args.id, timedelta(hours=args.hours), functions)
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        # @log is "<account>:/aws/lambda/<stack>-<function>"
        where = row.get("@log", "?").split(f"/aws/lambda/{target.name}-")[-1]
        detail = " ".join(f"{k}={row[k]}" for k in ("destination", "reason", "status") if row.get(k))
        console.print(
            f"{row.get('@timestamp', '?')} {where} {row.get('level', '')} {row.get('message', '')} {detail}".rstrip(),
            highlight=False,
            markup=False,
        )
    console.print(f"{len(rows)} line(s) about {args.id} in the last {args.hours:g} h", highlight=False)
    return 0


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    try:
        response = requests.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        raise TargetError(f"cannot POST to {url}: {type(exc).__name__}") from None
    return response.status_code, response.text


def _doctor(args: argparse.Namespace, console: Console, target: Target) -> int:
    checks = commands.doctor(target, _post)
    if args.json:
        _print_json([check.__dict__ for check in checks])
    else:
        for check in checks:
            console.print(
                f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}", highlight=False, markup=False
            )
    return 0 if all(check.ok for check in checks) else 1


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
    "info": _info,
    "logs": _logs,
    "doctor": _doctor,
}


def console_for_output() -> Console:
    """A console as wide as the terminal, or COLUMNS, or 80 columns when piped."""
    # soft_wrap: a message stays one line (a script can grep it); tables still follow the width.
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console(highlight=False, soft_wrap=True)
    return Console(width=PIPE_WIDTH, highlight=False, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    """Run an operator command: the target on the first line; TargetError becomes one line on stderr, exit 2."""
    quiet_for_command_line()
    console = console_for_output()
    try:
        spec = target_spec(args)
        if spec.is_local:
            # The local stack is reached with its own credentials: a profile of this machine is not used.
            for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
                os.environ.pop(name, None)
        target = _connect(spec)
        _announce(args, console, target)
        code: int = HANDLERS[args.operation](args, console, target)
    except (NoTargetError, TargetError) as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 2
    except PlatformError as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 1
    return code
