"""The local backend's records in SQLite: sessions, turns and conversation headers."""

from __future__ import annotations

import sqlite3
from typing import Any

from echo.v1 import storage_pb2
from services.common.errors import AlreadyExists
from services.storage.backends.base import (
    Deleted,
    check_id,
    check_limit,
    decode_cursor,
    encode_cursor,
    not_found_conversation,
    not_found_session,
    now_iso,
    session_record,
    turn_audio_keys,
    turn_record,
)
from services.storage.backends.local_db import Database

TURN_COLUMNS = (
    "conversation_id, timestamp, session_id, turn_id, client_input, agent_response, metadata, ttl, "
    "input_audio_key, output_audio_key, interrupted, user_id"
)


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
        user_id=row["user_id"],
    )


def claim(db: sqlite3.Connection, user_id: str, conversation_id: str, ttl: int) -> None:
    """The conversation is the user's from now on, or already was; another user's is NotFound."""
    row = db.execute(
        "SELECT user_id FROM conversation_headers WHERE conversation_id = ?", (conversation_id,)
    ).fetchone()
    if row is not None and row["user_id"] != user_id:
        raise not_found_conversation(conversation_id)
    db.execute(
        "INSERT INTO conversation_headers (conversation_id, user_id, ttl) VALUES (?, ?, ?) "
        "ON CONFLICT (conversation_id) DO UPDATE SET ttl = excluded.ttl",
        (conversation_id, user_id, ttl or None),
    )


def refresh_header(db: sqlite3.Connection, conversation_id: str) -> None:
    """Recomputed from the turns, so a retried or out-of-order save never miscounts."""
    db.execute(
        """UPDATE conversation_headers SET
             first_ts = COALESCE((SELECT MIN(timestamp) FROM conversations c
                                  WHERE c.conversation_id = :c), ''),
             last_ts = COALESCE((SELECT MAX(timestamp) FROM conversations c
                                 WHERE c.conversation_id = :c), ''),
             turn_count = (SELECT COUNT(*) FROM conversations c WHERE c.conversation_id = :c),
             last_input = COALESCE((SELECT client_input FROM conversations c WHERE c.conversation_id = :c
                                    ORDER BY timestamp DESC LIMIT 1), '')
           WHERE conversation_id = :c""",
        {"c": conversation_id},
    )


def _owned_header(db: sqlite3.Connection, user_id: str, conversation_id: str) -> sqlite3.Row:
    row = db.execute(
        "SELECT * FROM conversation_headers WHERE conversation_id = ? AND user_id = ?",
        (conversation_id, user_id),
    ).fetchone()
    if row is None:
        raise not_found_conversation(conversation_id)
    return row


def _delete_conversation(db: sqlite3.Connection, conversation_id: str) -> Deleted:
    """Its sessions, turns and header."""
    turns = [
        _turn(r)
        for r in db.execute("SELECT * FROM conversations WHERE conversation_id = ?", (conversation_id,))
    ]
    db.execute("DELETE FROM conversations WHERE conversation_id = ?", (conversation_id,))
    db.execute("DELETE FROM conversation_headers WHERE conversation_id = ?", (conversation_id,))
    sessions = db.execute("DELETE FROM sessions WHERE conversation_id = ?", (conversation_id,)).rowcount
    return Deleted(conversations=1, turns=len(turns), sessions=sessions, audio_keys=turn_audio_keys(turns))


