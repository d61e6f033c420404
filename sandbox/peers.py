"""The sandbox platforms: the local stack starts one for each platform whose *_API_URL is unset.

Each platform's module, named after its destination (sandbox.quipu, sandbox.tuimprenta, sandbox.facturadirecta),
exposes `create_peer(settings) -> DestinationPeer`. A peer counts the API calls it answers, plays its faults through
its FaultPlan (which records the documents it refused for good) and, for `make demo`, checks that what
BuildNexion holds arrived. The demo calls `demo_check` with BuildNexion's faults suspended and without the
documents the peer refused (sandbox.demo.judge).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sandbox.buildnexion import BuildNexionPeer
    from sandbox.faults import FaultPlan
    from sandbox.settings import LocalSettings


@dataclass
class DemoCheck:
    """What a destination holds after the demo, against what BuildNexion sent."""

    synced: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


class DestinationPeer(Protocol):
    """A sandbox invoicing platform."""

    calls: Counter[str]
    faults: FaultPlan

    @property
    def base_url(self) -> str:
        """What the platform's *_API_URL takes."""

    def start(self) -> None:
        """Serve on a loopback port."""

    def stop(self) -> None:
        """Stop serving."""

    def demo_check(self, buildnexion: BuildNexionPeer, events: Sequence[Mapping[str, Any]]) -> DemoCheck:
        """Compare what this platform holds with BuildNexion's latest objects for the events sent to it."""


def create_peer(platform: str, settings: LocalSettings) -> DestinationPeer | None:
    """The sandbox peer for `platform` (module `sandbox.<platform>`), or None while that platform has none."""
    module_name = f"sandbox.{platform}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    peer: DestinationPeer = module.create_peer(settings)
    return peer
