"""Every key of the state table, in one place: each kind of item, its partition key and its sort key.

One table (pk, sk, ttl) holds them all; a new kind of item gets its prefix here, so no two parts of the
bundle can ever pick the same one.
"""

from __future__ import annotations

# -- the sync ledger, one partition per destination -----------------------------------------------------------
LEDGER_PREFIX = "ledger#"
OBJECT_PREFIX = "object#"


def ledger_pk(destination: str) -> str:
    """The partition of a destination's ledger (one query lists a destination)."""
    return f"{LEDGER_PREFIX}{destination}"


def ledger_sk(object_id: str) -> str:
    """The sort key of one object's entry."""
    return f"{OBJECT_PREFIX}{object_id}"


# -- references (a platform's id for a supplier, by tax id) --------------------------------------------------


def reference_pk(destination: str, kind: str) -> str:
    """The partition of one destination's references of one kind (sort key: our key, e.g. a tax id)."""
    return f"ref#{destination}#{kind}"


def reference_lease(destination: str, kind: str, key: str) -> str:
    """The lease name held while one reference is found or created."""
    return f"ref#{destination}#{kind}#{key}"


# -- leases ---------------------------------------------------------------------------------------------------
LEASE_SK = "lease"


def lease_pk(name: str) -> str:
    """The item of a named lease."""
    return f"lease#{name}"


# -- rate-limit windows and tokens (credentials hashed, never stored) ---------------------------------------


LIMITER_SK = "window"


def limiter_pk(platform: str, credential_digest: str) -> str:
    """The item of one credential's rate-limit window."""
    return f"limiter#{platform}#{credential_digest}"


TOKEN_SK = "token"  # noqa: S105 - a sort key, not a secret


def token_pk(platform: str, credential_digest: str) -> str:
    """The item of one credential's shared access token."""
    return f"token#{platform}#{credential_digest}"


# -- BuildNexion events the receiver has enqueued (its dedupe), one item per event id ---------------------------
BUILDNEXION_EVENTS_PK = "buildnexion#webhook-events"


# -- tuimprenta's own items -----------------------------------------------------------------------------------
# Closed batches stay under TUIMPRENTA_BATCHES_PK for their retention; open ones live in a partition of their
# own, so reading the open batches reads only them (a Query bills every item it reads, filtered or not).
TUIMPRENTA_BATCHES_PK = "tuimprenta#batches"
TUIMPRENTA_OPEN_BATCHES_PK = "tuimprenta#batches#open"
BATCH_SK_PREFIX = "batch#"
# Written in the open partition once the open batches an earlier version kept among the closed ones are moved.
TUIMPRENTA_LEGACY_MOVED_SK = "legacy-open-batches-moved"
TUIMPRENTA_CANCELS_PK = "tuimprenta#cancels"
TUIMPRENTA_EVENTS_PK = "tuimprenta#webhook-events"


def batch_sk(submission_key: str) -> str:
    """The sort key of a batch item, by its submission (Idempotency-) key."""
    return f"{BATCH_SK_PREFIX}{submission_key}"


def event_sk(event_id: str) -> str:
    """The sort key of a recorded tuimprenta callback."""
    return f"event#{event_id}"


# -- the operator tools' items --------------------------------------------------------------------------------


def backfill_checkpoint_key(destination: str, since: int, until: int | None) -> tuple[str, str]:
    """(pk, sk) of one backfill run's checkpoint, so a run that stops resumes where it was."""
    return f"backfill#{destination}", f"{since}#{until or '-'}"
