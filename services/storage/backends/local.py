"""Local storage: SQLite in WAL mode for records, plain files for audio, under one data folder."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from echo.v1 import storage_pb2
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.storage.backends.base import check_id, check_key, check_turn
from services.storage.config import StorageSettings

log = logging.getLogger("echo.storage.local")
T = TypeVar("T")
CHUNK = 64 * 1024


def _default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".local", "share", "echo")


@dataclass
class LocalSettings:
    data_dir: str = field(
        default_factory=_default_data_dir, metadata={"env": "ECHO_DATA_DIR", "help": "SQLite + audio files"}
    )


def load_local_settings() -> LocalSettings:
    return load_settings(LocalSettings, prefix="ECHO_STORAGE_", section="storage")


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
CREATE TABLE IF NOT EXISTS summaries (
    conversation_id TEXT PRIMARY KEY,
    summary TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audio_objects (
    key TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""

TURN_COLUMNS = (
    "conversation_id, timestamp, session_id, turn_id, client_input, agent_response, metadata, ttl, "
    "input_audio_key, output_audio_key, interrupted"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _turn(row: sqlite3.Row) -> storage_pb2.Turn:
    return storage_pb2.Turn(
        conversation_id=row["conversation_id"],
        timestamp=row["timestamp"],
        session_id=row["session_id"],
        turn_id=row["turn_id"],
        client_input=row["client_input"],
        agent_response=row["agent_response"],
        metadata_json=row["metadata"],
        ttl=row["ttl"] or 0,
        input_audio_key=row["input_audio_key"],
        output_audio_key=row["output_audio_key"],
        interrupted=bool(row["interrupted"]),
    )


class SQLiteConversationStore:
    """All SQLite work runs on one dedicated thread with one connection: no locking surprises, and
    the event loop never waits on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        check_id("session_id", session.session_id)
        check_id("conversation_id", session.conversation_id)
        now = _now()
        record = storage_pb2.Session()
        record.CopyFrom(session)
        record.created_at = record.created_at or now
        record.updated_at = now

        def save(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "conversation_id=excluded.conversation_id, updated_at=excluded.updated_at, "
                "metadata=excluded.metadata, ttl=excluded.ttl",
                (
                    record.session_id,
                    record.conversation_id,
                    record.created_at,
                    record.updated_at,
                    record.metadata_json or "{}",
                    record.ttl or None,
                ),
            )

        await self._run(save)
        return record

    async def get_session(self, session_id: str) -> storage_pb2.Session:
        check_id("session_id", session_id)
        row = await self._run(
            lambda db: db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        )
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return storage_pb2.Session(
            session_id=row["session_id"],
            conversation_id=row["conversation_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            metadata_json=row["metadata"],
            ttl=row["ttl"] or 0,
        )

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        check_turn(turn)
        values = (
            turn.conversation_id,
            turn.timestamp,
            turn.session_id,
            turn.turn_id,
            turn.client_input,
            turn.agent_response,
            turn.metadata_json or "{}",
            turn.ttl or None,
            turn.input_audio_key,
            turn.output_audio_key,
            int(turn.interrupted),
        )

        def save(db: sqlite3.Connection) -> None:
            # The primary key is (conversation_id, timestamp): a retry of the same turn replaces its row,
            # a different turn may not take it over.
            row = db.execute(
                "SELECT turn_id FROM conversations WHERE conversation_id = ? AND timestamp = ?",
                (turn.conversation_id, turn.timestamp),
            ).fetchone()
            if row is not None and row["turn_id"] != turn.turn_id:
                raise AlreadyExists(
                    f"conversation {turn.conversation_id!r} has another turn ({row['turn_id']!r}) "
                    f"at {turn.timestamp}"
                )
            placeholders = ", ".join("?" * len(values))
            db.execute(
                f"INSERT OR REPLACE INTO conversations ({TURN_COLUMNS}) VALUES ({placeholders})",
                values,
            )

        await self._run(save)
        return turn

    async def get_conversation(self, conversation_id: str) -> storage_pb2.Conversation:
        check_id("conversation_id", conversation_id)

        def read(db: sqlite3.Connection) -> tuple[list[sqlite3.Row], sqlite3.Row | None]:
            rows = db.execute(
                "SELECT * FROM conversations WHERE conversation_id = ? ORDER BY timestamp", (conversation_id,)
            ).fetchall()
            summary = db.execute(
                "SELECT summary FROM summaries WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            return rows, summary

        rows, summary = await self._run(read)
        if not rows and summary is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return storage_pb2.Conversation(
            conversation_id=conversation_id,
            turns=[_turn(r) for r in rows],
            summary=summary["summary"] if summary else "",
        )

    async def list_conversations(
        self, limit: int, session_id: str = ""
    ) -> list[storage_pb2.ConversationSummary]:
        if limit < 0:
            raise InvalidArgument("limit must be >= 0")
        limit = min(limit or 50, 500)
        where, params = "", []
        if session_id:
            check_id("session_id", session_id)
            where = (
                "WHERE c.conversation_id IN (SELECT conversation_id FROM conversations WHERE session_id = ?)"
            )
            params.append(session_id)
        query = f"""
            SELECT c.conversation_id, MIN(c.timestamp) AS first_ts, MAX(c.timestamp) AS last_ts,
                   COUNT(*) AS turns, COALESCE(s.summary, '') AS summary,
                   (SELECT client_input FROM conversations l WHERE l.conversation_id = c.conversation_id
                    ORDER BY l.timestamp DESC LIMIT 1) AS last_input
            FROM conversations c LEFT JOIN summaries s ON s.conversation_id = c.conversation_id
            {where}
            GROUP BY c.conversation_id ORDER BY last_ts DESC LIMIT ?
        """
        rows = await self._run(lambda db: db.execute(query, (*params, limit)).fetchall())
        return [
            storage_pb2.ConversationSummary(
                conversation_id=r["conversation_id"],
                first_timestamp=r["first_ts"],
                last_timestamp=r["last_ts"],
                turn_count=r["turns"],
                summary=r["summary"],
                last_client_input=r["last_input"],
            )
            for r in rows
        ]

    async def save_summary(self, conversation_id: str, summary: str) -> None:
        check_id("conversation_id", conversation_id)

        def save(db: sqlite3.Connection) -> None:
            if (
                db.execute(
                    "SELECT 1 FROM conversations WHERE conversation_id = ?", (conversation_id,)
                ).fetchone()
                is None
            ):
                raise NotFound(f"no conversation {conversation_id!r}")
            db.execute(
                "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?)", (conversation_id, summary, _now())
            )

        await self._run(save)

    async def record_audio(self, key: str, content_type: str, size: int) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO audio_objects VALUES (?, ?, ?, ?)", (key, content_type, size, _now())
            )
        )

    async def audio_content_type(self, key: str) -> str | None:
        row = await self._run(
            lambda db: db.execute("SELECT content_type FROM audio_objects WHERE key = ?", (key,)).fetchone()
        )
        return row["content_type"] if row else None


