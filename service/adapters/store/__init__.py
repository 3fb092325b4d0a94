"""The SQLite store (aiosqlite): the connection and migrations, the unit of work and its repositories.

`SqliteUnitOfWork` (unit.py) is how the loops reach it: `unit.flows`, `unit.grades` (mirror.py),
`unit.outbox` (outbox.py), `unit.inbox` (inbox_queue.py), `unit.checkpoints`, `unit.runs` (runs.py). The
receiver commits webhook events through `inbox.Inbox`'s group commit; reports read `figures`, and
retention, the journal and the saved pause keep their own small modules.
"""

from service.adapters.store.connection import Store, StoreError

__all__ = ["Store", "StoreError"]
