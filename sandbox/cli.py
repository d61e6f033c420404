"""`invoice-bridge`: the local stack (serve, wait, demo), signed webhooks for hand-testing (send, sign), and
the operator's commands (status, dlq, replay, backfill, webhook, reconcile)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
from botocore.exceptions import BotoCoreError

from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, signature_header
from invoice_bridge.errors import ConfigurationError
from invoice_bridge.tuimprenta.webhook import SIGNATURE_HEADER as TUIMPRENTA_SIGNATURE_HEADER
from invoice_bridge.tuimprenta.webhook import compute_signature
from ops import parser as ops_parser
from sandbox.buildnexion import SEND_TIMEOUT
from sandbox.cfn import Template, TemplateError
from sandbox.settings import LocalPort, LocalSettings

# sandbox.stack (moto, boto3) is imported by the commands that start a stack only: send, sign and wait start fast.
REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("buildnexion", "tuimprenta")
ROUTES = {"buildnexion": "/webhooks/buildnexion", "tuimprenta": "/webhooks/tuimprenta"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UsageError(Exception):
    """A command that cannot run as asked; the message says what to do."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> NoReturn:
        """Print `<prog>: <message> (see <prog> --help)` and exit 2."""
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing (not for flags and unset options)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


# -- serve ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from sandbox.stack import LocalStack, StackOptions

    if args.faults == "list":
        from sandbox.faults import describe_kinds

        print(describe_kinds(), flush=True)
        return 0

    from sandbox.quietlog import quiet
    from sandbox.stack import stderr_log_sink

    access_log = None if args.quiet else _print_access_line
    stopping = threading.Event()
    sink = stderr_log_sink if args.verbose_logs else quiet(stderr_log_sink)

    def log_sink(function: str, line: str) -> None:
        if not stopping.is_set():  # what an abandoned invocation says while the stack stops is noise
            sink(function, line)

    stack = LocalStack(
        StackOptions(
            root=args.root,
            port=args.port,
            parameter_overrides=args.parameter_overrides,
            access_log=access_log,
            faults=args.faults,
            log_sink=log_sink,
        )
    )

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            os._exit(128 + signum)  # a second Ctrl-C while stopping: leave now, quietly
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack.start()
    try:
        print(f"invoice-bridge local stack listening on {stack.url}", flush=True)
        for route in stack.routes:
            print(f"  {route.split()[0]:5} {stack.url}{route.split()[1]}", flush=True)
        print(f"  GET   {stack.url}/local/status", flush=True)
        for platform, url in sorted(stack.api_urls.items()):
            source = "sandbox peer" if platform in stack.peers else "from the environment"
            print(f"  {platform} API: {url} ({source})", flush=True)
        print(f"  emulated AWS (moto): {stack.aws.endpoint}", flush=True)
        if stack.settings.fault_settings().active:
            print(f"  sandbox faults: {stack.settings.fault_settings().spec()}", flush=True)
        for key, value in sorted(args.parameter_overrides.items()):
            print(f"  parameter {key} = {value}", flush=True)
        print("ready; Ctrl-C (or SIGTERM) stops the stack", flush=True)
        stopping.wait()
        print("stopping", flush=True)
        # The process exits right after (os._exit in main): worker work under way is abandoned, not awaited.
        stack.stop_promptly()
    finally:
        if not stopping.is_set():
            stack.stop()  # an error while starting or serving: stop everything, in order
    return 0


def _print_access_line(record: Any) -> None:
    from sandbox.console import stderr_line
    from sandbox.stack import gateway_access_line

    stderr_line(gateway_access_line(record))