class FileAudioStore:
    def __init__(self, root: Path, index: SQLiteConversationStore) -> None:
        self.root = root
        self.index = index

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int) -> int:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp_name = await asyncio.to_thread(tempfile.mkstemp, dir=path.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise InvalidArgument(f"audio object {key!r} is over the {max_bytes}-byte limit")
                    await asyncio.to_thread(out.write, chunk)
            # Rename is atomic: readers see the old object or the whole new one, never a part.
            await asyncio.to_thread(os.replace, tmp_name, path)
        except BaseException:
            await asyncio.to_thread(lambda: Path(tmp_name).unlink(missing_ok=True))
            raise
        await self.index.record_audio(key, content_type or "application/octet-stream", size)
        return size

    async def url(self, key: str) -> str:
        return ""  # files are served through the gateway

    async def get(self, key: str) -> AsyncIterator[tuple[bytes, str]]:
        path = self._path(key)
        content_type = await self.index.audio_content_type(key)
        if content_type is None or not await asyncio.to_thread(path.is_file):
            raise NotFound(f"no audio {key!r}")
        with await asyncio.to_thread(path.open, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk, content_type


class LocalBackend:
    name = "local"
    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, service: StorageSettings, settings: LocalSettings | None = None) -> None:
        self.service = service
        self.settings = settings = settings or load_local_settings()
        root = Path(settings.data_dir).expanduser()
        self.conversations = SQLiteConversationStore(root / "echo.sqlite3")
        self.audio = FileAudioStore(root / "audio", self.conversations)
        self.root = root

    async def start(self) -> None:
        await self.conversations.open()
        log.info("local storage in %s (SQLite WAL + audio files)", self.root)

    async def close(self) -> None:
        await self.conversations.close()
