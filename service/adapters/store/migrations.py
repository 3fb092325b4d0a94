"""The database schema, as an ordered list of migrations applied by `PRAGMA user_version`.

Migration N (1-based) moves a database from user_version N-1 to N. Never edit a released migration:
append a new one. Each runs in one transaction together with its `user_version` bump, so a crash
mid-migration leaves the previous version intact; the version is read inside that transaction, so two
processes opening an older database at once never apply one migration twice.
"""

from __future__ import annotations

import sqlite3
from typing import Final

_V1: Final = """
-- Flows as `POST /flows/search` describes them (state by name, dates in unix seconds).
CREATE TABLE flows (
  flow_id             INTEGER PRIMARY KEY,
  state               TEXT    NOT NULL,
  title               TEXT,
  created_at          INTEGER,
  participation_start INTEGER,
  participation_end   INTEGER,
  marking_start       INTEGER,
  marking_end         INTEGER,
  first_seen_at       REAL    NOT NULL,
  seen_at             REAL    NOT NULL,         -- start of the last discovery pass that listed it
  updated_at          REAL    NOT NULL
);
CREATE INDEX flows_state ON flows(state);

-- The polling plan of each flow: when it was last refreshed, when it is due next.
CREATE TABLE flow_plan (
  flow_id          INTEGER PRIMARY KEY REFERENCES flows(flow_id) ON DELETE CASCADE,
  last_polled_at   REAL,
  next_poll_at     REAL    NOT NULL DEFAULT 0,
  final_fetch_done INTEGER NOT NULL DEFAULT 0,   -- 1: a concluded/archived flow's last grades fetch is done
  early_refresh    INTEGER NOT NULL DEFAULT 0,   -- 1: a PAPER_HANDED_IN or webhook asked for a refresh
  last_error       TEXT
);
CREATE INDEX flow_plan_due ON flow_plan(next_poll_at);

-- Participants, deliberately without names or e-mail: the mirror keeps ids only (data minimisation).
CREATE TABLE participants (
  flow_id        INTEGER NOT NULL REFERENCES flows(flow_id) ON DELETE CASCADE,
  participant_id INTEGER NOT NULL,
  user_id        INTEGER,
  number         INTEGER,
  activated      INTEGER,
  group_id       INTEGER,
  submission_id  INTEGER,
  updated_at     REAL    NOT NULL,
  PRIMARY KEY (flow_id, participant_id)
) WITHOUT ROWID;

-- The current grade version per participant; `version_key` is the grade version's idempotency key.
CREATE TABLE assessments (
  flow_id          INTEGER NOT NULL REFERENCES flows(flow_id) ON DELETE CASCADE,
  participant_id   INTEGER NOT NULL,
  grade            TEXT,
  admin_grade      TEXT,
  grade_date       INTEGER,
  admin_grade_date INTEGER,
  export_state     INTEGER,
  version          INTEGER NOT NULL DEFAULT 1,   -- how many grade versions this participant has had
  version_key      TEXT    NOT NULL,
  updated_at       REAL    NOT NULL,
  PRIMARY KEY (flow_id, participant_id)
) WITHOUT ROWID;

CREATE TABLE sync_runs (
  run_id     INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at REAL    NOT NULL,
  ended_at   REAL,
  outcome    TEXT    NOT NULL DEFAULT 'running',  -- running | ok | interrupted | failed
  reason     TEXT,
  api_calls  INTEGER NOT NULL DEFAULT 0,
  pages      INTEGER NOT NULL DEFAULT 0,
  records    INTEGER NOT NULL DEFAULT 0,
  changes    INTEGER NOT NULL DEFAULT 0
);

-- Resumable progress: `run:<id>:...` keys for a run, `events_cursor` etc. for long-lived cursors.
CREATE TABLE checkpoints (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  updated_at REAL NOT NULL
);

-- Grade versions waiting for (or done with) delivery to the SIS, written with the change that made them.
CREATE TABLE outbox (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  idempotency_key TEXT    NOT NULL UNIQUE,
  flow_id         INTEGER NOT NULL,
  participant_id  INTEGER NOT NULL,
  payload         TEXT    NOT NULL,             -- JSON {flowId, participantId, grade, adminGrade, date}
  status          TEXT    NOT NULL DEFAULT 'pending',  -- pending | delivered
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL    NOT NULL DEFAULT 0,
  last_error      TEXT,
  created_at      REAL    NOT NULL,
  delivered_at    REAL
);
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_participant ON outbox(flow_id, participant_id, status);

-- Webhook events, stored before answering 200 (the webhook worker owns these rows).
CREATE TABLE inbox (
  sequence        INTEGER PRIMARY KEY,          -- WISEflow's per-event sequence: duplicates collapse here
  event           TEXT    NOT NULL,
  flow_id         INTEGER,
  participant_id  INTEGER,
  event_timestamp INTEGER NOT NULL,             -- the body's timestamp (unix s)
  body            BLOB    NOT NULL,             -- the verified raw body
  received_at     REAL    NOT NULL,
  status          TEXT    NOT NULL DEFAULT 'pending',  -- pending | done | dead | unknown
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL    NOT NULL DEFAULT 0,
  last_error      TEXT,
  processed_at    REAL
);
CREATE INDEX inbox_pending ON inbox(status, next_attempt_at);
CREATE TABLE inbox_deliveries (
  delivery_id TEXT PRIMARY KEY,
  sequence    INTEGER NOT NULL REFERENCES inbox(sequence),
  received_at REAL    NOT NULL
);

-- Recent WISEflow requests for self-diagnosis (`diagnose X_TRACE_ID`); bounded by the trigger below.
CREATE TABLE request_journal (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  at          REAL    NOT NULL,
  method      TEXT    NOT NULL,
  path        TEXT    NOT NULL,                 -- the path only: query strings may carry personal data
  status      INTEGER,                          -- NULL when no response arrived (timeout, refused)
  duration_ms REAL    NOT NULL,
  attempt     INTEGER NOT NULL DEFAULT 1,
  trace_id    TEXT,
  error       TEXT
);
CREATE INDEX request_journal_trace ON request_journal(trace_id);
-- Keep the newest 10,000 rows: AUTOINCREMENT ids only grow, so "older than id - 10000" is exact.
CREATE TRIGGER request_journal_bound AFTER INSERT ON request_journal
BEGIN
  DELETE FROM request_journal WHERE id <= NEW.id - 10000;
END;
"""

