"""Finding our invoices in tuimprenta when a batch left their outcome unknown: list, match our marker.

`GET /invoices` by `series` and `created_from`, page after page through `next_cursor` (sent back as
`starting_after`), matching `metadata.buildnexion_id`. Only a listing read to its end shows an invoice is
not there; a listing cut short (an error, too many pages, a cursor that repeats) decides nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from invoice_bridge.errors import SyncError
from invoice_bridge.http import Deadline
from invoice_bridge.sync.contract import Absent, Found, Lookup, Undecided
from invoice_bridge.tuimprenta.client import Invoice, TuimprentaClient

# 40 pages of 50: 2,000 invoices of one series since the claim. Beyond that the listing decides nothing
# (the invoice goes to the DLQ as "outcome unknown") rather than spending a run's whole rate limit.
MAX_PAGES = 40


@dataclass
class Listing:
    """What a listing showed: the invoices found by our id, the ids shown absent, and what is undecided."""

    found: dict[str, Invoice] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    undecided: dict[str, str] = field(default_factory=dict)  # object id → why the listing could not decide
    retryable: bool = False  # whether an undecided answer may decide later (a 5xx, a 429, a timeout)
    tried: list[str] = field(default_factory=list)  # what was asked, for the dead-letter message
    calls: int = 0

    def verdicts(self) -> dict[str, Lookup[Invoice]]:
        """Each invoice looked up, as the engine's contract reads it (Found, Absent or Undecided)."""
        verdicts: dict[str, Lookup[Invoice]] = {
            o: Found(i.id, i, f"metadata.buildnexion_id {o}") for o, i in self.found.items()
        }
        verdicts.update({o: Absent(tuple(self.tried)) for o in self.absent})
        verdicts.update({o: Undecided(tuple(self.tried), retryable=self.retryable) for o in self.undecided})
        return verdicts


def find_ours(
    client: TuimprentaClient,
    wanted: Mapping[str, str],
    created_from: date,
    deadline: Deadline,
    *,
    max_pages: int = MAX_PAGES,
) -> Listing:
    """Look up each of `wanted` (object id → series) among the invoices of its series since `created_from`."""
    lookup = Listing()
    by_series: dict[str, set[str]] = {}
    for object_id, series in wanted.items():
        by_series.setdefault(series, set()).add(object_id)
    for series, ids in sorted(by_series.items()):
        missing = set(ids)
        cursor: str | None = None
        seen: set[str] = set()
        pages = 0
        why: str | None = None
        while missing:
            if pages >= max_pages:
                why = f"more than {max_pages} pages of series {series} since {created_from.isoformat()}"
                break
            try:
                page = client.invoices(
                    series=series, created_from=created_from, starting_after=cursor, deadline=deadline
                )
            except SyncError as exc:
                why = f"GET /invoices?series={series}: {exc.message}"[:300]
                lookup.retryable = lookup.retryable or exc.retryable
                break
            pages += 1
            lookup.calls += 1
            for invoice in page.data:
                ours = invoice.buildnexion_id
                if ours in missing:
                    lookup.found[ours] = invoice
                    missing.discard(ours)
            if not page.next_cursor or not page.data:
                break
            if page.next_cursor in seen:
                why = f"the cursor {page.next_cursor} of series {series} came back twice"
                break
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        lookup.tried.append(
            f"GET /invoices series={series} created_from={created_from.isoformat()}: {pages} page(s)"
            + (f", {why}" if why else ", read to the end")
        )
        if why is None:
            lookup.absent.update(missing)
        else:
            lookup.undecided.update(dict.fromkeys(missing, why))
    return lookup
