"""A process-wide store of computed results, refreshed in the background.

The stats report of a large experiment takes seconds of SQL; an operator's page must not
wait for it on every rerun or refresh. :class:`ResultStore` keeps the newest result per
key together with the *watermark* of the data it was computed from (see
:func:`abplatform.service.reports.watermark`):

* same watermark: the stored result is current and is returned at once;
* new data, and a stored result exists: the stored result is returned at once (marked
  stale) and a recomputation starts in a background thread, at most one per key and at
  most one per ``refresh_s`` seconds; the next render shows it;
* nothing stored yet, or ``refresh_s == 0``: the result is computed before returning.

Results stay bounded (least recently used first out). Keys should include everything
that changes the result besides the data: database URL, experiment name and config
version, analysis settings.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stored(Generic[T]):
    """A result, when it was computed (``time.time()``), and whether newer data exist."""

    value: T
    computed_at: float
    watermark: Hashable
    stale: bool = False


@dataclass
class _Entry:
    stored: Stored[Any] | None = None
    pending: Future[Any] | None = None
    error: BaseException | None = None


class ResultStore:
    """Newest computed value per key, recomputed in the background when data change.

    Args:
        max_entries: results kept (least recently used dropped first).
        workers: background threads (each computation opens its own database session).
    """

    def __init__(self, max_entries: int = 64, workers: int = 4) -> None:
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dash-store")
        self._max = max_entries

    def get_many(
        self,
        requests: Sequence[tuple[Hashable, Hashable, Callable[[], Any]]],
        *,
        refresh_s: float,
    ) -> list[Stored[Any]]:
        """Results for several ``(key, watermark, compute)`` triples, computed
        concurrently where they must be computed now (see the module docstring).

        Raises:
            Exception: whatever a computation that had to finish now raised.
        """
        now = time.time()
        waits: list[tuple[int, Future[Any]]] = []
        out: list[Stored[Any] | None] = [None] * len(requests)
        with self._lock:
            for i, (key, watermark, compute) in enumerate(requests):
                entry = self._entries.setdefault(key, _Entry())
                self._entries.move_to_end(key)
                stored = entry.stored
                if stored is not None and stored.watermark == watermark:
                    out[i] = stored
                    continue
                if stored is not None and refresh_s > 0:
                    out[i] = Stored(stored.value, stored.computed_at, stored.watermark, True)
                    due = now - stored.computed_at >= refresh_s
                    if entry.pending is None and due:
                        entry.pending = self._submit(key, compute, watermark)
                    continue
                if entry.pending is None:
                    entry.pending = self._submit(key, compute, watermark)
                waits.append((i, entry.pending))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        for i, future in waits:
            out[i] = future.result()
        return [s for s in out if s is not None]

    def get(
        self, key: Hashable, compute: Callable[[], T], watermark: Hashable, *, refresh_s: float
    ) -> Stored[T]:
        """The result for one key (see :meth:`get_many`)."""
        return self.get_many([(key, watermark, compute)], refresh_s=refresh_s)[0]

    def _submit(self, key: Hashable, compute: Callable[[], Any], watermark: Hashable) -> Future:
        def run() -> Stored[Any]:
            started = time.time()
            try:
                value = compute()
            except BaseException as exc:
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None:
                        entry.pending, entry.error = None, exc
                raise
            stored = Stored(value, started, watermark)
            with self._lock:
                entry = self._entries.setdefault(key, _Entry())
                entry.stored, entry.pending, entry.error = stored, None, None
            return stored

        return self._pool.submit(run)

    def clear(self) -> None:
        """Forget every stored result (running computations still finish)."""
        with self._lock:
            self._entries.clear()


__all__ = ["ResultStore", "Stored"]
