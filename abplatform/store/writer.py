"""Off-request-path logging: an asyncio background writer that batches rows into PostgreSQL.

A request handler calls :meth:`BatchWriter.log_request` (O(1), never awaits the database).
A background task writes as soon as ``batch_size`` rows wait, or every
``flush_interval_s``; with a backlog it takes up to ``max_batch_size`` rows per write.

Nothing is lost:

* **Outage.** A failed write keeps its rows; they are spooled to a JSON-lines file in
  ``spill_dir`` (so memory stays bounded and a killed process keeps them) and retried with
  exponential backoff with jitter (0.1 s doubling to 5 s). When the database answers again,
  spooled files are replayed and deleted. Rows are keyed (request id, outcome key) and the
  log store ignores keys it already has, so a replay after a lost acknowledgement writes
  each row exactly once.
* **Bad rows.** A batch the database refuses for its data (not for being unreachable) is
  split in halves until the refused rows are alone; those are set aside, with the
  database's reason, in ``dead-letter-*.jsonl`` files in ``spill_dir`` (never replayed:
  an operator reads them) and counted (``stats.dropped``); the rest is written.
* **Shutdown.** :meth:`close` drains within a deadline and spools what is left; the next
  writer on the same ``spill_dir`` replays it.
* **Feedback served elsewhere.** Outcomes whose request row is not written yet (another
  router runner served it) come back from the write as unresolved and are retried until
  ``unresolved_ttl_s``, then dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abplatform.core.records import OutcomeRecord, RequestRecord

log = logging.getLogger(__name__)

WriteFn = Callable[[Sequence[RequestRecord], Sequence[OutcomeRecord]], object]
"""Writes one batch atomically; may return an object with ``unresolved`` outcome keys."""

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
RESOLVE_RETRY_S = 0.5


@dataclass
class WriterStats:
    """Counters since start: rows written, failed writes, rows spooled to disk, rows
    replayed from disk, rows dropped (refused by the database, or feedback whose request
    never appeared), and the last error text."""

    requests_written: int = 0
    outcomes_written: int = 0
    failed_flushes: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    last_error: str | None = None


def is_data_error(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (retrying cannot help), as opposed
    to being unreachable or busy."""
    import sqlalchemy.exc as sa_exc

    return isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError | sa_exc.ProgrammingError)


