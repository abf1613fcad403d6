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
    per item, in order. A batch that fails is run again item by item, so an exception
    fails only the request that caused it."""

    def __init__(self, work: Callable[[list[T]], list[R]], batch_size: int, name: str = "ragft-batcher"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        self.work = work
        self.batch_size = batch_size
        self._queue: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Queue an item; the future holds its result once its batch has run."""
        future: Future[R] = Future()
        with self._lock:  # nothing is queued behind the stop
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
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
        if live:
            self._work(live)

    def _work(self, live: list[tuple[T, Future[R]]]) -> None:
        try:
            results = self.work([item for item, _ in live])
        except Exception as e:
            if len(live) == 1:  # the request fails; the worker serves the next batch
                live[0][1].set_exception(e)
            else:  # which of them failed? each alone
                for one in live:
                    self._work([one])
            return
        for (_, f), result in zip(live, results):
            f.set_result(result)
