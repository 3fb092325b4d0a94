"""The SQLite store against real files: schema, migrations, transactions, readiness, the bounded journal."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import types
from pathlib import Path

import pytest

from service.adapters.store import Store, StoreError
from service.adapters.store.connection import fetch_value, schema_version
from service.adapters.store.inbox import Inbox, Recorded
from service.adapters.store.migrations import JOURNAL_LIMIT, LATEST_VERSION, MIGRATIONS
from service.adapters.store.unit import SqliteUnit, SqliteUnitOfWork
from service.core.planner import FlowPlan
from service.core.records import Flow
from service.core.webhook_events import WebhookEvent
from tests.integration.webhook_helpers import ALL_DELIVERIES
from tests.waiting import wait_until

TABLES = {
    "flows",
    "flow_state_clock",
    "flow_plan",
    "participants",
    "assessments",
    "sync_runs",
    "checkpoints",
    "outbox",
    "inbox",
    "inbox_deliveries",
    "request_journal",
    "run_requests",
}


async def test_open_creates_every_table_at_the_latest_version(tmp_path: Path) -> None:
    """A fresh file gets the whole schema and user_version = the latest migration."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        async with store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            names = {row[0] for row in await cur.fetchall()}
        assert names >= TABLES
        assert await schema_version(store.db) == LATEST_VERSION
    finally:
        await store.close()


async def test_pragmas_are_wal_with_foreign_keys(tmp_path: Path) -> None:
    """The connection runs in WAL mode with foreign keys enforced."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        assert await fetch_value(store.db, "PRAGMA journal_mode") == "wal"
        assert await fetch_value(store.db, "PRAGMA foreign_keys") == 1
        with pytest.raises(StoreError, match="FOREIGN KEY"):  # the driver's IntegrityError, as ours
            async with store.transaction() as db:
                await db.execute("INSERT INTO inbox_deliveries VALUES ('d1', 999, 0)")
    finally:
        await store.close()


async def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    """A second open of a migrated file keeps its rows and version."""
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    async with store.transaction() as db:
        await db.execute("INSERT INTO checkpoints VALUES ('k', 'v', 0)")
    await store.close()
    store = await Store.open(path)
    try:
        assert await fetch_value(store.db, "SELECT value FROM checkpoints WHERE key = 'k'") == "v"
        assert await schema_version(store.db) == LATEST_VERSION
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer program is not touched."""
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)


async def test_an_exception_rolls_the_transaction_back(tmp_path: Path) -> None:
    """Nothing written inside a failed transaction remains."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:

        async def fail_after_insert() -> None:
            async with store.transaction() as db:
                await db.execute("INSERT INTO checkpoints VALUES ('k', 'v', 0)")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await fail_after_insert()
        assert await fetch_value(store.db, "SELECT count(*) FROM checkpoints") == 0
    finally:
        await store.close()


async def test_concurrent_transactions_never_interleave(tmp_path: Path) -> None:
    """Tasks that read-modify-write under `transaction()` lose no update."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        async with store.transaction() as db:
            await db.execute("INSERT INTO checkpoints VALUES ('n', '0', 0)")

        async def increment() -> None:
            async with store.transaction() as db:
                value = int(str(await fetch_value(db, "SELECT value FROM checkpoints WHERE key = 'n'")))
                await asyncio.sleep(0)  # yield mid-transaction: another task must not get in
                await db.execute("UPDATE checkpoints SET value = ? WHERE key = 'n'", (str(value + 1),))

        await asyncio.gather(*(increment() for _ in range(50)))
        assert await fetch_value(store.db, "SELECT value FROM checkpoints WHERE key = 'n'") == "50"
    finally:
        await store.close()


