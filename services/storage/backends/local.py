"""Local storage: SQLite in WAL mode for records, plain files for audio, under one data folder.

Retention: a sweep at start and every ECHO_STORAGE_SWEEP_INTERVAL_S deletes the records whose ttl has
passed (turns, sessions, conversation headers, usage) and the audio files of the expired turns and of
expired audio objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import InvalidArgument
from services.storage.backends.base import check_key, check_user, not_found_audio, now_iso, retention_ttl
from services.storage.backends.local_db import Database
from services.storage.backends.local_records import SQLiteConversationStore, refresh_header
from services.storage.backends.local_users import SQLiteUserStore
from services.storage.config import StorageSettings

log = logging.getLogger("echo.storage.local")
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


class FileAudioStore:
    """audio/<user_id>/<key>: the same key of two users is two files; the owner is the folder and the
    row in the audio table."""

    def __init__(self, root: Path, db: Database, retention_days: int) -> None:
        self.root = root
        self.db = db
        self.retention_days = retention_days

    def _path(self, user_id: str, key: str) -> Path:
        return self.root / check_user(user_id) / check_key(key)

    async def _content_type(self, user_id: str, key: str) -> str:
        row = await self.db.run(
            lambda db: db.execute(
                "SELECT content_type FROM audio WHERE user_id = ? AND key = ?", (user_id, key)
            ).fetchone()
        )
        if row is None or not await asyncio.to_thread(self._path(user_id, key).is_file):
            raise not_found_audio(key)
        return str(row["content_type"])

    async def put(
        self, user_id: str, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        path = self._path(user_id, key)
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
        values = (user_id, key, content_type or "application/octet-stream", size, now_iso())
        ttl = retention_ttl(0, self.retention_days) or None
        await self.db.run(
            lambda db: db.execute("INSERT OR REPLACE INTO audio VALUES (?, ?, ?, ?, ?, ?)", (*values, ttl))
        )
        return size

    async def url(self, user_id: str, key: str) -> str:
        await self._content_type(user_id, key)
        return ""  # files are served through the gateway

    async def get(self, user_id: str, key: str) -> AsyncIterator[tuple[bytes, str]]:
        content_type = await self._content_type(user_id, key)
        with await asyncio.to_thread(self._path(user_id, key).open, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk, content_type

    async def delete(self, user_id: str, keys: tuple[str, ...]) -> int:
        def forget(db: sqlite3.Connection) -> list[str]:
            found = [
                k
                for k in keys
                if db.execute("DELETE FROM audio WHERE user_id = ? AND key = ?", (user_id, k)).rowcount
            ]
            return found

        found = await self.db.run(forget)
        await asyncio.to_thread(self._unlink, [self._path(user_id, k) for k in keys])
        return len(found)

    async def delete_user(self, user_id: str) -> int:
        count = await self.db.run(
            lambda db: db.execute("DELETE FROM audio WHERE user_id = ?", (user_id,)).rowcount
        )
        await asyncio.to_thread(shutil.rmtree, self.root / check_user(user_id), True)
        return int(count)

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)


def _sweep(db: sqlite3.Connection, now: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Deletes what expired before ``now``; returns the counts and the (user, key) audio to unlink."""
    expired = "ttl IS NOT NULL AND ttl < :now"
    audio = [
        (r["user_id"], k)
        for r in db.execute(
            f"SELECT user_id, input_audio_key, output_audio_key FROM conversations WHERE {expired} "
            f"OR conversation_id IN (SELECT conversation_id FROM conversation_headers WHERE {expired})",
            {"now": now},
        )
        for k in (r["input_audio_key"], r["output_audio_key"])
        if k
    ]
    audio += [
        (r["user_id"], r["key"])
        for r in db.execute(f"SELECT user_id, key FROM audio WHERE {expired}", {"now": now})
    ]
    touched = [
        r["conversation_id"]
        for r in db.execute(
            f"SELECT DISTINCT conversation_id FROM conversations WHERE {expired}", {"now": now}
        )
    ]
    counts = {
        "turns": db.execute(
            f"DELETE FROM conversations WHERE {expired} OR conversation_id IN "
            f"(SELECT conversation_id FROM conversation_headers WHERE {expired})",
            {"now": now},
        ).rowcount,
        "conversations": db.execute(
            f"DELETE FROM conversation_headers WHERE {expired}", {"now": now}
        ).rowcount,
        "sessions": db.execute(f"DELETE FROM sessions WHERE {expired}", {"now": now}).rowcount,
        "usage": db.execute(f"DELETE FROM daily_usage WHERE {expired}", {"now": now}).rowcount,
    }
    for conversation_id in touched:
        refresh_header(db, conversation_id)
    for user_id, key in audio:
        db.execute("DELETE FROM audio WHERE user_id = ? AND key = ?", (user_id, key))
    counts["audio"] = len(set(audio))
    return counts, sorted(set(audio))


class LocalBackend:
    name = "local"
    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, service: StorageSettings, settings: LocalSettings | None = None) -> None:
        self.service = service
        self.settings = settings = settings or load_local_settings()
        root = Path(settings.data_dir).expanduser()
        self.db = Database(root / "echo.sqlite3")
        self.conversations = SQLiteConversationStore(self.db, service.retention_days)
        self.users = SQLiteUserStore(self.db, service.retention_days)
        self.audio = FileAudioStore(root / "audio", self.db, service.retention_days)
        self.root = root
        self._sweeper: asyncio.Task[None] | None = None

    async def sweep(self, now: float | None = None) -> dict[str, int]:
        """Delete every record and audio file whose ttl is before ``now`` (default: the time now)."""
        at = int(now if now is not None else time.time())
        counts, audio = await self.db.run(lambda db: _sweep(db, at))
        paths = []
        for user_id, key in audio:
            with contextlib.suppress(InvalidArgument):  # a key saved by an older version
                paths.append(self.audio._path(user_id, key))
        await asyncio.to_thread(FileAudioStore._unlink, paths)
        if any(counts.values()):
            log.info("retention sweep removed %s", ", ".join(f"{n} {what}" for what, n in counts.items()))
        return counts

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.service.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # a failed sweep is retried next time; serving goes on
                log.exception("retention sweep failed")

    async def start(self) -> None:
        await self.db.open()
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="echo-storage-sweep")
        log.info(
            "local storage in %s (SQLite WAL + audio files), retention %s",
            self.root,
            f"{self.service.retention_days} days" if self.service.retention_days > 0 else "forever",
        )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.db.close()
