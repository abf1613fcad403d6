"""Requests from many threads answered in batches by one worker thread.

The model runs in the worker alone (no two forward passes compete for the cores); whatever
arrived while a batch ran makes the next batch, up to `batch_size`, so a lone request
waits for nobody and a crowd shares forward passes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


class Batcher(Generic[T, R]):
    """Runs `work` over batches of submitted items in one thread; `work` returns one result
    per item, in order. An exception in `work` fails every request of that batch."""

    def __init__(self, work: Callable[[list[T]], list[R]], batch_size: int, name: str = "ragft-batcher"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        self.work = work
        self.batch_size = batch_size
        self._queue: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Queue an item; the future holds its result once its batch has run."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_size:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._run(batch)  # type: ignore[arg-type]
            if stop:
                return

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self.work([item for item, _ in live])
        except BaseException as e:  # the requests fail; the worker serves the next batch
            for _, f in live:
                f.set_exception(e)
            return
        for (_, f), result in zip(live, results):
            f.set_result(result)
