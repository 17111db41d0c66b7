"""The local backend's API keys and daily usage, in SQLite."""

from __future__ import annotations

import sqlite3

from echo.v1 import storage_pb2
from services.common.errors import AlreadyExists, NotFound
from services.storage.backends.base import (
    check_day,
    check_key_id,
    check_sha256,
    check_usage,
    check_user,
    listed_key,
    new_key_record,
    now_iso,
    retention_ttl,
)
from services.storage.backends.local_db import Database


def _key(row: sqlite3.Row) -> storage_pb2.ApiKey:
    return storage_pb2.ApiKey(
        **{f: row[f] for f in ("key_id", "user_id", "key_sha256", "label", "created_at", "revoked_at")}
    )


class SQLiteUserStore:
    def __init__(self, db: Database, retention_days: int) -> None:
        self.db = db
        self.retention_days = retention_days

    async def create_key(self, key: storage_pb2.ApiKey) -> storage_pb2.ApiKey:
        record = new_key_record(key, now_iso())

        def save(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO api_keys (key_id, user_id, key_sha256, label, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.key_id, record.user_id, record.key_sha256, record.label, record.created_at),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"an API key with id {record.key_id!r} or this hash exists") from None

        await self.db.run(save)
        return record

    async def lookup_key(self, key_sha256: str) -> storage_pb2.ApiKey:
        check_sha256(key_sha256)
        row = await self.db.run(
            lambda db: db.execute("SELECT * FROM api_keys WHERE key_sha256 = ?", (key_sha256,)).fetchone()
        )
        if row is None:
            raise NotFound("no such API key")
        return _key(row)

    async def list_keys(self, user_id: str = "") -> list[storage_pb2.ApiKey]:
        query = "SELECT * FROM api_keys WHERE (:u = '' OR user_id = :u) ORDER BY created_at, key_id"
        rows = await self.db.run(lambda db: db.execute(query, {"u": user_id}).fetchall())
        return [listed_key(_key(r)) for r in rows]

    async def revoke_key(self, key_id: str) -> storage_pb2.ApiKey:
        check_key_id(key_id)

        def revoke(db: sqlite3.Connection) -> sqlite3.Row | None:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at = ''", (now_iso(), key_id)
            )
            return db.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()

        row = await self.db.run(revoke)
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return _key(row)

    async def add_usage(self, usage: storage_pb2.DailyUsage) -> storage_pb2.DailyUsage:
        check_usage(usage)
        ttl = retention_ttl(0, self.retention_days) or None

        def add(db: sqlite3.Connection) -> sqlite3.Row:
            return db.execute(
                "INSERT INTO daily_usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, day) DO UPDATE SET "
                "audio_s = audio_s + excluded.audio_s, cost_usd = cost_usd + excluded.cost_usd, "
                "turns = turns + excluded.turns RETURNING *",
                (usage.user_id, usage.day, usage.audio_s, usage.cost_usd, usage.turns, ttl),
            ).fetchone()

        row = await self.db.run(add)
        return storage_pb2.DailyUsage(
            user_id=usage.user_id,
            day=usage.day,
            audio_s=row["audio_s"],
            cost_usd=row["cost_usd"],
            turns=row["turns"],
        )

    async def get_usage(self, user_id: str, day: str) -> storage_pb2.DailyUsage:
        check_user(user_id)
        check_day(day)
        row = await self.db.run(
            lambda db: db.execute(
                "SELECT * FROM daily_usage WHERE user_id = ? AND day = ?", (user_id, day)
            ).fetchone()
        )
        if row is None:
            return storage_pb2.DailyUsage(user_id=user_id, day=day)
        return storage_pb2.DailyUsage(
            user_id=user_id, day=day, audio_s=row["audio_s"], cost_usd=row["cost_usd"], turns=row["turns"]
        )

    async def delete_user(self, user_id: str) -> int:
        def delete(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM daily_usage WHERE user_id = ?", (user_id,))
            return db.execute("DELETE FROM api_keys WHERE user_id = ?", (user_id,)).rowcount

        return await self.db.run(delete)