async def test_a_nested_transaction_joins_the_outer_one(tmp_path: Path) -> None:
    """A nested `transaction()` in the same task does not deadlock and commits with the outer one."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:

        async def fail_after_inner_block() -> None:
            async with store.transaction():
                async with store.transaction() as inner:
                    await inner.execute("INSERT INTO checkpoints VALUES ('k', 'v', 0)")
                raise RuntimeError("outer fails after the inner block")

        with pytest.raises(RuntimeError):
            await fail_after_inner_block()
        assert await fetch_value(store.db, "SELECT count(*) FROM checkpoints") == 0
    finally:
        await store.close()


async def test_a_failed_statement_is_a_store_error_and_rolls_back(tmp_path: Path) -> None:
    """A driver error in a transaction or a read comes out as StoreError (raised from it), so the core can
    classify it without sqlite3; the transaction's earlier writes are rolled back."""
    store = await Store.open(tmp_path / "db.sqlite3")

    async def write_then_fail() -> None:
        async with store.transaction() as db:
            await db.execute("INSERT INTO checkpoints VALUES ('k', '1', 0)")
            await db.execute("SELECT * FROM no_such_table")

    async def write_on_the_reader() -> None:
        async with store.read() as db:  # the read connection refuses writes
            await db.execute("INSERT INTO checkpoints VALUES ('k', '1', 0)")

    try:
        with pytest.raises(StoreError, match="no such table") as caught:
            await write_then_fail()
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        assert await fetch_value(store.db, "SELECT count(*) FROM checkpoints") == 0
        with pytest.raises(StoreError, match="readonly"):
            await write_on_the_reader()
    finally:
        await store.close()


async def test_a_writer_locked_out_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    """Another process holding the write lock longer than the busy timeout: StoreError, not sqlite3's own."""
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    await store.db.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(path, isolation_level=None)

    async def write() -> None:
        async with store.transaction():
            pass

    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            await write()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()


async def test_ping_passes_on_a_writable_database(tmp_path: Path) -> None:
    """Readiness: a migrated, writable database pings."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        await store.ping()
    finally:
        await store.close()


async def test_ping_fails_when_another_writer_holds_the_lock(tmp_path: Path) -> None:
    """Readiness fails (rather than hangs for ever) when the database cannot be written."""
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    await store.db.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="not writable"):
            await store.ping()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()


async def test_the_request_journal_keeps_only_the_newest_rows(tmp_path: Path) -> None:
    """The journal is bounded: after more than the limit of inserts, only the newest remain."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        rows = [(float(i), "GET", "/flow/1", 200, 1.0, 1, f"t{i}") for i in range(JOURNAL_LIMIT + 25)]
        async with store.transaction() as db:
            await db.executemany(
                "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt, trace_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        count = await fetch_value(store.db, "SELECT count(*) FROM request_journal")
        oldest = await fetch_value(store.db, "SELECT trace_id FROM request_journal ORDER BY id LIMIT 1")
        assert (count, oldest) == (JOURNAL_LIMIT, "t25")
    finally:
        await store.close()


async def test_the_inbox_migration_keeps_every_event_and_delivery_in_order_of_arrival(tmp_path: Path) -> None:
    """A database whose inbox was keyed on the sequence keeps its events (ids in order of arrival, whatever
    their sequences) and every delivery id with the event it delivered; a reused sequence then fits."""
    path = tmp_path / "v9.sqlite3"
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:9], 1):
            db.executescript(f"{script}\nPRAGMA user_version = {number};")
        db.executemany(
            "INSERT INTO inbox (sequence, event, flow_id, participant_id, event_timestamp, body, received_at,"
            " status) VALUES (?, 'FINAL_GRADE', 1, 2, 100, x'7b7d', ?, ?)",
            [(10**12, 5.0, "done"), (14, 7.0, "pending"), (3, 6.0, "dead")],
        )
        db.executemany(
            "INSERT INTO inbox_deliveries (delivery_id, sequence, received_at) VALUES (?, ?, ?)",
            [("a", 10**12, 5.0), ("b", 14, 7.0), ("c", 3, 6.0), ("d", 14, 8.0)],
        )
    db.close()
    store = await Store.open(path)
    try:
        assert await schema_version(store.db) == LATEST_VERSION
        async with store.db.execute("SELECT id, sequence, status FROM inbox ORDER BY id") as cursor:
            assert [tuple(r) for r in await cursor.fetchall()] == [
                (1, 10**12, "done"),
                (2, 3, "dead"),
                (3, 14, "pending"),
            ]
        async with store.db.execute(ALL_DELIVERIES) as cursor:  # each event's first in its row since v12
            assert sorted(tuple(r) for r in await cursor.fetchall()) == [("a", 1), ("b", 3), ("c", 2), ("d", 3)]
        assert await fetch_value(store.db, "SELECT group_concat(delivery_id) FROM inbox_deliveries") == "d"
        reused = WebhookEvent("e", 14, "FLOW_STATE_UPDATED", 100, 9, None)
        assert await Inbox(store).record(reused, b"{}", "pending", 9.0) is Recorded.REUSED
        assert await fetch_value(store.db, "SELECT max(id) FROM inbox WHERE sequence = 14") == 4
    finally:
        await store.close()


