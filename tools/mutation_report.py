"""Summarise a mutmut 3 run (run from the folder holding mutants/): survivors, then the score.

Reads mutmut's own result files (mutants/**/*.py.meta). A mutant counts as killed when a test failed
or timed out on it, or when mypy (part of `make test`) rejected it; "no tests" (no unit or integration
test calls the function) and "survived" count against the score. The last line printed is the overall
score.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {
    1: "killed",
    3: "killed",
    37: "caught by mypy",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
}
NAMES = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def status(exit_code: int | None) -> str:
    """mutmut's status name for a worker exit code."""
    return KILLED.get(exit_code, NAMES.get(exit_code, "suspicious")) if exit_code is not None else "not checked"


def area(path: str) -> str:
    """The part of the code a mutated file belongs to."""
    return "layer (invoice_bridge)" if path.startswith("src/invoice_bridge") else "sandbox (stack, runner, gateway)"


def main(mutants: Path = Path("mutants")) -> int:
    """Print survivors and scores; exit 1 when there are no results at all."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    left: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for meta in sorted(mutants.rglob("*.py.meta")):
        path = str(meta.relative_to(mutants)).removesuffix(".meta")
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            result = status(code)
            counts[area(path)][result] += 1
            per_file[path][result] += 1
            if result not in {"killed", "timeout", "caught by mypy", "skipped"}:
                left[path].append((name, result))
    if not counts:
        print("no mutmut results found under mutants/", file=sys.stderr)
        return 1
    print("mutants not killed:")
    for path, names in sorted(left.items()):
        print(f"  {path}")
        for name, result in names:
            print(f"    {result:12} {name}")
    print("per file (killed/tested, not killed: survived + no tests):")
    for path, counter in sorted(per_file.items()):
        killed = counter["killed"] + counter["timeout"] + counter["caught by mypy"]
        tested = sum(counter.values()) - counter["skipped"]
        print(f"  {path:55} {killed:4}/{tested:<4} survived {counter['survived']:3}  no tests {counter['no tests']:3}")
    total_killed = total = 0
    for name, counter in sorted(counts.items()):
        killed = counter["killed"] + counter["timeout"] + counter["caught by mypy"]
        tested = sum(counter.values()) - counter["skipped"]
        total_killed += killed
        total += tested
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
        print(f"{name}: {100 * killed / tested:.1f}% ({killed}/{tested} killed; {detail})")
    print(f"mutation score: {100 * total_killed / total:.1f}% ({total_killed}/{total} killed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