class BatchWriter:
    """Buffers request and outcome rows and writes them in batches with ``write``.

    Args:
        write: a blocking function ``write(requests, outcomes)`` that writes one batch
            atomically (see :func:`abplatform.store.logstore.write_batch`); it runs in a
            thread. It may return an object whose ``unresolved`` lists outcome keys that
            could not be written yet (their request row is not there yet).
        batch_size: rows that trigger a write before the interval is up.
        max_batch_size: most rows per kind in one write (a backlog is written in these).
        flush_interval_s: longest time (seconds) a row waits while the database is up.
        spill_dir: where rows are spooled during an outage and at shutdown, and replayed
            from (also files other writers left there). None: kept in memory only.
        unresolved_ttl_s: how long feedback whose request row is missing is retried.
    """

    def __init__(
        self,
        write: WriteFn,
        *,
        batch_size: int = 500,
        max_batch_size: int = 20_000,
        flush_interval_s: float = 0.2,
        spill_dir: Path | None = None,
        unresolved_ttl_s: float = 600.0,
    ) -> None:
        self._write = write
        self._batch_size = batch_size
        self._max_batch = max(batch_size, max_batch_size)
        self._interval = flush_interval_s
        self._spill_dir = spill_dir
        self._unresolved_ttl = unresolved_ttl_s
        self._requests: deque[RequestRecord] = deque()
        self._outcomes: deque[OutcomeRecord] = deque()
        self._waiting: dict[str, tuple[float, OutcomeRecord]] = {}  # unresolved feedback
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._backoff = BACKOFF_START_S
        self.stats = WriterStats()

    # -- the request path ------------------------------------------------------------------

    def log_request(self, row: RequestRecord) -> None:
        """Queue one request record."""
        self._requests.append(row)
        if len(self._requests) == self._batch_size:
            self._wake.set()

    def log_outcome(self, row: OutcomeRecord) -> None:
        """Queue one outcome record."""
        self._outcomes.append(row)
        if len(self._outcomes) == self._batch_size:
            self._wake.set()

    # -- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows held in memory and not yet written (including feedback waiting for its
        request row)."""
        return len(self._requests) + len(self._outcomes) + len(self._waiting)

    def spool_files(self) -> list[Path]:
        """Spooled files waiting to be replayed (this writer's and any other's)."""
        if self._spill_dir is None or not self._spill_dir.exists():
            return []
        return sorted(self._spill_dir.glob("spill-*.jsonl"))

    def spooled_rows(self) -> int:
        """Rows in spool files waiting to be replayed."""
        total = 0
        for path in self.spool_files():
            with contextlib.suppress(OSError), path.open("rb") as fh:
                total += sum(1 for _ in fh)
        return total

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background loop (it also replays spooled files)."""
        self._task = asyncio.create_task(self._run(), name="abplatform-batch-writer")

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Write everything buffered and spooled now, for at most ``timeout_s`` seconds.

        Returns:
            True if nothing is left (feedback still waiting for its request row aside).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            while self._requests or self._outcomes or self.spool_files():
                if not await self._step() and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    break
            # The loop may hold a batch it took from the buffer: wait for its write (a
            # failed one puts its rows back, and they are written above).
            if not await self._settled(deadline) or time.monotonic() >= deadline:
                break
            if not (self._requests or self._outcomes or self.spool_files()):
                break
        return not (self._requests or self._outcomes or self.spool_files() or self._lock.locked())

    async def _settled(self, deadline: float) -> bool:
        """Wait until no batch is being written (or until ``deadline``; then False)."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())), self._lock:
                return True
        except TimeoutError:
            return False

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop, drain the buffer within ``timeout_s``, spool what is left."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # Cancelling the loop mid-write would lose the batch it holds if that write
            # failed: let it finish first (within the time given).
            await self._settled(time.monotonic() + timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush(timeout_s)
        self._requeue_unresolved(force=True)
        if self._requests or self._outcomes:
            self._spool()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            self._requeue_unresolved()
            while not self._closing and (self._requests or self._outcomes or self.spool_files()):
                if await self._step():
                    self._backoff = BACKOFF_START_S
                    if len(self._requests) < self._batch_size and not self.spool_files():
                        break
                else:
                    await asyncio.sleep(self._backoff * random.uniform(0.5, 1.5))
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    async def _step(self) -> bool:
        """Write one batch from memory, else replay one spooled file. False on failure
        (the rows are spooled, or kept in memory without a spill folder)."""
        async with self._lock:
            if self._requests or self._outcomes:
                n_r = min(self._max_batch, len(self._requests))
                n_o = min(self._max_batch, len(self._outcomes))
                reqs = [self._requests.popleft() for _ in range(n_r)]
                outs = [self._outcomes.popleft() for _ in range(n_o)]
                if await self._write_checked(reqs, outs):
                    return True
                self._requests.extendleft(reversed(reqs))
                self._outcomes.extendleft(reversed(outs))
                if self._spill_dir is not None:
                    self._spool()
                return False
            files = self.spool_files()
            return await self._replay(files[0]) if files else True

    async def _write_checked(
        self, reqs: list[RequestRecord], outs: list[OutcomeRecord], *, replay: bool = False
    ) -> bool:
        """Write a batch; split it when the database refuses some rows. False when the
        database cannot be reached (nothing of the batch is written)."""
        try:
            result = await asyncio.to_thread(self._write, reqs, outs)
        except Exception as exc:
            self.stats.failed_flushes += 1
            self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:500]}"
            if not is_data_error(exc):
                log.warning("log write failed (%d rows kept): %s", len(reqs) + len(outs), exc)
                return False
            return await self._split(reqs, outs, exc, replay=replay)
        self._count_written(reqs, outs, result, replay=replay)
        return True

    async def _split(
        self, reqs: list[RequestRecord], outs: list[OutcomeRecord], exc: Exception, *, replay: bool
    ) -> bool:
        if len(reqs) + len(outs) == 1:
            self.stats.dropped += 1
            self._dead_letter([*reqs, *outs], exc)
            return True
        half_r, half_o = len(reqs) // 2, len(outs) // 2
        if len(reqs) + len(outs) > 1 and half_r == 0 and half_o == 0:
            half_r = len(reqs)  # one request and one outcome: try each alone
        ok = await self._write_checked(reqs[:half_r], outs[:half_o], replay=replay)
        return ok and await self._write_checked(reqs[half_r:], outs[half_o:], replay=replay)

    def _count_written(
        self, reqs: list[RequestRecord], outs: list[OutcomeRecord], result: Any, *, replay: bool
    ) -> None:
        unresolved = set(getattr(result, "unresolved", ()) or ())
        now = time.monotonic()
        for o in outs:
            if o.outcome_key in unresolved:
                first = self._waiting.get(o.outcome_key, (now, o))[0]
                self._waiting[o.outcome_key] = (first, o)
            else:
                self._waiting.pop(o.outcome_key, None)
        refused = int(getattr(result, "refused", 0) or 0)
        if refused:
            self.stats.dropped += refused
            log.error("%d log rows refused: their experiment phase does not exist", refused)
        orphans = int(getattr(result, "refused_outcomes", 0) or 0)
        if orphans:
            self.stats.dropped += orphans
            log.warning("%d feedback rows dropped: their request had no experiment", orphans)
        self.stats.requests_written += len(reqs) - refused
        self.stats.outcomes_written += len(outs) - len(unresolved) - orphans
        if replay:
            self.stats.replayed += len(reqs) + len(outs) - len(unresolved)

    def _requeue_unresolved(self, force: bool = False) -> None:
        """Put feedback waiting for its request row back in the queue (after a pause);
        drop what waited longer than ``unresolved_ttl_s``."""
        now = time.monotonic()
        for key, (first, row) in list(self._waiting.items()):
            if now - first > self._unresolved_ttl:
                del self._waiting[key]
                self.stats.dropped += 1
                log.warning("feedback for request %s dropped: no such request", row.request_id)
            elif force or now - first >= RESOLVE_RETRY_S:
                del self._waiting[key]
                self._outcomes.append(row)

    # -- spool files -----------------------------------------------------------------------

    def _dead_letter(self, rows: Sequence[RequestRecord | OutcomeRecord], exc: Exception) -> None:
        """Keep rows the database refused, with its reason, where an operator finds them."""
        log.error("log rows refused by the database, set aside: %s (%s)", rows, exc)
        if self._spill_dir is None:
            return
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        path = self._spill_dir / f"dead-letter-{time.strftime('%Y%m%d')}-{os.getpid()}.jsonl"
        with path.open("a") as fh:
            for row in rows:
                kind = "request" if isinstance(row, RequestRecord) else "outcome"
                reason = f"{type(exc).__name__}: {str(exc)[:500]}"
                fh.write(json.dumps({"kind": kind, "row": row.to_json(), "reason": reason}) + "\n")

    def _spool(self) -> None:
        """Move every buffered row to a new spool file (written whole, then renamed)."""
        if self._spill_dir is None:
            log.error("%d log rows could not be written and no spill_dir is set", self.pending)
            return
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        name = f"spill-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        tmp = self._spill_dir / f".{name}.tmp"
        n = len(self._requests) + len(self._outcomes)
        with tmp.open("w") as fh:
            for kind, rows in (("request", self._requests), ("outcome", self._outcomes)):
                for row in rows:
                    fh.write(json.dumps({"kind": kind, "row": row.to_json()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(self._spill_dir / name)
        self.stats.spooled += n
        log.warning("spooled %d unwritten log rows to %s", n, self._spill_dir / name)
        self._requests.clear()
        self._outcomes.clear()

    async def _replay(self, path: Path) -> bool:
        """Write one spooled file in batches; delete it once all of it is written."""
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:  # another writer replayed it
            return True
        reqs = [RequestRecord.from_json(i["row"]) for i in map(json.loads, lines)
                if i["kind"] == "request"]  # fmt: skip
        outs = [OutcomeRecord.from_json(i["row"]) for i in map(json.loads, lines)
                if i["kind"] == "outcome"]  # fmt: skip
        for start in range(0, max(len(reqs), len(outs)), self._max_batch):
            chunk_r = reqs[start : start + self._max_batch]
            chunk_o = outs[start : start + self._max_batch]
            if not await self._write_checked(chunk_r, chunk_o, replay=True):
                return False  # the file stays; written chunks are skipped next time
        path.unlink(missing_ok=True)
        log.info("replayed %d spooled log rows from %s", len(lines), path)
        return True


__all__ = ["BatchWriter", "WriteFn", "WriterStats", "is_data_error"]