async def test_exclusive_is_held_across_connections_until_released(tmp_path: Path) -> None:
    """A second holder of the same named lock (another process, here another store) waits for the first."""
    path = tmp_path / "db.sqlite3"
    one, two = await Store.open(path), await Store.open(path)
    order: list[str] = []
    try:

        async def second() -> None:
            async with SqliteUnitOfWork(two).exclusive("sync", poll=0.01):
                order.append("second")

        async with SqliteUnitOfWork(one).exclusive("sync"):
            waiter = asyncio.create_task(second())
            await asyncio.sleep(0)  # a yield: the waiter's first attempt runs (and must fail) right now
            assert not waiter.done()
            order.append("first done")
        await waiter
        assert order == ["first done", "second"]
    finally:
        await one.close()
        await two.close()


async def test_reads_never_see_an_open_transaction(tmp_path: Path) -> None:
    """A read beside another task's open transaction sees the committed rows only, then the commit."""
    store = await Store.open(tmp_path / "db.sqlite3")
    uow = SqliteUnitOfWork(store)
    inside, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO inbox (sequence, event, event_timestamp, body, received_at)"
                " VALUES (1, 'X', 1, x'', 0)"
            )
            inside.set()
            await release.wait()

    try:
        task = asyncio.create_task(writer())
        await inside.wait()
        async with uow.read() as unit:
            assert (await unit.inbox.pending(1.0), await unit.inbox.counts()) == ([], {"deliveries": 0})
        release.set()
        await task
        async with uow.read() as unit:
            assert [row.sequence for row in await unit.inbox.pending(1.0)] == [1]
    finally:
        await store.close()


