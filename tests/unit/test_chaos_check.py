"""The chaos run's checker, fed by hand: each kind of finding is reported, and a clean state passes."""

from __future__ import annotations

from collections import Counter

from sandbox.chaos import build_mix, expectations
from sandbox.chaos_check import ABSENT, OPTIONAL, Expected, Held, Snapshot, check

EXPECTED = [
    Expected("quipu", "inv_1", (12100, ("v2",)), "open"),
    Expected("quipu", "inv_2", (5000, ("v1",)), "credited"),
    Expected("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
    Expected("tuimprenta", "sin_1", (("1", "10.00"),), "canceled", OPTIONAL),
    Expected("quipu", "inv_3", (100, ()), "voided", ABSENT),
]


def _clean() -> Snapshot:
    return Snapshot(
        held=[
            Held("quipu", "inv_1", (12100, ("v2",)), "open"),
            Held("quipu", "inv_2", (5000, ("v1",)), "credited"),
            Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
        ],
        parties={"quipu": Counter({"B12345678": 1}), "facturadirecta": Counter({"A46000001": 1})},
        dead_letters={"QuipuQueue DLQ": 0},
    )


def test_a_state_that_matches_buildnexion_passes() -> None:
    findings = check(EXPECTED, _clean())
    assert findings.ok
    assert findings.counts() == {"lost": 0, "duplicated": 0, "wrong": 0, "dead-lettered": 0}


def test_one_duplicate_one_missing_and_one_stale_document_are_each_reported() -> None:
    snapshot = _clean()
    snapshot.held = [
        Held("quipu", "inv_1", (10000, ("v1",)), "open"),  # stale: the first version's content
        Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
        Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),  # created twice
    ]  # inv_2 is missing
    findings = check(EXPECTED, snapshot)
    assert findings.counts() == {"lost": 1, "duplicated": 1, "wrong": 1, "dead-lettered": 0}
    assert "quipu inv_2" in findings.lost[0]
    assert "facturadirecta po_1: held 2 times" in findings.duplicated[0]
    assert "quipu inv_1" in findings.wrong[0]
    assert "10000" in findings.wrong[0]
    assert not findings.ok
    report = findings.report()
    assert "1 lost, 1 duplicated, 1 wrong, 0 dead-lettered" in report


def test_status_presence_parties_and_dead_letters_are_checked() -> None:
    snapshot = _clean()
    snapshot.held[1] = Held("quipu", "inv_2", (5000, ("v1",)), "open")  # voided at the source, not credited
    snapshot.held.append(Held("quipu", "inv_3", (100, ()), "open"))  # must be deleted
    snapshot.held.append(Held("tuimprenta", "sin_9", (), "issued"))  # never sent
    snapshot.parties["quipu"]["B12345678"] = 2
    snapshot.dead_letters["TuimprentaQueue DLQ"] = 3
    findings = check(EXPECTED, snapshot)
    assert findings.counts() == {"lost": 0, "duplicated": 1, "wrong": 3, "dead-lettered": 3}
    assert any("inv_2: status open" in line for line in findings.wrong)
    assert any("inv_3: still held" in line for line in findings.wrong)
    assert any("sin_9" in line and "never sent" in line for line in findings.wrong)
    assert "contact B12345678: created 2 times" in findings.duplicated[0]


def test_a_canceled_sales_invoice_may_be_absent_but_not_left_issued() -> None:
    snapshot = _clean()
    snapshot.held.append(Held("tuimprenta", "sin_1", (("1", "10.00"),), "issued"))
    assert check(EXPECTED, snapshot).counts()["wrong"] == 1


def test_the_mix_is_seeded_and_expects_buildnexions_latest_versions() -> None:
    mix = build_mix(5, 6, 8, 6)
    assert [e["id"] for e, _ in mix.deliveries] == [e["id"] for e, _ in build_mix(5, 6, 8, 6).deliveries]
    assert len(mix.versions) == 20
    expected = expectations(mix.latest(), "credit_note")
    assert {e.destination for e in expected} == {"quipu", "tuimprenta", "facturadirecta"}
    voided = [o["id"] for o in mix.latest() if o["status"] == "void"]
    assert all(e.status == "credited" for e in expected if e.source_id in voided)
    deleted = expectations(mix.latest(), "delete")
    assert all(e.presence == ABSENT for e in deleted if e.source_id in voided)
