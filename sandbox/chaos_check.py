"""The chaos run's checker: what each destination should hold (from BuildNexion) against what it holds.

Pure: it takes plain records and returns findings; `sandbox.chaos` reads the peers and BuildNexion into
these records. Four kinds of finding, each of which must be zero:

- lost: a document BuildNexion has that the destination must hold and does not;
- duplicated: a document held more than once, or a contact/provider created more than once;
- wrong: a document held with other content or status than BuildNexion's latest (stale, not voided or
  canceled, present when it must be gone), a document nobody sent, or a letter without a reason;
- dead-lettered: messages on a dead-letter queue that no peer's refusal explains.

A document a peer refused for good (an injected permanent error: `FaultPlan.refused`) is expected on its
destination's dead-letter queue with a reason, whatever the destination then holds of it (nothing, or an
earlier version); it is counted apart as "refused", and lost when no letter carries it, unless the destination
holds it once as BuildNexion's latest (the refusal was one attempt's, unseen by the product, and a later
attempt was taken).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

REQUIRED = "required"  # must be held exactly once, with this content and status
OPTIONAL = "optional"  # may be absent; if held, once and as expected (a sales invoice canceled before issue)
ABSENT = "absent"  # must not be held (a voided invoice in Quipu's delete mode)


@dataclass(frozen=True)
class Expected:
    """One document as BuildNexion's latest version says a destination must hold it."""

    destination: str
    source_id: str
    content: Hashable
    status: str
    presence: str = REQUIRED


@dataclass(frozen=True)
class Held:
    """One document as a destination holds it, reduced to what is compared."""

    destination: str
    source_id: str
    content: Hashable
    status: str


@dataclass(frozen=True)
class Letter:
    """One message on a destination's dead-letter queue: the BuildNexion object it is about, and why."""

    destination: str
    source_id: str
    reason: str


@dataclass
class Snapshot:
    """Everything held, after the stack settled."""

    held: list[Held] = field(default_factory=list)
    # destination -> how many contacts/providers it holds per key (tax id)
    parties: dict[str, Counter[str]] = field(default_factory=dict)
    # every message on the dead-letter queues
    dead_letters: list[Letter] = field(default_factory=list)
    # destination -> BuildNexion object id -> why that destination's peer refused it for good
    refused: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Findings:
    """What the checker found; `ok` only when the four lists of faults are empty (`refused` is expected)."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # refused for good by a peer and dead-lettered, as expected
    checked: int = 0

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, wrong or dead-lettered without a refusal that explains it."""
        return not (self.lost or self.duplicated or self.wrong or self.dead_lettered)

    def counts(self) -> dict[str, int]:
        """The four figures of faults, then the refusals dead-lettered as expected."""
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "wrong": len(self.wrong),
            "dead-lettered": len(self.dead_lettered),
            "refused": len(self.refused),
        }

    def report(self) -> str:
        """One line of figures, then one line per finding."""
        counts = self.counts()
        figures = ", ".join(f"{counts[name]} {name}" for name in ("lost", "duplicated", "wrong", "dead-lettered"))
        lines = [
            f"{self.checked} documents checked: {figures}; "
            f"{counts['refused']} refused for good by a peer and dead-lettered as expected"
        ]
        for name, found in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("wrong", self.wrong),
            ("dead-lettered", self.dead_lettered),
            ("refused", self.refused),
        ):
            lines.extend(f"  {name}: {line}" for line in found)
        return "\n".join(lines)


def check(expected: Sequence[Expected], snapshot: Snapshot) -> Findings:
    """Compare every expected document with what is held; report every difference."""
    findings = Findings(checked=len(expected))
    held: dict[tuple[str, str], list[Held]] = defaultdict(list)
    for document in snapshot.held:
        held[(document.destination, document.source_id)].append(document)
    letters: dict[tuple[str, str], list[Letter]] = defaultdict(list)
    for letter in snapshot.dead_letters:
        letters[(letter.destination, letter.source_id)].append(letter)
    refused = {
        (destination, source_id): reason
        for destination, reasons in snapshot.refused.items()
        for source_id, reason in reasons.items()
    }
    by_key = {(e.destination, e.source_id): e for e in expected}
    for (destination, source_id), reason in sorted(refused.items()):
        name = f"{destination} {source_id}"
        mine = letters.pop((destination, source_id), [])
        if not mine and _held_as_expected(by_key.get((destination, source_id)), held.get((destination, source_id), [])):
            # The refusal was one attempt's: the product never learnt of it (e.g. the result file that carried it
            # was unreadable), found the document absent and sent it again, and the platform took it.
            findings.refused.append(f"{name}: refused once ({reason}); sent again and held as BuildNexion's latest")
        elif not mine:
            findings.lost.append(f"{name}: refused for good ({reason}) but not on the dead-letter queue")
        elif not all(letter.reason.strip() for letter in mine):
            findings.wrong.append(f"{name}: refused for good ({reason}); dead-lettered without a reason")
        else:
            findings.refused.append(f"{name}: refused for good ({reason}); dead-lettered: {mine[0].reason}")
    wanted = {(e.destination, e.source_id) for e in expected}
    for want in expected:
        key = (want.destination, want.source_id)
        name = f"{want.destination} {want.source_id}"
        found = held.get(key, [])
        if len(found) > 1:
            findings.duplicated.append(f"{name}: held {len(found)} times")
            continue
        if key in refused:
            continue  # it holds nothing of it, or the version before the refusal: either is right
        if not found:
            if want.presence == REQUIRED:
                findings.lost.append(f"{name}: not held (BuildNexion: {want.status})")
            continue
        (have,) = found
        if want.presence == ABSENT:
            findings.wrong.append(f"{name}: still held ({have.status}); BuildNexion's is {want.status}")
        elif have.status != want.status:
            findings.wrong.append(f"{name}: status {have.status}, BuildNexion's is {want.status}")
        elif have.content != want.content:
            findings.wrong.append(f"{name}: content {have.content!r}, BuildNexion's latest is {want.content!r}")
    for key, found in sorted(held.items()):
        if key not in wanted:
            findings.wrong.append(f"{key[0]} {key[1]}: held {len(found)} time(s), never sent")
    for destination, parties in sorted(snapshot.parties.items()):
        findings.duplicated.extend(
            f"{destination} contact {key}: created {count} times" for key, count in sorted(parties.items()) if count > 1
        )
    findings.dead_lettered.extend(
        f"{letter.destination} {letter.source_id}: {letter.reason or 'no reason given'}"
        for key in sorted(letters)
        for letter in letters[key]
    )
    return findings


def _held_as_expected(want: Expected | None, found: Sequence[Held]) -> bool:
    """Held exactly once, with BuildNexion's latest content and status."""
    if want is None or want.presence == ABSENT or len(found) != 1:
        return False
    return found[0].status == want.status and found[0].content == want.content


def count_parties(keys: Sequence[str] | Mapping[str, str]) -> Counter[str]:
    """How many contacts/providers per key (given the key of each)."""
    return Counter(keys.values() if isinstance(keys, Mapping) else keys)
