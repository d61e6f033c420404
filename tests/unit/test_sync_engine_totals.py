"""The engine's totals check, which Quipu (one total) and FacturaDirecta (net, tax, gross) both go through."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoice_bridge.ledger import Ledger
from invoice_bridge.sync.engine import SyncEngine
from tests.conftest import emitted_metrics
from tests.unit.test_quipu_sync import MemoryTable


def engine(destination: str) -> SyncEngine:
    return SyncEngine(Ledger(MemoryTable()), destination)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("destination", "expected", "remote"),
    [
        ("quipu", {"total_cents": 158480}, {"total_cents": 158479}),
        (
            "facturadirecta",
            {"net": Decimal("723.04"), "tax": Decimal("151.84"), "gross": Decimal("874.88")},
            {"net": Decimal("723.04"), "tax": Decimal("151.85"), "gross": Decimal("874.88")},  # only the tax
        ),
    ],
)
def test_a_total_that_differs_in_any_figure_is_counted_for_its_destination(
    destination: str, expected: dict[str, object], remote: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert engine(destination).totals_match("r1", expected, remote) is False
    metrics = [m for m in emitted_metrics(capsys.readouterr().out) if m[0] == "TotalsMismatch"]
    assert [m[1]["destination"] for m in metrics] == [destination]
    assert engine(destination).totals_match("r1", expected, dict(expected)) is True
    assert [m for m in emitted_metrics(capsys.readouterr().out) if m[0] == "TotalsMismatch"] == []


def test_an_answer_without_a_total_is_no_match_and_no_mismatch_metric(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert engine("quipu").totals_match("r1", {"total_cents": 1}, None) is False
    assert [m for m in emitted_metrics(capsys.readouterr().out) if m[0] == "TotalsMismatch"] == []
