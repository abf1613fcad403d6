"""Measuring what a stage costs: wall time and peak resident memory."""

from __future__ import annotations

import threading
import time
from types import TracebackType


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def _cuda() -> object | None:
    """torch.cuda when torch is already loaded and a GPU is present (never imports torch)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


class PeakMemory:
    """Samples RSS in a background thread while the block runs; `.peak` in bytes, and
    `.gpu_peak` (bytes allocated by torch on CUDA) where a GPU is used, else None."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self.gpu_peak: int | None = None
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._start = time.perf_counter()
        self.peak = rss_bytes()
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()  # type: ignore[attr-defined]
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        cuda = _cuda()
        if cuda is not None:
            self.gpu_peak = int(cuda.max_memory_allocated())  # type: ignore[attr-defined]
        self.seconds = time.perf_counter() - self._start
