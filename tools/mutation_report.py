"""Summarise a mutmut 3 run (run from the folder holding mutants/): survivors with their diffs, then the scores.

Reads mutmut's own result files (mutants/**/*.py.meta) and the mutated sources next to them. A mutant counts as
killed when a test failed or timed out on it, or when mypy (part of `make test`) rejected it; "no tests" (no unit
or integration test calls the function) and "survived" count against the score.

Mutants that change nothing but a log statement (`logger.info(...)` and the like: its message, its field names, a
dropped `extra=`) are listed apart and left out of the scores, killed or not: log wording is for people, and what a
log line must never carry (credentials, bodies, query strings) is pinned by tests of its own. The last line printed
carries the layer's score and the whole run's.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
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
KILLED_STATUSES = {"killed", "timeout", "caught by mypy"}
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "append_keys", "remove_keys"}
MUTANT_SUFFIX = re.compile(r"__mutmut_\d+$")


def status(exit_code: int | None) -> str:
    """mutmut's status name for a worker exit code."""
    return KILLED.get(exit_code, NAMES.get(exit_code, "suspicious")) if exit_code is not None else "not checked"


def area(path: str) -> str:
    """The part of the code a mutated file belongs to."""
    return "layer" if path.startswith("src/invoice_bridge") else "sandbox"


@dataclass(frozen=True)
class Change:
    """What one mutant changed: the original and mutated lines, and whether only a log statement changed."""

    removed: tuple[str, ...]
    added: tuple[str, ...]
    log_only: bool

    def one_line(self) -> str:
        """The change as `- old | + new`, shortened."""
        text = " | ".join([*(f"- {r.strip()}" for r in self.removed), *(f"+ {a.strip()}" for a in self.added)])
        return text if len(text) <= 220 else text[:217] + "..."