_V2: Final = """
-- Every HTTP request a sync run sent to WISEflow, counted on the wire (token requests and retries
-- included), by route template (`GET /flow/{id}/assessments`); sync_runs.api_calls is their sum.
CREATE TABLE run_requests (
  run_id   INTEGER NOT NULL REFERENCES sync_runs(run_id) ON DELETE CASCADE,
  route    TEXT    NOT NULL,
  requests INTEGER NOT NULL,
  PRIMARY KEY (run_id, route)
) WITHOUT ROWID;
"""

_V3: Final = """
-- The inbox worker asks, per flow and kind of event, for the newest one already applied (and marks a
-- flow's pending events done after a refresh): without this index each question read the whole inbox,
-- half a second once it held 200,000 events, fifty times a pass.
CREATE INDEX inbox_flow_events ON inbox(flow_id, event, status, sequence);
"""

_V4: Final = """
-- 4xx answers to a row (the SIS refused that record), apart from `attempts`, which also counts the SIS
-- being unwell: only refusals lead to status 'dead' (a dead letter, `wiseflow-sync outbox dead-letters`).
ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_dead ON outbox(status) WHERE status = 'dead';

-- Grades mirrored while no sink was set never entered the outbox (and, mirrored, were no longer new):
-- queue each participant's current graded version that has no row yet, so a sink set later gets them.
INSERT OR IGNORE INTO outbox (idempotency_key, flow_id, participant_id, payload, created_at)
SELECT a.version_key, a.flow_id, a.participant_id,
       json_object('flowId', a.flow_id, 'participantId', a.participant_id, 'grade', a.grade,
                   'adminGrade', a.admin_grade, 'date', a.grade_date),
       a.updated_at
FROM assessments a
WHERE (a.grade IS NOT NULL OR a.admin_grade IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.flow_id = a.flow_id AND o.participant_id = a.participant_id)
ORDER BY a.flow_id, a.participant_id;
"""

_V5: Final = """
-- The ordering guard: bumped by every committed refresh of a flow's participants and grades. A refresh
-- reads it before fetching and commits only if it is unchanged, so an older fetch never commits last.
ALTER TABLE flows ADD COLUMN refresh_version INTEGER NOT NULL DEFAULT 0;
"""

