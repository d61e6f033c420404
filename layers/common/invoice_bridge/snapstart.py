"""Lambda SnapStart: what must differ between execution environments restored from one snapshot.

The snapshot is taken after the import (INIT), so everything built there is shared by every restored
environment. The handlers build no AWS client, connection, settings or secret at import (they are made at the
first invocation, in a `@cache` factory), so none of those is in a snapshot. What is: the state of `random`,
seeded once at interpreter start; the retry jitter (invoice_bridge.http.jitter, the limiter's contention backoff,
the SQS edge's backoff) draws from it, and identical draws in every restored environment would make their retries
collide. After a restore it is reseeded from the OS.
"""

from __future__ import annotations

import importlib.util
import random

RUNTIME_HOOKS_MODULE = "snapshot_restore_py"  # shipped in Lambda's managed Python runtimes (3.12+)


def reseed_random() -> None:
    """Give `random` fresh OS entropy."""
    random.seed()


def register_after_restore_hooks() -> bool:
    """Register the after-restore hooks where the runtime offers them; False elsewhere (tests, the local stack)."""
    if importlib.util.find_spec(RUNTIME_HOOKS_MODULE) is None:
        return False
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]  # only in Lambda

    register_after_restore(reseed_random)
    return True