async def test_checkpoints_have_one_encoding_and_old_markers_still_read(tmp_path: Path) -> None:
    """Markers are written as JSON like every checkpoint; a marker an older version wrote with repr() reads."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        async with store.transaction() as db:
            checkpoints = SqliteUnit(db).checkpoints
            await checkpoints.set("webhooks:heartbeat", 1.5e9, 1.5e9)
            await db.execute("INSERT INTO checkpoints VALUES ('webhooks:old', 'inf', 0)")
            assert await checkpoints.get("webhooks:heartbeat") == 1.5e9
            assert await checkpoints.get("webhooks:old") == float("inf")
        assert await fetch_value(
            store.db, "SELECT value FROM checkpoints WHERE key = 'webhooks:heartbeat'"
        ) == ("1500000000.0")
    finally:
        await store.close()


async def test_vanished_flows_are_the_unlisted_ones_not_yet_fetched_for_the_last_time(tmp_path: Path) -> None:
    """The rule lives in this SQL alone: seen before the pass began (strictly) and last fetch not done."""
    store = await Store.open(tmp_path / "db.sqlite3")
    pass_started = 100.0
    # flow id: (seen_at, final_fetch_done)
    rows = {1: (99.0, False), 2: (100.0, False), 3: (150.0, False), 4: (99.0, True), 5: (10.0, False)}
    try:
        async with store.transaction() as db:
            flows = SqliteUnit(db).flows
            for flow_id, (seen_at, final) in rows.items():
                await flows.save(Flow(flow_id, "CONCLUDED"), 1.0, seen_at=seen_at)
                await flows.save_plans({flow_id: FlowPlan(None, 0.0, final_fetch_done=final)})
            assert await flows.vanished(pass_started) == [1, 5]
    finally:
        await store.close()


def _database_at_version(path: Path, version: int) -> None:
    """A WAL database migrated only up to `version`, as an older release of the service left it."""
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for number in range(1, version + 1):
            db.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
    db.close()


def _open_and_close(path: Path) -> str:
    """Open the store in a fresh event loop (as another process would) and close it; "ok" or the error."""

    async def run() -> None:
        store = await Store.open(path)
        await store.close()

    try:
        asyncio.run(run())
    except StoreError as exc:
        return str(exc)
    return "ok"


async def test_two_opens_of_an_older_database_migrate_it_once(tmp_path: Path) -> None:
    """Both read the old version, then wait for the write lock: the second re-reads it and finds it migrated.

    Before, each applied the last migration after the other had ("duplicate column name"). A writer holds
    the lock until both have started migrating (seen through a profile hook: SQLite's wait is not visible
    from outside), so the two are sure to contend.
    """
    database = tmp_path / "old.sqlite3"
    _database_at_version(database, LATEST_VERSION - 1)
    entered: set[int] = set()

    def watch(frame: types.FrameType, event: str, arg: object) -> None:
        name = getattr(arg, "__name__", "") if event == "c_call" else frame.f_code.co_name
        if event in ("call", "c_call") and name in ("executescript", "apply_migrations"):
            entered.add(threading.get_ident())

    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    threading.setprofile(watch)  # type: ignore[arg-type]
    try:
        opens = [asyncio.create_task(asyncio.to_thread(_open_and_close, database)) for _ in range(2)]
        await wait_until(lambda: len(entered) == 2, what="both opens reached their migration")
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        holder.execute("ROLLBACK")
        holder.close()
    assert await asyncio.gather(*opens) == ["ok", "ok"]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
    db.close()


async def test_the_deliveries_migration_keeps_every_delivery_in_order_and_drops_the_flow_index(
    tmp_path: Path,
) -> None:
    """Migration 12 keeps each recorded delivery (an event's first in its row, the later ones in order),
    records a repeated delivery id as the delivery it is, and drops the inbox's index by flow."""
    path = tmp_path / "v11.sqlite3"
    _database_at_version(path, 11)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO inbox (sequence, event, flow_id, participant_id, event_timestamp, body, received_at)"
            " VALUES (7, 'FINAL_GRADE', 1, 2, 100, x'7b7d', 5.0)"
        )
        db.executemany(
            "INSERT INTO inbox_deliveries (delivery_id, event_id, received_at) VALUES (?, 1, ?)",
            [("z", 5.0), ("a", 6.0)],
        )
    db.close()
    store = await Store.open(path)
    try:
        again = WebhookEvent("a", 7, "FINAL_GRADE", 100, 1, 2)
        assert await Inbox(store).record(again, b"{}", "pending", 7.0) is Recorded.DUPLICATE
        assert await fetch_value(store.db, "SELECT delivery_id FROM inbox WHERE id = 1") == "z"
        sql = "SELECT delivery_id, event_id, received_at FROM inbox_deliveries ORDER BY rowid"
        async with store.db.execute(sql) as cursor:  # the redeliveries
            assert [tuple(r) for r in await cursor.fetchall()] == [("a", 1, 6.0), ("a", 1, 7.0)]
        indexes = "SELECT group_concat(name) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'inbox'"
        assert "inbox_flow_events" not in str(await fetch_value(store.db, indexes))
        async with SqliteUnitOfWork(store).transaction() as unit:
            await unit.inbox.record_refreshes([(1, ["FINAL_GRADE"], 5.0)])
            assert await unit.inbox.mark_answered(8.0, 10) == [5.0]
    finally:
        await store.close()


async def test_a_write_runs_whole_on_the_writer_and_a_failure_rolls_it_back(tmp_path: Path) -> None:
    """`Store.write` commits what its function wrote; when the function fails midway nothing of it stays
    and the failure comes out as a `StoreError`, the connection left outside any transaction."""
    store = await Store.open(tmp_path / "db.sqlite3")

    def journal(conn: sqlite3.Connection, trace: str, fail: bool) -> int:
        conn.execute(
            "INSERT INTO request_journal (at, method, path, status, duration_ms, attempt, trace_id)"
            " VALUES (1, 'GET', '/x', 200, 1, 1, ?)",
            (trace,),
        )
        if fail:
            conn.execute("INSERT INTO no_such_table VALUES (1)")
        return 1

    try:
        assert await store.write(journal, "kept", False) == 1
        with pytest.raises(StoreError):
            await store.write(journal, "dropped", True)
        assert not store.db.in_transaction
        traces = "SELECT group_concat(trace_id) FROM request_journal"
        assert await fetch_value(store.db, traces) == "kept"
    finally:
        await store.close()
