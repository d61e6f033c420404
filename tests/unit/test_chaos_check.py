"""The chaos run's checker, fed by hand: each kind of finding is reported, and a clean state passes."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from sandbox.chaos import build_mix, expectations
from sandbox.chaos_check import ABSENT, OPTIONAL, Expected, Held, Letter, Snapshot, check

EXPECTED = [
    Expected("quipu", "inv_1", (12100, ("v2",)), "open"),
    Expected("quipu", "inv_2", (5000, ("v1",)), "credited"),
    Expected("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
    Expected("tuimprenta", "sin_1", (("1", "10.00"),), "canceled", OPTIONAL),
    Expected("tuimprenta", "sin_2", (("2", "5.00"),), "issued"),
    Expected("quipu", "inv_3", (100, ()), "voided", ABSENT),
]


def _clean() -> Snapshot:
    return Snapshot(
        held=[
            Held("quipu", "inv_1", (12100, ("v2",)), "open"),
            Held("quipu", "inv_2", (5000, ("v1",)), "credited"),
            Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
            Held("tuimprenta", "sin_2", (("2", "5.00"),), "issued"),
        ],
        parties={"quipu": Counter({"B12345678": 1}), "facturadirecta": Counter({"A46000001": 1})},
    )


def test_a_state_that_matches_buildnexion_passes() -> None:
    findings = check(EXPECTED, _clean())
    assert findings.ok
    assert findings.counts() == {"lost": 0, "duplicated": 0, "wrong": 0, "dead-lettered": 0, "refused": 0}
    assert findings.checked == 6


def test_one_duplicate_one_missing_and_one_stale_document_are_each_reported() -> None:
    snapshot = _clean()
    snapshot.held = [
        Held("quipu", "inv_1", (10000, ("v1",)), "open"),  # stale: the first version's content
        Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),
        Held("facturadirecta", "po_1", (("l1",), "totals"), "canceled"),  # created twice
        Held("tuimprenta", "sin_2", (("2", "5.00"),), "issued"),
    ]  # inv_2 is missing
    findings = check(EXPECTED, snapshot)
    assert findings.counts() == {"lost": 1, "duplicated": 1, "wrong": 1, "dead-lettered": 0, "refused": 0}
    assert "quipu inv_2" in findings.lost[0]
    assert "facturadirecta po_1: held 2 times" in findings.duplicated[0]
    assert "quipu inv_1" in findings.wrong[0]
    assert "10000" in findings.wrong[0]
    assert not findings.ok
    assert "1 lost, 1 duplicated, 1 wrong, 0 dead-lettered" in findings.report()


def test_a_fiscal_invoice_issued_twice_is_a_duplicate_even_when_one_was_canceled() -> None:
    snapshot = _clean()
    # Two tuimprenta invoices whose metadata.buildnexion_id is sin_2: issued twice, whatever became of one.
    snapshot.held.append(Held("tuimprenta", "sin_2", (("2", "5.00"),), "issued"))
    snapshot.held.append(Held("tuimprenta", "sin_1", (("1", "10.00"),), "canceled"))
    snapshot.held.append(Held("tuimprenta", "sin_1", (("1", "10.00"),), "issued"))
    findings = check(EXPECTED, snapshot)
    assert findings.counts()["duplicated"] == 2
    assert findings.duplicated == ["tuimprenta sin_1: held 2 times", "tuimprenta sin_2: held 2 times"]
    assert not findings.ok


def test_two_quipu_invoices_for_one_buildnexion_invoice_are_a_duplicate() -> None:
    snapshot = _clean()
    snapshot.held.append(Held("quipu", "inv_1", (12100, ("v2",)), "open"))
    findings = check(EXPECTED, snapshot)
    assert findings.duplicated == ["quipu inv_1: held 2 times"]
    assert findings.counts()["wrong"] == 0


def test_a_document_a_peer_refused_for_good_is_expected_on_the_dead_letter_queue_not_held() -> None:
    snapshot = _clean()
    snapshot.held = [h for h in snapshot.held if h.source_id != "sin_2"]  # tuimprenta refused it: not issued
    snapshot.refused = {"tuimprenta": {"sin_2": "status_402 fiscal rejection"}}
    snapshot.dead_letters = [Letter("tuimprenta", "sin_2", "E4020: RIF del receptor no válido")]
    findings = check(EXPECTED, snapshot)
    assert findings.ok, findings.report()
    assert findings.counts() == {"lost": 0, "duplicated": 0, "wrong": 0, "dead-lettered": 0, "refused": 1}
    assert "tuimprenta sin_2" in findings.refused[0]
    assert "E4020" in findings.refused[0]
    assert "1 refused for good by a peer and dead-lettered as expected" in findings.report()


def test_a_refused_update_may_leave_the_earlier_version_held() -> None:
    snapshot = _clean()
    snapshot.held[0] = Held("quipu", "inv_1", (10000, ("v1",)), "open")  # the update was refused: v1 stays
    snapshot.refused = {"quipu": {"inv_1": "status_422 on the update"}}
    snapshot.dead_letters = [Letter("quipu", "inv_1", "http_422: Invalid item")]
    assert check(EXPECTED, snapshot).ok


def test_a_refused_document_missing_from_the_dead_letter_queue_is_lost() -> None:
    snapshot = _clean()
    snapshot.held = [h for h in snapshot.held if h.source_id != "sin_2"]
    snapshot.refused = {"tuimprenta": {"sin_2": "status_402 fiscal rejection"}}
    findings = check(EXPECTED, snapshot)
    assert findings.counts()["lost"] == 1
    assert (
        "tuimprenta sin_2: refused for good (status_402 fiscal rejection) but not on the dead-letter queue"
        in (findings.lost[0])
    )
    assert not findings.ok


def test_a_document_refused_once_then_taken_as_buildnexions_latest_is_not_lost() -> None:
    # Given tuimprenta refused a row of a batch whose result file was unreadable, and the product, finding the
    # invoice absent, sent it again and it was issued
    snapshot = _clean()
    snapshot.refused = {"tuimprenta": {"sin_2": "status_422 on a batch row"}}
    findings = check(EXPECTED, snapshot)
    assert findings.ok
    assert findings.refused == [
        "tuimprenta sin_2: refused once (status_422 on a batch row); sent again and held as BuildNexion's latest"
    ]


def test_a_refused_document_held_twice_or_stale_without_a_letter_is_still_a_finding() -> None:
    snapshot = _clean()
    (issued,) = [h for h in snapshot.held if h.source_id == "sin_2"]
    snapshot.held.append(issued)
    snapshot.refused = {"tuimprenta": {"sin_2": "status_422 on a batch row"}}
    findings = check(EXPECTED, snapshot)
    assert findings.counts()["lost"] == 1
    assert findings.counts()["duplicated"] == 1
    stale = _clean()
    stale.held[0] = Held("quipu", "inv_1", (10000, ("v1",)), "open")
    stale.refused = {"quipu": {"inv_1": "status_422 on the update"}}
    assert check(EXPECTED, stale).lost == [
        "quipu inv_1: refused for good (status_422 on the update) but not on the dead-letter queue"
    ]


def test_a_refused_document_dead_lettered_without_a_reason_is_wrong() -> None:
    snapshot = _clean()
    snapshot.refused = {"facturadirecta": {"po_1": "status_422 INVALID_INPUT_DATA"}}
    snapshot.dead_letters = [Letter("facturadirecta", "po_1", "")]  # moved by the redrive policy, no reason
    findings = check(EXPECTED, snapshot)
    assert findings.counts()["wrong"] == 1
    assert "without a reason" in findings.wrong[0]


def test_a_refusal_at_one_destination_does_not_excuse_a_letter_at_another() -> None:
    snapshot = _clean()
    snapshot.refused = {"quipu": {"sin_2": "a refusal recorded by the wrong peer"}}
    snapshot.dead_letters = [Letter("tuimprenta", "sin_2", "E4020: refused")]
    findings = check(EXPECTED, snapshot)
    assert findings.dead_lettered == ["tuimprenta sin_2: E4020: refused"]
    assert findings.lost == [
        "quipu sin_2: refused for good (a refusal recorded by the wrong peer) but not on the dead-letter queue"
    ]


def test_a_refused_document_held_twice_is_still_a_duplicate() -> None:
    snapshot = _clean()
    snapshot.held.append(Held("tuimprenta", "sin_2", (("2", "5.00"),), "issued"))
    snapshot.refused = {"tuimprenta": {"sin_2": "status_402"}}
    snapshot.dead_letters = [Letter("tuimprenta", "sin_2", "E4020: refused")]
    findings = check(EXPECTED, snapshot)
    assert findings.duplicated == ["tuimprenta sin_2: held 2 times"]


def test_status_presence_parties_and_unexplained_dead_letters_are_checked() -> None:
    snapshot = _clean()
    snapshot.held[1] = Held("quipu", "inv_2", (5000, ("v1",)), "open")  # voided at the source, not credited
    snapshot.held.append(Held("quipu", "inv_3", (100, ()), "open"))  # must be deleted
    snapshot.held.append(Held("tuimprenta", "sin_9", (), "issued"))  # never sent
    snapshot.parties["quipu"]["B12345678"] = 2
    snapshot.dead_letters = [
        Letter("tuimprenta", "sin_5", "outcome_unknown: the listing could not decide"),
        Letter("quipu", "inv_7", ""),
        Letter("quipu", "inv_7", ""),
    ]
    findings = check(EXPECTED, snapshot)
    assert findings.counts() == {"lost": 0, "duplicated": 1, "wrong": 3, "dead-lettered": 3, "refused": 0}
    assert any("inv_2: status open" in line for line in findings.wrong)
    assert any("inv_3: still held" in line for line in findings.wrong)
    assert any("sin_9" in line and "never sent" in line for line in findings.wrong)
    assert "contact B12345678: created 2 times" in findings.duplicated[0]
    assert findings.dead_lettered[0] == "quipu inv_7: no reason given"
    assert findings.dead_lettered[2] == "tuimprenta sin_5: outcome_unknown: the listing could not decide"


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
    assert voided
    assert all(e.status == "credited" for e in expected if e.source_id in voided)
    deleted = expectations(mix.latest(), "delete")
    assert all(e.presence == ABSENT for e in deleted if e.source_id in voided)


def test_the_checker_imports_nothing_of_the_product() -> None:
    # What it expects must come from BuildNexion's objects and the references, not from our mapping.
    root = Path(__file__).resolve().parents[2] / "sandbox"
    for name in ("chaos.py", "chaos_check.py", "dead_letters.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.split(".")[0] == "invoice_bridge"], name
