"""A small chaos run inside `make test`: every sandbox peer faulting, events swapped and delivered twice,
and every sandbox checked against BuildNexion (the full run is `make chaos`)."""

from __future__ import annotations

import os
import time

from sandbox.chaos import run_chaos


def test_a_small_mix_under_faults_ends_with_nothing_lost_duplicated_wrong_or_dead_lettered() -> None:
    # The stack's own settings, explicitly: short schedules; no platform URL or AWS setting of this machine.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.endswith("_API_URL")}
    environ.pop("LOCAL_FAULTS", None)
    environ.update({"LOCAL_SCHEDULE_SECONDS": "1", "TUIMPRENTA_PROCESSING_SECONDS": "0.5"})
    lines: list[str] = []
    started = time.monotonic()
    # Hangs are dropped after 1 s here (the client sees the connection go, as after its timeout).
    result = run_chaos(
        seed=3,
        invoices=4,
        sales=8,
        orders=6,
        faults="error=0.1,hang=0.03,after_effect=0.5,hang_seconds=1",
        settle_timeout=75,
        environ=environ,
        out=lines.append,
    )
    assert result.settled, "\n".join(lines)
    assert result.findings.ok, result.findings.report()
    assert result.findings.checked == 18
    # The faults really played: at least one peer answered a fault.
    assert sum(sum(injected.values()) for injected in result.injected.values()) > 0
    assert time.monotonic() - started < 110
