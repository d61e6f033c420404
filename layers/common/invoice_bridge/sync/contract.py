"""What a destination answers when asked whether it holds our document (its marker), and the one rule.

After any unknown outcome (a crash after the call, a timeout, a lost batch, a missing result) a destination
adapter looks the document up by our marker and answers one of:

- `Found`: the platform holds a document that is provably ours (our marker on it): it is adopted;
- `Absent`: a lookup read to its end shows the platform does not hold it: only then may it be created;
- `Taken`: the platform holds another document where ours would go (a number someone else holds): ours
  can neither be adopted nor created, it fails for good with that reason;
- `Undecided`: the lookup could not tell; while the error may pass it is tried later, else the document is
  dead-lettered as "outcome unknown" with what was tried, and never sent again on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from invoice_bridge.errors import PermanentSyncError, RetryLater

OUTCOME_UNKNOWN = "outcome_unknown"


@dataclass(frozen=True)
class Found[R]:
    """The platform holds our document (`proof` says how we know it is ours)."""

    remote_id: str
    remote: R
    proof: str


@dataclass(frozen=True)
class Absent:
    """A complete lookup shows the platform does not hold the document."""

    tried: tuple[str, ...] = ()


@dataclass(frozen=True)
class Taken:
    """Another document holds our document's place (its number): neither adopted nor created again."""

    code: str
    reason: str


@dataclass(frozen=True)
class Undecided:
    """The lookup could not tell; `retryable` when asking again later may decide."""

    tried: tuple[str, ...]
    retryable: bool = False
    retry_after: float | None = field(default=None)


type Lookup[R] = Found[R] | Absent | Taken | Undecided


class OutcomeUnknown(PermanentSyncError):
    """The platform may or may not hold the document and no lookup can tell: an operator decides."""

    def __init__(self, tried: tuple[str, ...] | list[str]) -> None:
        super().__init__("outcome unknown: " + "; ".join(tried), code=OUTCOME_UNKNOWN)
        self.tried = tuple(tried)


class NotOurs(PermanentSyncError):
    """`Taken`: another document holds our document's place on the platform."""


def resolve[R](lookup: Lookup[R]) -> Found[R] | None:
    """The rule every destination follows: the document found (adopt it), None (create it), or an error.

    Only `Absent` lets a document be created again; `Taken` fails for good; `Undecided` is retried while it
    may pass (RetryLater) and is otherwise an OutcomeUnknown, never a create.
    """
    if isinstance(lookup, Found):
        return lookup
    if isinstance(lookup, Absent):
        return None
    if isinstance(lookup, Taken):
        raise NotOurs(lookup.reason, code=lookup.code)
    if lookup.retryable:
        raise RetryLater("lookup undecided: " + "; ".join(lookup.tried), retry_after=lookup.retry_after)
    raise OutcomeUnknown(lookup.tried)
