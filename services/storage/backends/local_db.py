"""The local backend's SQLite database: one connection on one thread, the schema and its upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL DEFAULT '',
    client_input TEXT NOT NULL DEFAULT '',
    agent_response TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    ttl INTEGER,
    input_audio_key TEXT NOT NULL DEFAULT '',
    output_audio_key TEXT NOT NULL DEFAULT '',
    interrupted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, timestamp)
);
CREATE INDEX IF NOT EXISTS conversations_by_session ON conversations (session_id, timestamp);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    ttl INTEGER
);
-- One row per conversation: its owner and what listing shows, kept up to date by every turn saved.
CREATE TABLE IF NOT EXISTS conversation_headers (
    conversation_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    first_ts TEXT NOT NULL DEFAULT '',
    last_ts TEXT NOT NULL DEFAULT '',
    turn_count INTEGER NOT NULL DEFAULT 0,
    last_input TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '',
    ttl INTEGER
);
CREATE INDEX IF NOT EXISTS headers_by_user ON conversation_headers (user_id, last_ts, conversation_id);
-- Audio files live under audio/<user_id>/<key>; this is their owner, type and expiry.
CREATE TABLE IF NOT EXISTS audio (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    ttl INTEGER,
    PRIMARY KEY (user_id, key)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS daily_usage (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    audio_s REAL NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER,
    PRIMARY KEY (user_id, day)
);
"""

# Columns added since the first schema: a database from before gets them (rows without an owner
# belong to no user, so no one can read them; the sweep or a fresh data folder clears them).
ADDED_COLUMNS = {
    "conversations": "user_id TEXT NOT NULL DEFAULT ''",
    "sessions": "user_id TEXT NOT NULL DEFAULT ''",
}


class Database:
    """All SQLite work runs on one dedicated thread with one connection: no locking surprises, and
    the event loop never waits on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-sqlite")
        self._db: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._db is not None
            with self._db:  # one transaction per operation
                return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.row_factory = sqlite3.Row
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(f"SQLite at {self.path} refused WAL mode ({mode})")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            for table, column in ADDED_COLUMNS.items():
                present = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                if column.split()[0] not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            db.execute("CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id)")
            db.commit()
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)
