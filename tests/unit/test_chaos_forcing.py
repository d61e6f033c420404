"""`make chaos` plays every named fault kind that is on at least once, whatever its share and occasions."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.chaos import force_each_kind
from sandbox.faults import KINDS, FaultPlan, FaultSettings


@dataclass
class Peer:
    faults: FaultPlan


def test_each_kind_on_is_drawn_at_its_first_occasion_in_each_peer_that_plays_it() -> None:
    # Given a tiny share (a kind with one occasion a run would almost never be drawn)
    settings = FaultSettings.parse("all=0.0001,seed=1")
    peers = {name: Peer(settings.plan(name)) for name in ("quipu", "tuimprenta", "facturadirecta", "buildnexion")}
    force_each_kind(peers)
    # Then each peer draws each of its kinds at the first occasion, and only its own
    for name, peer in peers.items():
        played = sorted(kind for kind, (players, _) in KINDS.items() if name in players)
        assert sorted(kind for kind in KINDS if peer.faults.draw(kind)) == played
        assert dict(peer.faults.injected) == dict.fromkeys(played, 1)


def test_a_kind_turned_off_is_never_forced() -> None:
    settings = FaultSettings.parse("error=0.1,status_409=0.5,seed=1")
    peer = Peer(settings.plan("tuimprenta"))
    force_each_kind({"tuimprenta": peer})
    assert [kind for kind in KINDS if peer.faults.draw(kind)] == ["status_409"]  # forced: its first occasion
    assert "result_redirect" not in peer.faults.injected
