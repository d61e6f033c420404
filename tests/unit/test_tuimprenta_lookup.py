"""Finding our invoices in tuimprenta's listing: cursors followed, the end of the listing told from a cut."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import SecretStr

from invoice_bridge.http import Deadline
from invoice_bridge.sync.contract import Absent, Found, Undecided
from invoice_bridge.tuimprenta.client import TuimprentaClient
from invoice_bridge.tuimprenta.lookup import find_ours
from tests.unit.test_tuimprenta_client import FakeSession, response


def listed(buildnexion_id: str, invoice_id: str, series: str = "A") -> dict[str, Any]:
    return {"id": invoice_id, "status": "issued", "series": series, "metadata": {"buildnexion_id": buildnexion_id}}


def page(*invoices: dict[str, Any], cursor: str | None = None) -> Any:
    return response(200, {"data": list(invoices), "next_cursor": cursor, "prev_cursor": None})


def client(answers: list[Any]) -> tuple[TuimprentaClient, FakeSession]:
    session = FakeSession(answers)
    return TuimprentaClient("https://api.tuimprenta.test/v1", SecretStr("k"), session=session), session


def test_the_listing_stops_as_soon_as_every_invoice_looked_for_is_found() -> None:
    tui, session = client([page(listed("sin_1", "inv_1"), cursor="inv_1")])
    listing = find_ours(tui, {"sin_1": "A"}, date(2026, 11, 6), Deadline(10))
    assert isinstance(listing.verdicts()["sin_1"], Found)
    assert len(session.sent) == 1  # no second page asked for


def test_each_series_is_listed_on_its_own() -> None:
    tui, session = client([page(listed("sin_a", "inv_a", "A")), page()])
    verdicts = find_ours(tui, {"sin_a": "A", "sin_b": "B"}, date(2026, 11, 6), Deadline(10)).verdicts()
    assert isinstance(verdicts["sin_a"], Found)
    assert isinstance(verdicts["sin_b"], Absent)
    assert [r["params"]["series"] for r in session.sent] == ["A", "B"]


def test_a_cursor_that_comes_back_decides_nothing() -> None:
    tui, _ = client([page(listed("x", "inv_x"), cursor="c1"), page(listed("y", "inv_y"), cursor="c1")])
    verdict = find_ours(tui, {"sin_1": "A"}, date(2026, 11, 6), Deadline(10)).verdicts()["sin_1"]
    assert isinstance(verdict, Undecided)
    assert not verdict.retryable
    assert "came back twice" in "; ".join(verdict.tried)


def test_a_listing_longer_than_the_page_cap_decides_nothing() -> None:
    tui, _ = client([page(listed("x", f"inv_{n}"), cursor=f"c{n}") for n in range(3)])
    verdict = find_ours(tui, {"sin_1": "A"}, date(2026, 11, 6), Deadline(10), max_pages=3).verdicts()["sin_1"]
    assert isinstance(verdict, Undecided)
    assert "more than 3 pages" in "; ".join(verdict.tried)


def test_an_invoice_shown_absent_is_only_one_the_listing_read_to_its_end() -> None:
    tui, session = client([page(listed("x", "inv_x"), cursor="c1"), page(listed("y", "inv_y"))])
    verdict = find_ours(tui, {"sin_1": "A"}, date(2026, 11, 6), Deadline(10)).verdicts()["sin_1"]
    assert isinstance(verdict, Absent)
    assert [r["params"].get("starting_after") for r in session.sent] == [None, "c1"]
    assert session.sent[0]["params"]["created_from"] == "2026-11-06"
