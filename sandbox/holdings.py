"""What a sandbox platform holds, read from the peer object in process, for `GET /local/inspect/{platform}`.

Read generically (public containers and dataclasses) so it needs nothing from the peer modules, which
play the platforms' references and change with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

# Peer attributes that are machinery, not what the platform holds.
SKIPPED = frozenset({"faults", "calls", "arrivals", "tokens", "server", "thread", "base_url", "url"})
MAX_DEPTH = 6


def plain(value: Any, depth: int = 0) -> Any:
    """`value` as JSON-ready data (dataclasses and objects by their public fields)."""
    if depth > MAX_DEPTH:
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | datetime | date | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in list(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in list(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__"):
        return {k: plain(v, depth + 1) for k, v in vars(value).items() if not k.startswith("_") and not callable(v)}
    return repr(value)


def holdings(peer: Any) -> dict[str, Any]:
    """The peer's collections (dicts, lists, nested state objects) by attribute name, with their sizes."""
    held: dict[str, Any] = {}
    for name, value in list(vars(peer).items()):
        if name.startswith("_") or name in SKIPPED or callable(value):
            continue
        if isinstance(value, Mapping | list | tuple | set) or (
            hasattr(value, "__dict__") and not isinstance(value, type) and _holds_collections(value)
        ):
            held[name] = plain(value)
    return held


def _holds_collections(value: Any) -> bool:
    return any(isinstance(v, Mapping | list) for k, v in vars(value).items() if not k.startswith("_"))


def summary(held: Mapping[str, Any]) -> dict[str, int]:
    """How many items each collection holds (one level down into a state object)."""
    counts: dict[str, int] = {}
    for name, value in held.items():
        # a state object (collections by name) is counted one level down; a collection of records as itself
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping | list) and not _is_record(v) for v in value.values())
        ):
            counts.update({f"{name}.{k}": len(v) for k, v in value.items()})
            continue
        counts[name] = len(value) if isinstance(value, Mapping | list) else 1
    return counts


def _is_record(value: Any) -> bool:
    # A record (one object) has scalar fields; a collection maps ids to records.
    return isinstance(value, Mapping) and any(not isinstance(v, Mapping | list) for v in value.values())