_V6: Final = """
-- What retention (SYNC_RETAIN_DAYS) deleted, folded so that certify's figures survive pruning.
-- Totals by name: runs, inbox_events, inbox_deliveries.
CREATE TABLE pruned_totals (
  name  TEXT    PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
-- The request count of every pruned successful run, as a histogram: median, p95 and max stay exact.
CREATE TABLE pruned_run_calls (
  api_calls INTEGER PRIMARY KEY,
  runs      INTEGER NOT NULL
);
-- Requests of pruned successful runs by route (as run_requests, summed).
CREATE TABLE pruned_route_requests (
  route    TEXT    PRIMARY KEY,
  requests INTEGER NOT NULL
) WITHOUT ROWID;
"""

_V7: Final = """
-- The ordering guard of a flow's state (`GET /flow/{id}` and discovery): one clock for every flow, read
-- before a fetch begins and advanced by every committed state write, which stamps the flow with it. A
-- write commits only if the flow's stamp is not newer than the clock read before its fetch, so an older
-- fetch of a flow's state never commits last. One row; a single clock also covers a discovery batch,
-- whose flows are not known before their page is fetched.
CREATE TABLE flow_state_clock (only INTEGER PRIMARY KEY CHECK (only = 1), value INTEGER NOT NULL);
INSERT INTO flow_state_clock VALUES (1, 0);
ALTER TABLE flows ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;
"""

_V8: Final = """
-- The W3C traceparent of the request that received each webhook event (its SERVER span), so that the
-- span processing it links to its receipt even when a restart came in between. NULL: no span was sampled.
ALTER TABLE inbox ADD COLUMN receipt TEXT;
"""

_V9: Final = """
-- The seconds a journalled answer's Retry-After asked for (NULL: none), so that certify can count the
-- Retry-After answers and whether the next request waited them out.
ALTER TABLE request_journal ADD COLUMN retry_after REAL;
"""

_V10: Final = """
-- What each sync run did, as `wiseflow-sync runs` shows it: the command that ran it (run, sync, demo, NULL
-- for runs recorded before), and per entity of the mirror the rows it added, changed and removed (grades
-- also the versions it queued for the SIS).
ALTER TABLE sync_runs ADD COLUMN command TEXT;
ALTER TABLE sync_runs ADD COLUMN flows_added INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN flows_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN flows_removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN participants_added INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN participants_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN participants_removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN grades_added INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN grades_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN grades_removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN grades_queued INTEGER NOT NULL DEFAULT 0;
-- Outcomes from now on: 'paused' is a run WISEflow stopped (a Retry-After, maintenance, the open breaker),
-- 'interrupted' one whose process died or was cancelled mid-run. Earlier runs said 'interrupted' for both,
-- and only a dead process's run carries this reason.
UPDATE sync_runs SET outcome = 'paused'
WHERE outcome = 'interrupted' AND reason IS NOT 'process ended mid-run';
"""

_V11: Final = """
-- WISEflow promises a sequence number unique per event, but a sender that restarts or a recreated
-- subscription may number from 1 again: a different event under a stored sequence must be stored, not
-- answered "duplicate" and dropped. Each event gets an id of its own (arrival order; what `inbox replay ID`
-- takes); a delivery is a duplicate when an event with the same sequence, event, flow and participant
-- arrived within WISEflow's redelivery window (decided by the receiver inside its write transaction), so
-- the sequence is no longer unique. Rows keep their order of arrival; their delivery ids follow them.
CREATE TABLE inbox_v11 (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  sequence        INTEGER NOT NULL,
  event           TEXT    NOT NULL,
  flow_id         INTEGER,
  participant_id  INTEGER,
  event_timestamp INTEGER NOT NULL,
  body            BLOB    NOT NULL,
  received_at     REAL    NOT NULL,
  status          TEXT    NOT NULL DEFAULT 'pending',
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL    NOT NULL DEFAULT 0,
  last_error      TEXT,
  processed_at    REAL,
  receipt         TEXT
);
INSERT INTO inbox_v11 (id, sequence, event, flow_id, participant_id, event_timestamp, body, received_at,
                       status, attempts, next_attempt_at, last_error, processed_at, receipt)
SELECT ROW_NUMBER() OVER (ORDER BY received_at, sequence), sequence, event, flow_id, participant_id,
       event_timestamp, body, received_at, status, attempts, next_attempt_at, last_error, processed_at, receipt
FROM inbox;
CREATE TABLE inbox_deliveries_v11 (
  delivery_id TEXT    PRIMARY KEY,
  event_id    INTEGER NOT NULL REFERENCES inbox_v11(id),
  received_at REAL    NOT NULL
);
INSERT INTO inbox_deliveries_v11 (delivery_id, event_id, received_at)
SELECT d.delivery_id, e.id, d.received_at
FROM inbox_deliveries d JOIN inbox_v11 e ON e.sequence = d.sequence
ORDER BY d.rowid;
DROP TABLE inbox_deliveries;
DROP TABLE inbox;
ALTER TABLE inbox_v11 RENAME TO inbox;
ALTER TABLE inbox_deliveries_v11 RENAME TO inbox_deliveries;
CREATE INDEX inbox_pending ON inbox(status, next_attempt_at);
CREATE INDEX inbox_sequence ON inbox(sequence);
-- A refresh's cover marks a flow's pending events of some kinds received by a time.
CREATE INDEX inbox_flow_events ON inbox(flow_id, event, status, received_at);
CREATE INDEX inbox_deliveries_event ON inbox_deliveries(event_id);

-- When the inbox worker's latest refresh of each flow and event kind began: an event received by then is
-- answered by it ("superseded" is judged by time, never by comparing sequence numbers).
CREATE TABLE inbox_refreshes (
  flow_id  INTEGER NOT NULL,
  event    TEXT    NOT NULL,
  began_at REAL    NOT NULL,
  PRIMARY KEY (flow_id, event)
) WITHOUT ROWID;
"""

