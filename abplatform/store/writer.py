"""Off-request-path logging: an asyncio background writer that batches rows into PostgreSQL.

A request handler calls :meth:`BatchWriter.log_request` (O(1), never awaits the database).
A background task flushes every ``flush_interval_s`` or as soon as ``batch_size`` rows
wait. A failed flush keeps its rows at the head of the buffer and retries with
exponential backoff (0.1 s doubling to 5 s), so a database outage delays rows but loses
none. On shutdown the writer drains the buffer; whatever cannot be written before the
deadline is spilled to JSON-lines files that the next writer replays on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from abplatform.core.records import OutcomeRecord, RequestRecord

log = logging.getLogger(__name__)

WriteFn = Callable[[Sequence[RequestRecord], Sequence[OutcomeRecord]], object]


@dataclass
class WriterStats:
    """Counters since start: rows written, failed flush attempts, last error text."""

    requests_written: int = 0
    outcomes_written: int = 0
    failed_flushes: int = 0
    last_error: str | None = None


class BatchWriter:
    """Buffers request and outcome rows and writes them in batches with ``write``.

    Args:
        write: a blocking function ``write(requests, outcomes)`` that writes one batch
            atomically (see :func:`abplatform.store.logstore.write_batch`); it runs in a thread.
        batch_size: rows per kind per flush.
        flush_interval_s: longest time (seconds) a row waits while the database is up.
        spill_dir: where rows left at shutdown are saved, and replayed from on start.
    """

    def __init__(
        self,
        write: WriteFn,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        spill_dir: Path | None = None,
    ) -> None:
        self._write = write
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._spill_dir = spill_dir
        self._requests: deque[RequestRecord] = deque()
        self._outcomes: deque[OutcomeRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return len(self._requests) + len(self._outcomes)

    def log_request(self, row: RequestRecord) -> None:
        """Queue one request record."""
        self._requests.append(row)
        if len(self._requests) >= self._batch_size:
            self._wake.set()

    def log_outcome(self, row: OutcomeRecord) -> None:
        """Queue one outcome record."""
        self._outcomes.append(row)
        if len(self._outcomes) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Replay spilled rows, then start the background flush loop."""
        self._replay_spill()
        self._task = asyncio.create_task(self._run(), name="abplatform-batch-writer")

    async def flush(self) -> None:
        """Write everything buffered now (retrying until it succeeds)."""
        while self.pending:
            if not await self._flush_once():
                await asyncio.sleep(0.1)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop, drain the buffer within ``timeout_s``, spill what is left."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout_s)
        if self.pending:
            self._spill()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            while self.pending and not self._closing:
                if await self._flush_once():
                    backoff = 0.1
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                if self.pending < self._batch_size:
                    break

    async def _flush_once(self) -> bool:
        reqs = [self._requests.popleft() for _ in range(min(self._batch_size, len(self._requests)))]
        outs = [self._outcomes.popleft() for _ in range(min(self._batch_size, len(self._outcomes)))]
        if not reqs and not outs:
            return True
        try:
            await asyncio.to_thread(self._write, reqs, outs)
        except Exception as exc:  # the database is down or refused: keep the rows
            self._requests.extendleft(reversed(reqs))
            self._outcomes.extendleft(reversed(outs))
            self.stats.failed_flushes += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("log flush failed (%d rows kept for retry): %s", len(reqs) + len(outs), exc)
            return False
        self.stats.requests_written += len(reqs)
        self.stats.outcomes_written += len(outs)
        return True

    def _spill(self) -> None:
        if self._spill_dir is None:
            log.error("%d log rows could not be written and no spill_dir is set", self.pending)
            return
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        path = self._spill_dir / f"spill-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        with path.open("w") as fh:
            for kind, rows in (("request", self._requests), ("outcome", self._outcomes)):
                for row in rows:
                    fh.write(json.dumps({"kind": kind, "row": row.to_json()}) + "\n")
        log.warning("spilled %d unwritten log rows to %s", self.pending, path)
        self._requests.clear()
        self._outcomes.clear()

    def _replay_spill(self) -> None:
        if self._spill_dir is None or not self._spill_dir.exists():
            return
        for path in sorted(self._spill_dir.glob("spill-*.jsonl")):
            for line in path.read_text().splitlines():
                item = json.loads(line)
                if item["kind"] == "request":
                    self._requests.append(RequestRecord.from_json(item["row"]))
                else:
                    self._outcomes.append(OutcomeRecord.from_json(item["row"]))
            path.unlink()
