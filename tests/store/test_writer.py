"""The batch writer loses nothing: a row the database refuses for its data is set aside
with the reason (not retried forever, not silently dropped) and the rest is written."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from sqlalchemy.orm import Session

from abplatform.store import logstore
from abplatform.store.connection import Database
from abplatform.store.writer import BatchWriter
from tests.service.test_reports import create, request_row


def test_a_refused_row_goes_to_the_dead_letter_file_and_the_rest_is_written(
    db: Database, session: Session, tmp_path: Path
) -> None:
    view = create(session)
    good = [request_row(view, f"u{i}", "control") for i in range(9)]
    bad = dataclasses.replace(good[0], request_id="bad", latency_ms=-1.0)  # violates a CHECK

    async def scenario() -> BatchWriter:
        writer = BatchWriter(lambda r, o: logstore.write_batch(db.engine, r, o), spill_dir=tmp_path)
        await writer.start()
        for row in [*good[:4], bad, *good[4:]]:
            writer.log_request(row)
        assert await writer.flush(10.0)
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.stats.requests_written == 9 and writer.stats.dropped == 1
    [dead] = list(tmp_path.glob("dead-letter-*.jsonl"))
    [line] = dead.read_text().splitlines()
    entry = json.loads(line)
    assert entry["row"]["request_id"] == "bad" and "latency_nonnegative" in entry["reason"]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM requests").scalar() == 9


def test_flush_waits_for_the_batch_the_writer_loop_is_writing(
    db: Database, session: Session, tmp_path: Path
) -> None:
    # /flush answered "complete" while the loop still held a batch it had taken from the
    # buffer, so a caller could read the log before the last rows were in (seen as rare
    # missing rows in the routing-pattern tests).
    view = create(session)
    rows = [request_row(view, f"u{i}", "control") for i in range(10)]
    session.close()

    async def scenario() -> tuple[bool, bool]:
        writer = BatchWriter(lambda r, o: logstore.write_batch(db.engine, r, o),
                             flush_interval_s=0.02, spill_dir=tmp_path)  # fmt: skip
        await writer.start()
        with db.engine.connect() as blocker:
            blocker.exec_driver_sql("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
            for row in rows:
                writer.log_request(row)
            while writer.pending:  # the loop takes the batch, and its write waits on the lock
                await asyncio.sleep(0.01)
            while_blocked = await writer.flush(0.5)
            blocker.rollback()  # the lock goes; the batch is written
        after = await writer.flush(10.0)
        await writer.close()
        return while_blocked, after

    while_blocked, after = asyncio.run(scenario())
    assert (while_blocked, after) == (False, True)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM requests").scalar() == 10
