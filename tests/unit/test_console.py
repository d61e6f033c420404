"""The local stack's stderr lines: each written whole, whichever thread writes it."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox.console import stderr_line
from sandbox.stack import stderr_log_sink


class Recorder:
    """A stderr that records each write call, taking each in two halves as a buffered stream may."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.chunks: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        half = len(text) // 2
        self.chunks.append(text[:half])
        time.sleep(0)  # lets another thread run between the halves, as a stream's own I/O would
        self.chunks.append(text[half:])
        return len(text)

    def flush(self) -> None:
        self.flushes += 1


def test_a_function_log_line_is_one_write_of_the_whole_line(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr("sys.stderr", recorder)
    stderr_log_sink("WebhookReceiverFunction", '{"level":"INFO"}')
    assert recorder.writes == ['[WebhookReceiverFunction] {"level":"INFO"}\n']
    assert recorder.flushes == 1


def test_lines_written_from_many_threads_never_run_together(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr("sys.stderr", recorder)

    def writer(name: str) -> None:
        for n in range(200):
            stderr_line(f"{name} line {n}")

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(recorder.chunks).splitlines()
    assert sorted(lines) == sorted(f"t{i} line {n}" for i in range(4) for n in range(200))