def _parameter_overrides(root: Path, pairs: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    known = Template.load(root / "template.yaml").parameter_defaults()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--parameter-overrides takes Key=Value, not {pair!r}")
        if key not in known:
            raise UsageError(f"template.yaml has no parameter {key!r}; its parameters: {', '.join(sorted(known))}")
        if key == "RoutingTable":
            _check_routing_table(value)
        overrides[key] = value
    return overrides


def _check_routing_table(value: str) -> None:
    """Refuse at start a RoutingTable the receiver would fail on at the first webhook (a bare 500)."""
    from pydantic import Json, TypeAdapter, ValidationError

    from invoice_bridge.config import Destination, RoutingTable, describe_validation_error

    try:
        table = json.loads(value)
    except ValueError:
        raise UsageError(f"RoutingTable is not JSON: {value!r}") from None
    if not isinstance(table, dict):
        raise UsageError('RoutingTable must be a JSON object, e.g. {"invoice.created": "quipu"}')
    known = [d.value for d in Destination]
    for event_type, destination in table.items():
        if destination not in known:
            raise UsageError(
                f"RoutingTable routes {event_type} to {destination!r}, which is not a destination; "
                f"known: {', '.join(known)}"
            )
    try:
        TypeAdapter(Json[RoutingTable]).validate_python(value)
    except ValidationError as exc:
        field, message = describe_validation_error(exc)
        raise UsageError(f"RoutingTable {field}: {message}") from None


def _check_faults_flag(spec: str | None) -> None:
    """A bad --faults is blamed on the flag, not on LOCAL_FAULTS (which the flag overrides)."""
    if spec is None or spec == "list":
        return
    from sandbox.faults import FaultSettings, FaultSpecError

    try:
        FaultSettings.parse(spec)
    except FaultSpecError as exc:
        raise UsageError(f"--faults: {exc}") from None


# -- wait ----------------------------------------------------------------------------------------------


def _wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    status_url = f"{args.url.rstrip('/')}/local/status"
    with requests.Session() as session:
        while True:
            if args.pid is not None and not _process_alive(args.pid):
                raise UsageError(f"the stack's process (pid {args.pid}) has exited; its output says why")
            try:
                status = session.get(status_url, timeout=(1, 5)).json()
            except (requests.RequestException, ValueError):
                status = None
            if isinstance(status, dict) and (status.get("idle") or not args.idle):
                print(f"the local stack at {args.url} is {'idle' if args.idle else 'ready'}", flush=True)
                return 0
            if time.monotonic() > deadline:
                what = "idle" if isinstance(status, dict) else "answering"
                print(
                    f"invoice-bridge: the local stack at {args.url} was not {what} after {args.timeout:g} s; "
                    "is 'invoice-bridge local serve' running there?",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)  # the poll interval of a bounded wait on /local/status


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not yet reaped (a zombie) still "exists"; /proc tells them apart.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- send and sign -------------------------------------------------------------------------------------


def _read_event(path: str, fresh_id: bool) -> bytes:
    try:
        body = Path(path).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give event files, e.g. {path.rstrip('/')}/*.json") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not fresh_id:
        return body
    try:
        document = json.loads(body)
    except ValueError:
        raise UsageError(f"{path} is not JSON, so --fresh-id cannot give it a new id") from None
    if not isinstance(document, dict) or "id" not in document:
        raise UsageError(f'{path} has no top-level "id" for --fresh-id to replace')
    prefix = str(document["id"]).split("_", 1)[0] if "_" in str(document["id"]) else "evt"
    document["id"] = f"{prefix}_{uuid.uuid4().hex}"
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _dated_now(body: bytes) -> bytes:
    """A tuimprenta event dated now, as tuimprenta sends it: the receiver refuses one created too long ago.

    Only a JSON object with a `created_at` is changed; anything else goes as given.
    """
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or "created_at" not in document:
        return body
    document["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _signature(source: str, body: bytes, secret: str | None, timestamp: int | None) -> tuple[str, str]:
    """The (header, value) that `source` would send with `body`."""
    settings = LocalSettings.from_env()
    if source == "tuimprenta":
        if timestamp is not None:
            raise UsageError("tuimprenta signatures carry no timestamp; drop --timestamp")
        key = secret if secret is not None else settings.tuimprenta_webhook_secret
        return TUIMPRENTA_SIGNATURE_HEADER, compute_signature(key, body)
    secrets = [s.strip() for s in secret.split(",") if s.strip()] if secret is not None else settings.webhook_secrets()
    if not secrets:
        raise UsageError("--secret is empty; give the webhook secret (comma-separated for several)")
    stamp = int(time.time()) if timestamp is None else timestamp
    return SIGNATURE_HEADER, signature_header(secrets, stamp, body)


def _send(args: argparse.Namespace) -> int:
    url = args.url or f"http://127.0.0.1:{LocalPort.from_env().local_port}{ROUTES[args.source]}"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, e.g. http://{url}")
    bodies = [(path, _read_event(path, args.fresh_id)) for path in args.files]
    if args.source == "tuimprenta":
        bodies = [(path, _dated_now(body)) for path, body in bodies]
    worst = 0
    with requests.Session() as session:
        sandbox = _sandbox_buildnexion(session, url) if args.source == "buildnexion" else None
        for path, body in bodies:
            if sandbox is not None:
                # BuildNexion holds every object it sends an event about: the workers read it from there.
                refused = _store_object(session, sandbox, body)
                if refused is not None:
                    # The event still goes out (its answer is what was asked for), but no real BuildNexion
                    # would send it: the workers will not find this version of the object.
                    print(f"{path}: {refused}; the event is sent anyway", file=sys.stderr, flush=True)
                    worst = 1
            header, value = _signature(args.source, body, args.secret, None)
            headers = {"Content-Type": "application/json", "User-Agent": f"invoice-bridge-cli ({args.source})"}
            try:
                response = session.post(url, data=body, headers={**headers, header: value}, timeout=SEND_TIMEOUT)
            except requests.ConnectionError:
                raise UsageError(
                    f"nothing answers at {url}: start the stack with 'invoice-bridge local serve' "
                    "(and 'invoice-bridge local wait' until it is ready), or give --url"
                ) from None
            except requests.Timeout:
                raise UsageError(f"{url} did not answer within {SEND_TIMEOUT[1]} s") from None
            except requests.RequestException as exc:
                raise UsageError(f"cannot POST to {url}: {type(exc).__name__}") from None
            print(f"{path}: {response.status_code} {response.text}", flush=True)
            worst = max(worst, 0 if response.ok else 1)
    return worst


def _sandbox_buildnexion(session: requests.Session, webhook_url: str) -> str | None:
    """The objects route of the stack's sandbox BuildNexion, when the stack at `webhook_url` runs one."""
    parts = urlsplit(webhook_url)
    try:
        outputs = session.get(f"{parts.scheme}://{parts.netloc}/local/outputs", timeout=SEND_TIMEOUT).json()
        api = str(outputs["outputs"]["BuildNexionApiUrl"]).rstrip("/")
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None  # not a local stack (or an older one): the event is sent on its own
    return f"{api}/sandbox/objects" if urlsplit(api).hostname in LOOPBACK else None


def _store_object(session: requests.Session, objects_url: str, body: bytes) -> str | None:
    """Have the sandbox BuildNexion hold the event's object; why it does not, or None once it does."""
    try:
        obj = json.loads(body)["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return None  # not an event envelope: the receiver will answer 400 for it
    api_key = LocalSettings.from_env().buildnexion_api_key
    try:
        response = session.put(
            objects_url, json=obj, headers={"Authorization": f"Bearer {api_key}"}, timeout=SEND_TIMEOUT
        )
    except requests.RequestException as exc:
        return f"the sandbox BuildNexion at {objects_url} did not answer ({type(exc).__name__})"
    if response.status_code == 204:
        return None
    try:
        error = response.json()["error"]
        detail = f"{error['field']}: {error['message']}" if error.get("field") else str(error["message"])
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200] or "no detail"
    return f"the sandbox BuildNexion refused to hold its object ({response.status_code}): {detail}"


def _sign(args: argparse.Namespace) -> int:
    body = _read_event(args.file, fresh_id=False)
    header, value = _signature(args.source, body, args.secret, args.timestamp)
    print(f"{header}: {value}")
    return 0


# -- demo ----------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from sandbox.demo import run_demo

    if not args.events.is_dir():
        raise UsageError(f"--events {args.events} is not a folder of event files")
    return run_demo(root=args.root, events_dir=args.events, port=args.port)


# -- inspect -------------------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/local/inspect/{args.platform}"
    try:
        response = requests.get(url, timeout=SEND_TIMEOUT)
    except requests.ConnectionError:
        raise UsageError(
            f"nothing answers at {args.url}: start the stack with 'invoice-bridge local serve', or give --url"
        ) from None
    except requests.RequestException as exc:
        raise UsageError(f"cannot GET {url}: {type(exc).__name__}") from None
    try:
        document = response.json()
    except ValueError:
        raise UsageError(
            f"{url} answered {response.status_code}, not JSON: is it an invoice-bridge local stack?"
        ) from None
    if response.status_code != 200:
        raise UsageError(str(document.get("message", response.status_code)))
    if args.json:
        print(json.dumps(document["holds"], indent=2, ensure_ascii=False))
        return 0
    counts = ", ".join(f"{name} {count}" for name, count in document["summary"].items())
    print(f"the sandbox {args.platform} at {args.url} holds: {counts or 'nothing'}")
    for name, value in document["holds"].items():
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            print(f"  {name} {key}: {json.dumps(item, ensure_ascii=False, sort_keys=True)}")
    return 0


# -- the command line ----------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535; 0 picks a free one)")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def build_parser() -> Parser:
    """The command line."""
    default_port = LocalPort.from_env().local_port
    formatter = HelpFormatter
    parser = Parser(prog="invoice-bridge", description=__doc__, formatter_class=formatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the folder holding template.yaml")
    commands = parser.add_subparsers(
        dest="command", metavar="{local," + ",".join(ops_parser.COMMANDS) + "}", title="commands"
    )
    local_parser = commands.add_parser(
        "local",
        help="the local stack and its helpers",
        description="The local stack: the real handlers on emulated AWS, and tools to drive it.",
        formatter_class=formatter,
    )
    local = local_parser.add_subparsers(
        dest="local_command", metavar="{serve,wait,send,sign,demo,inspect}", title="commands"
    )

    serve = local.add_parser(
        "serve",
        help="run the handlers on emulated AWS, in the foreground",
        description="Run the stack in the foreground until Ctrl-C or SIGTERM. The first line printed is "
        "'invoice-bridge local stack listening on <url>', once the stack answers; the last is 'ready; ...'. "
        "One access line per request goes to stderr, with the function logs.",
        formatter_class=formatter,
    )
    serve.add_argument(
        "--port", type=_port, default=default_port, help="gateway port; 0 picks a free one; LOCAL_PORT sets the default"
    )
    serve.add_argument("--quiet", action="store_true", help="no access log line per request")
    serve.add_argument(
        "--verbose-logs",
        action="store_true",
        help="every function log line, with the EMF metric blobs and the poller's idle runs left out by default",
    )
    serve.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters to override, as sam spells them, e.g. 'LogLevel=DEBUG'",
    )
    serve.add_argument(
        "--faults",
        metavar="SPEC",
        help="faults every sandbox peer injects, e.g. 'error=0.1,hang=0.03,after_effect=0.5,seed=7' "
        "(5xx, hangs past the client's timeout, writes whose answer is lost after their effect) and the named "
        "kinds each platform's reference documents ('--faults list' prints them); LOCAL_FAULTS sets the default",
    )
    serve.set_defaults(func=_serve)

    wait = local.add_parser(
        "wait",
        help="wait until a local stack answers (or is idle)",
        description="Exit 0 once GET <url>/local/status answers; exit 1 after --timeout or when --pid has exited.",
        formatter_class=formatter,
    )
    wait.add_argument("--url", default=f"http://127.0.0.1:{default_port}", help="the stack's base URL")
    wait.add_argument("--timeout", type=_positive, default=60.0, help="seconds to wait at most")
    wait.add_argument("--pid", type=int, help="stop waiting (exit 1) as soon as this process (the serve) exits")
    wait.add_argument("--idle", action="store_true", help="wait until /local/status reports idle, not only up")
    wait.set_defaults(func=_wait)

    send = local.add_parser(
        "send",
        help="POST event files, signed as BuildNexion or tuimprenta would sign them",
        description="POST each file, signed; print each answer; exit 1 if any answer was 4xx or 5xx, or if the "
        "stack's sandbox BuildNexion refused to hold an event's object (the field is named).",
        formatter_class=formatter,
    )
    send.add_argument("files", nargs="+", metavar="FILE", help="event files (JSON), e.g. events/buildnexion/*.json")
    send.add_argument(
        "--as",
        dest="source",
        choices=SOURCES,
        default="buildnexion",
        help="sign as this platform (BUILDNEXION_WEBHOOK_SECRET or TUIMPRENTA_WEBHOOK_SECRET) and post to its route;"
        " a tuimprenta event's created_at is set to now, as tuimprenta would send it",
    )
    send.add_argument("--url", help=f"where to POST; default http://127.0.0.1:{default_port}/webhooks/<--as platform>")
    send.add_argument("--secret", help="sign with this secret instead of the one from the environment")
    send.add_argument(
        "--fresh-id", action="store_true", help="give each event a new random id, so it is not answered 'duplicate'"
    )
    send.set_defaults(func=_send)

    sign = local.add_parser(
        "sign",
        help="print the signature header for an event file, for curl",
        description="Print '<Header>: <value>' for FILE, e.g. "
        'curl -H "$(invoice-bridge local sign FILE)" --data-binary @FILE ...',
        formatter_class=formatter,
    )
    sign.add_argument("file", metavar="FILE", help="the exact bytes that will be sent")
    sign.add_argument("--as", dest="source", choices=SOURCES, default="buildnexion", help="sign as this platform")
    sign.add_argument("--secret", help="the webhook secret; default: from the environment, as send uses")
    sign.add_argument(
        "--timestamp", type=int, help="BuildNexion only: unix seconds to sign with; default now (valid 300 s)"
    )
    sign.set_defaults(func=_sign)

    demo = local.add_parser(
        "demo",
        help="send the demo events through the local stack and report (what make demo runs)",
        description="Start the stack, send every event file through the sandbox BuildNexion, wait until idle "
        "and print what each destination holds; exit 0 only if everything arrived.",
        formatter_class=formatter,
    )
    demo.add_argument("--port", type=_port, default=0, help="gateway port; 0 picks a free one")
    demo.add_argument("--events", type=Path, default=REPO_ROOT / "events" / "buildnexion", help="event files to send")
    demo.set_defaults(func=_demo)

    inspect = local.add_parser(
        "inspect",
        help="what a sandbox platform holds now (read over HTTP from the local stack, no token needed)",
        description="Print what the sandbox peer holds (documents, contacts, batches...); --json for all of it.",
        formatter_class=formatter,
    )
    inspect.add_argument(
        "platform", choices=["quipu", "tuimprenta", "facturadirecta", "buildnexion"], help="the sandbox peer to read"
    )
    inspect.add_argument("--url", default=f"http://127.0.0.1:{default_port}", help="the stack's base URL")
    inspect.add_argument("--json", action="store_true", help="everything the peer holds, as JSON")
    inspect.set_defaults(func=_inspect)

    ops_parser.register(commands)
    parser.set_defaults(func=None, help_parser=parser)
    local_parser.set_defaults(help_parser=local_parser)
    return parser


def bypass_proxy_for_loopback() -> None:
    """Keep loopback out of any HTTP(S)_PROXY: the stack, its peers and its functions talk over 127.0.0.1."""
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e.strip() for e in os.environ.get(name, "").split(",") if e.strip()]
        os.environ[name] = ",".join([*entries, *(host for host in LOOPBACK if host not in entries)])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `invoice-bridge` console script."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("invoice-bridge: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()
    except ConfigurationError as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.func is None and getattr(args, "operation", None) is None:
        chooser: Parser = args.help_parser
        if chooser is parser:
            chooser.error("choose a command: " + ", ".join(("local", *ops_parser.COMMANDS)))
        chooser.error("choose a command: serve, wait, send, sign, demo or inspect")
    bypass_proxy_for_loopback()
    if args.command != "local":
        if getattr(args, "operation", None) == "backfill":
            ops_parser.refuse_until_before_since(parser, args.since, args.until)
        # ops.cli.run keeps this machine's AWS profile for a deployed stack and drops it for the local one.
        try:
            from ops.cli import run  # boto3 and Powertools load only for these commands
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile this machine does not have
            print(f"invoice-bridge: {exc}", file=sys.stderr)
            return 2
        return run(args)
    # The local stack talks to emulated AWS only; a profile of this machine (even a missing one) is not used.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    try:
        if args.func in (_serve, _demo) and not (args.root / "template.yaml").is_file():
            raise UsageError(f"no template.yaml in {args.root}: --root must name the folder holding template.yaml")
        if args.func is _serve:
            args.parameter_overrides = _parameter_overrides(args.root, args.parameter_overrides)
            _check_faults_flag(args.faults)
        code: int = args.func(args)
        if args.func in (_serve, _demo):
            # Everything the stack started has stopped. Tearing down moto's and boto3's modules at
            # interpreter exit would take seconds more after Ctrl-C: leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    except (ConfigurationError, TemplateError, UsageError) as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            print(f"invoice-bridge: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"invoice-bridge: port {args.port} is in use; choose another with --port", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
