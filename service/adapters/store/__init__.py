"""The SQLite store (aiosqlite): connection and migrations, and one repository module per table group."""

from service.adapters.store.connection import Store, StoreError

__all__ = ["Store", "StoreError"]