class SQLiteConversationStore:
    def __init__(self, db: Database, retention_days: int) -> None:
        self.db = db
        self.retention_days = retention_days

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        record = session_record(session, now_iso(), self.retention_days)

        def save(db: sqlite3.Connection) -> None:
            owner = db.execute(
                "SELECT user_id FROM sessions WHERE session_id = ?", (record.session_id,)
            ).fetchone()
            if owner is not None and owner["user_id"] != record.user_id:
                raise not_found_session(record.session_id)
            claim(db, record.user_id, record.conversation_id, record.ttl)
            db.execute(
                "INSERT INTO sessions (session_id, conversation_id, created_at, updated_at, metadata, ttl, "
                "user_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "conversation_id=excluded.conversation_id, updated_at=excluded.updated_at, "
                "metadata=excluded.metadata, ttl=excluded.ttl",
                (
                    record.session_id,
                    record.conversation_id,
                    record.created_at,
                    record.updated_at,
                    record.metadata_json or "{}",
                    record.ttl or None,
                    record.user_id,
                ),
            )

        await self.db.run(save)
        return record

    async def get_session(self, user_id: str, session_id: str) -> storage_pb2.Session:
        check_id("session_id", session_id)
        row = await self.db.run(
            lambda db: db.execute(
                "SELECT * FROM sessions WHERE session_id = ? AND user_id = ?", (session_id, user_id)
            ).fetchone()
        )
        if row is None:
            raise not_found_session(session_id)
        return storage_pb2.Session(
            session_id=row["session_id"],
            conversation_id=row["conversation_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            metadata_json=row["metadata"],
            ttl=row["ttl"] or 0,
            user_id=row["user_id"],
        )

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        record = turn_record(turn, self.retention_days)
        values = (
            record.conversation_id,
            record.timestamp,
            record.session_id,
            record.turn_id,
            record.client_input,
            record.agent_response,
            record.metadata_json or "{}",
            record.ttl or None,
            record.input_audio_key,
            record.output_audio_key,
            int(record.interrupted),
            record.user_id,
        )

        def save(db: sqlite3.Connection) -> None:
            claim(db, record.user_id, record.conversation_id, record.ttl)
            # The primary key is (conversation_id, timestamp): a retry of the same turn replaces its row,
            # a different turn may not take it over.
            row = db.execute(
                "SELECT turn_id FROM conversations WHERE conversation_id = ? AND timestamp = ?",
                (record.conversation_id, record.timestamp),
            ).fetchone()
            if row is not None and row["turn_id"] != record.turn_id:
                raise AlreadyExists(
                    f"conversation {record.conversation_id!r} has another turn ({row['turn_id']!r}) "
                    f"at {record.timestamp}"
                )
            placeholders = ", ".join("?" * len(values))
            db.execute(
                f"INSERT OR REPLACE INTO conversations ({TURN_COLUMNS}) VALUES ({placeholders})", values
            )
            refresh_header(db, record.conversation_id)

        await self.db.run(save)
        return record

    async def get_conversation(self, user_id: str, conversation_id: str) -> storage_pb2.Conversation:
        check_id("conversation_id", conversation_id)

        def read(db: sqlite3.Connection) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
            header = _owned_header(db, user_id, conversation_id)
            rows = db.execute(
                "SELECT * FROM conversations WHERE conversation_id = ? ORDER BY timestamp", (conversation_id,)
            ).fetchall()
            return header, rows

        header, rows = await self.db.run(read)
        if not rows and not header["summary"]:
            raise not_found_conversation(conversation_id)
        return storage_pb2.Conversation(
            conversation_id=conversation_id,
            turns=[_turn(r) for r in rows],
            summary=header["summary"],
            user_id=user_id,
        )

    async def list_conversations(
        self, user_id: str, limit: int, cursor: str = "", session_id: str = ""
    ) -> tuple[list[storage_pb2.ConversationSummary], str]:
        limit = check_limit(limit)
        after = decode_cursor(cursor, user_id)
        where = ["user_id = :u", "turn_count > 0"]
        params: dict[str, Any] = {"u": user_id, "n": limit + 1}
        if session_id:
            where.append(
                "conversation_id IN (SELECT conversation_id FROM conversations WHERE session_id = :s "
                "AND user_id = :u)"
            )
            params["s"] = session_id
        if after is not None:
            where.append("(last_ts < :t OR (last_ts = :t AND conversation_id < :c))")
            params |= {"t": str(after.get("last_ts")), "c": str(after.get("conversation_id"))}
        query = (
            f"SELECT * FROM conversation_headers WHERE {' AND '.join(where)} "
            "ORDER BY last_ts DESC, conversation_id DESC LIMIT :n"
        )
        rows = await self.db.run(lambda db: db.execute(query, params).fetchall())
        found = [
            storage_pb2.ConversationSummary(
                conversation_id=r["conversation_id"],
                first_timestamp=r["first_ts"],
                last_timestamp=r["last_ts"],
                turn_count=r["turn_count"],
                summary=r["summary"],
                last_client_input=r["last_input"],
            )
            for r in rows[:limit]
        ]
        next_cursor = ""
        if len(rows) > limit:
            last = found[-1]
            next_cursor = encode_cursor(
                {"user_id": user_id, "last_ts": last.last_timestamp, "conversation_id": last.conversation_id}
            )
        return found, next_cursor

    async def save_summary(self, user_id: str, conversation_id: str, summary: str) -> None:
        check_id("conversation_id", conversation_id)

        def save(db: sqlite3.Connection) -> None:
            if _owned_header(db, user_id, conversation_id)["turn_count"] == 0:
                raise not_found_conversation(conversation_id)
            db.execute(
                "UPDATE conversation_headers SET summary = ? WHERE conversation_id = ?",
                (summary, conversation_id),
            )

        await self.db.run(save)

    async def delete_conversation(self, user_id: str, conversation_id: str) -> Deleted:
        check_id("conversation_id", conversation_id)

        def delete(db: sqlite3.Connection) -> Deleted:
            _owned_header(db, user_id, conversation_id)
            return _delete_conversation(db, conversation_id)

        return await self.db.run(delete)

    async def delete_user(self, user_id: str) -> Deleted:
        def delete(db: sqlite3.Connection) -> Deleted:
            deleted = Deleted()
            ids = [
                r["conversation_id"]
                for r in db.execute(
                    "SELECT conversation_id FROM conversation_headers WHERE user_id = ?", (user_id,)
                )
            ]
            for conversation_id in ids:
                one = _delete_conversation(db, conversation_id)
                deleted.turns += one.turns
                deleted.sessions += one.sessions
            deleted.conversations = len(ids)
            deleted.sessions += db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
            return deleted

        return await self.db.run(delete)
