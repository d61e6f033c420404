"""`python -m bench [--quick] [NAME ...]`: run the named benches (all by default) and print their figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench import coldstart, cost, facturadirecta, quipu, receiver, tuimprenta

BENCHES: dict[str, Callable[[bool], None]] = {
    "receiver": receiver.run,
    "quipu": quipu.run,
    "tuimprenta": tuimprenta.run,
    "facturadirecta": facturadirecta.run,
    "cost": cost.run,
    "coldstart": coldstart.run,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run each bench in turn."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Print the benchmark figures.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a quick look, noisier figures")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"bench to run: {', '.join(BENCHES)} (default: all)")
    args = parser.parse_args(argv)
    names: list[str] = args.names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    for index, name in enumerate(names):
        if index:
            print()
        BENCHES[name](args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
