"""The request journal writer: buffered, batched, paths only, found again by X-Trace-Id."""

from __future__ import annotations

from pathlib import Path

from service.adapters.store import Store
from service.adapters.store.connection import fetch_value
from service.adapters.store.journal import JournalWriter, find_by_trace
from service.adapters.wiseflow import RequestRecord
from tests.waiting import wait_until


def request(i: int, trace: str | None = None, path: str = "/flow/1/assessments") -> RequestRecord:
    return RequestRecord(float(i), "GET", path, 200, 1.5, 1, trace)


async def test_records_are_buffered_until_flushed(tmp_path: Path) -> None:
    """Nothing is written per request; flush writes the buffer in one go."""
    store = await Store.open(tmp_path / "j.sqlite3")
    try:
        journal = JournalWriter(store, batch=100)
        for i in range(10):
            journal.record(request(i))
        assert await fetch_value(store.db, "SELECT count(*) FROM request_journal") == 0
        assert await journal.flush() == 10
        assert await fetch_value(store.db, "SELECT count(*) FROM request_journal") == 10
    finally:
        await store.close()


async def test_a_full_buffer_flushes_by_itself(tmp_path: Path) -> None:
    """Reaching the batch size schedules a flush on the running loop."""
    store = await Store.open(tmp_path / "j.sqlite3")
    try:
        journal = JournalWriter(store, batch=5)
        for i in range(5):
            journal.record(request(i))

        async def flushed() -> bool:
            return await fetch_value(store.db, "SELECT count(*) FROM request_journal") == 5

        await wait_until(flushed, what="the full buffer flushed")
        await journal.close()
    finally:
        await store.close()


async def test_query_strings_are_never_stored_and_traces_are_found(tmp_path: Path) -> None:
    """A path's query string is cut off; find_by_trace returns that request."""
    store = await Store.open(tmp_path / "j.sqlite3")
    try:
        journal = JournalWriter(store)
        journal.record(request(1, "trace-a", "/flows/9/participants?offset=0&limit=100"))
        journal.record(request(2, "trace-b"))
        await journal.close()
        rows = await find_by_trace(store, "trace-a")
        assert [(r.path, r.trace_id) for r in rows] == [("/flows/9/participants", "trace-a")]
    finally:
        await store.close()
