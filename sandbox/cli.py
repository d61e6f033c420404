"""`invoice-bridge`: the local stack (serve, demo) and a signed sender for hand-testing."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from invoice_bridge.errors import ConfigurationError
from ops import cli as ops_cli
from sandbox.buildnexion import sign_and_post
from sandbox.cfn import TemplateError
from sandbox.settings import LocalSettings
from sandbox.stack import REPO_ROOT, LocalStack, StackOptions


def _serve(args: argparse.Namespace) -> int:
    stack = LocalStack(StackOptions(root=args.root, port=args.port))
    stack.start()
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"invoice-bridge local stack listening on {stack.url}", flush=True)
    for route in stack.routes:
        print(f"  {route.split()[0]:5} {stack.url}{route.split()[1]}", flush=True)
    print(f"  GET   {stack.url}/local/status", flush=True)
    for platform, url in sorted(stack.api_urls.items()):
        source = "sandbox peer" if platform in stack.peers else "from the environment"
        print(f"  {platform} API: {url} ({source})", flush=True)
    print(f"  emulated AWS (moto): {stack.aws.endpoint}", flush=True)
    stopping.wait()
    print("stopping", flush=True)
    stack.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sandbox.demo import run_demo

    return run_demo(root=args.root, events_dir=args.events, port=args.port)


def _send(args: argparse.Namespace) -> int:
    settings = LocalSettings.from_env()
    worst = 0
    for path in args.files:
        body = Path(path).read_bytes()
        response = sign_and_post(args.url, body, settings.webhook_secrets())
        print(f"{path}: {response.status_code} {response.text}")
        worst = max(worst, 0 if response.ok else 1)
    return worst


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="invoice-bridge", description=__doc__)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="folder holding template.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="the local stack").add_subparsers(dest="local_command", required=True)

    serve = local.add_parser("serve", help="run the handlers on emulated AWS, in the foreground")
    serve.add_argument("--port", type=int, default=3000, help="gateway port (0 picks a free one)")
    serve.set_defaults(func=_serve)

    demo = local.add_parser("demo", help="send the demo events through the local stack and report")
    demo.add_argument("--port", type=int, default=0)
    demo.add_argument("--events", type=Path, default=REPO_ROOT / "events" / "buildnexion")
    demo.set_defaults(func=_demo)

    send = local.add_parser("send", help="POST event files signed as BuildNexion (BUILDNEXION_WEBHOOK_SECRET)")
    send.add_argument("files", nargs="+")
    send.add_argument("--url", default="http://127.0.0.1:3000/webhooks/buildnexion")
    send.set_defaults(func=_send)
    ops_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `invoice-bridge` console script."""
    args = build_parser().parse_args(argv)
    if args.command not in {"local"}:
        return ops_cli.run(args)
    try:
        code: int = args.func(args)
    except (ConfigurationError, TemplateError) as exc:
        print(f"invoice-bridge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"invoice-bridge: port {args.port} is in use; choose another with --port", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
