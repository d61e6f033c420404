"""Lines to stderr from the local stack's many threads, each written whole."""

from __future__ import annotations

import sys
import threading

_LOCK = threading.Lock()


def stderr_line(text: str) -> None:
    """Write `text` and its newline to stderr in one locked write, then flush.

    `print` writes the text and its end in two calls: with the gateway, the workers and the functions' log
    sinks writing at once, another thread's line could fall between them and leave two lines run together.
    """
    with _LOCK:
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()