_V12: Final = """
-- Measured (bench/ingest.py): the group commit's cost is the pages it dirties, each a 4 KiB WAL frame
-- written and fsync'd before the 200. Two indexes spread every batch over many pages: the deliveries keyed
-- by their random id (a page per row), and the cover index led by the flow (a page per flow: 49 pages for
-- a commit of 32 events, 4 for the minimal durable receiver). A delivery id is recorded, never looked up
-- (a duplicate is judged by the event's identity, so one delivery id sent twice is two deliveries
-- recorded). The delivery that brought an event is kept in the event's own row, and `inbox_deliveries`
-- keeps only the later ones (redeliveries), in arrival order, found by the event they delivered again:
-- a new event is one row, not two. The worker finds the events a refresh answers from the pending ones
-- (`inbox_pending`) and the refreshes by their key instead.
ALTER TABLE inbox ADD COLUMN delivery_id TEXT;  -- the delivery that brought the event
UPDATE inbox SET delivery_id = (
  SELECT d.delivery_id FROM inbox_deliveries d WHERE d.event_id = inbox.id ORDER BY d.rowid LIMIT 1
);
CREATE TABLE inbox_deliveries_v12 (
  event_id    INTEGER NOT NULL REFERENCES inbox(id),
  delivery_id TEXT    NOT NULL,
  received_at REAL    NOT NULL
);
INSERT INTO inbox_deliveries_v12 (event_id, delivery_id, received_at)
SELECT event_id, delivery_id, received_at FROM inbox_deliveries d
WHERE d.rowid > (SELECT MIN(f.rowid) FROM inbox_deliveries f WHERE f.event_id = d.event_id)
ORDER BY rowid;
DROP TABLE inbox_deliveries;
ALTER TABLE inbox_deliveries_v12 RENAME TO inbox_deliveries;
CREATE INDEX inbox_deliveries_event ON inbox_deliveries(event_id);
DROP INDEX inbox_flow_events;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
LATEST_VERSION: Final = len(MIGRATIONS)
JOURNAL_LIMIT: Final = 10_000


def apply_migrations(conn: sqlite3.Connection) -> None:
    """Bring the database on `conn` (autocommit mode) to LATEST_VERSION, one transaction per migration.

    `BEGIN IMMEDIATE` first, then the version: a second process that read the old version before this
    one migrated waits for the write lock here, re-reads, and finds nothing left to do. (executescript
    cannot do this: it commits any open transaction before it runs.)
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version >= LATEST_VERSION:  # another process migrated it meanwhile
                conn.execute("ROLLBACK")
                return
            for statement in statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def statements(script: str) -> list[str]:
    """The SQL statements of `script`, each whole (a trigger's body and a comment's `;` stay inside)."""
    found: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if _has_sql(pending):
                found.append(pending.strip())
            pending = ""
    return found


def _has_sql(text: str) -> bool:
    """False for what is only comments, blanks and the closing `;`."""
    lines = (line.split("--", 1)[0].strip() for line in text.splitlines())
    return any(line not in ("", ";") for line in lines)