@cache
def _functions(source_path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    source = source_path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    return {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


@cache
def _lines(source_path: Path) -> list[str]:
    return source_path.read_text(encoding="utf-8").splitlines()


def _log_spans(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[range]:
    spans = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Expr):
            continue
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr in LOG_METHODS
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "logger"
        ):
            spans.append(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return spans


def change_of(source_path: Path, mutant_name: str) -> Change | None:
    """The change a mutant makes, read from mutmut's trampoline file (None when it cannot be found)."""
    short = mutant_name.rsplit(".", 1)[-1]
    functions = _functions(source_path)
    original = functions.get(MUTANT_SUFFIX.sub("", short) + "__mutmut_orig")
    mutated = functions.get(short)
    if original is None or mutated is None:
        return None
    lines = _lines(source_path)
    # From the def line (a mutant may change a default), with the names, which always differ, left out.
    before = lines[original.lineno - 1 : original.end_lineno]
    after = lines[mutated.lineno - 1 : mutated.end_lineno]
    before[0] = before[0].replace(original.name, "f", 1)
    after[0] = after[0].replace(mutated.name, "f", 1)
    removed: list[str] = []
    added: list[str] = []
    touched: set[int] = set()
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed.extend(before[a0:a1])
        added.extend(after[b0:b1])
        touched.update(range(original.lineno + a0, original.lineno + max(a1, a0 + 1)))
    spans = _log_spans(original)
    log_only = bool(touched) and all(any(line in span for span in spans) for line in touched)
    return Change(tuple(removed), tuple(added), log_only)


def log_only_mutants(source_path: Path) -> set[str]:
    """The mutants of one mutated file (mutmut's trampoline copy) that change only a log statement, by short name."""
    cache = source_path.with_name(source_path.name + ".logonly.json")
    stamp = source_path.stat().st_mtime
    if cache.exists():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["mtime"] == stamp:
            return set(cached["names"])
    names = {
        name
        for name in _functions(source_path)
        if MUTANT_SUFFIX.search(name) and (change := change_of(source_path, name)) is not None and change.log_only
    }
    partial = cache.with_name(cache.name + f".{id(names)}")
    partial.write_text(json.dumps({"mtime": stamp, "names": sorted(names)}), encoding="utf-8")
    partial.replace(cache)  # two workers may compute it at once: both write the same thing
    return names


def is_log_only(mutant_name: str) -> bool:
    """Whether a mutant (`module.mangled__mutmut_N`, as MUTANT_UNDER_TEST names it) changes only a log statement."""
    module, short = mutant_name.rsplit(".", 1)
    relative = module.replace(".", "/") + ".py"
    path = Path("src") / relative if module.startswith("invoice_bridge") else Path(relative)
    return path.exists() and short in log_only_mutants(path)


def retest(mutants: Path = Path("mutants")) -> int:
    """Forget the verdicts of mutants not killed, so the next `mutmut run` tests them again (with today's tests)."""
    reset = 0
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data["exit_code_by_key"]
        again = [name for name, code in codes.items() if code is not None and status(code) not in KILLED_STATUSES]
        for name in again:
            codes[name] = None
        if again:
            meta.write_text(json.dumps(data, indent=4), encoding="utf-8")
            reset += len(again)
    print(f"{reset} mutants not killed last time will be tested again")
    return 0


def main(mutants: Path = Path("mutants")) -> int:
    """Print survivors and scores; exit 1 when there are no results at all."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    left: dict[str, list[tuple[str, str, Change | None]]] = defaultdict(list)
    log_only: dict[str, list[tuple[str, str, Change | None]]] = defaultdict(list)
    for meta in sorted(mutants.rglob("*.py.meta")):
        path = str(meta.relative_to(mutants)).removesuffix(".meta")
        if not Path(path).exists():
            continue  # a module removed since an earlier run
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            result = status(code)
            change = change_of(mutants / path, name)
            if change is not None and change.log_only:
                log_only[path].append((name, result, change))
                counts[area(path)]["log statement only"] += 1
                continue
            counts[area(path)][result] += 1
            per_file[path][result] += 1
            if result not in KILLED_STATUSES | {"skipped"}:
                left[path].append((name, result, change))
    if not counts:
        print("no mutmut results found under mutants/", file=sys.stderr)
        return 1
    print("mutants not killed:")
    for path, rows in sorted(left.items()):
        print(f"  {path}")
        for name, result, change in rows:
            print(f"    {result:11} {name.rsplit('.', 1)[-1]}: {change.one_line() if change else '?'}")
    print("mutants that change only a log statement (not scored):")
    for path, rows in sorted(log_only.items()):
        kept = Counter(result for _, result, _ in rows)
        print(f"  {path}: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(kept.items()))})")
    print("per file (killed/scored; not killed = survived + no tests):")
    for path, counter in sorted(per_file.items()):
        killed = sum(counter[s] for s in KILLED_STATUSES)
        scored = sum(counter.values()) - counter["skipped"]
        print(f"  {path:55} {killed:4}/{scored:<4} survived {counter['survived']:3}  no tests {counter['no tests']:3}")
    scores: dict[str, tuple[int, int]] = {}
    for name, counter in sorted(counts.items()):
        killed = sum(counter[s] for s in KILLED_STATUSES)
        scored = sum(v for k, v in counter.items() if k not in {"skipped", "log statement only"})
        scores[name] = (killed, scored)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
        print(f"{name}: {100 * killed / max(scored, 1):.1f}% ({killed}/{scored} killed; {detail})")
    total_killed = sum(k for k, _ in scores.values())
    total = sum(s for _, s in scores.values())
    layer_killed, layer_total = scores.get("layer", (0, 0))
    print(
        f"mutation score: layer {100 * layer_killed / max(layer_total, 1):.1f}% ({layer_killed}/{layer_total} killed),"
        f" whole run {100 * total_killed / max(total, 1):.1f}% ({total_killed}/{total})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(retest() if sys.argv[1:] == ["--retest"] else main())
