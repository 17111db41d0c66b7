"""The fake backend's records, in memory: local.py's contract (ownership, headers, keys, usage)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from echo.v1 import storage_pb2
from services.common.errors import AlreadyExists, NotFound
from services.storage.backends.base import (
    Deleted,
    check_day,
    check_id,
    check_key_id,
    check_limit,
    check_sha256,
    check_usage,
    check_user,
    decode_cursor,
    encode_cursor,
    listed_key,
    new_key_record,
    not_found_conversation,
    not_found_session,
    session_record,
    turn_audio_keys,
    turn_record,
)


@dataclass
class MemoryConversation:
    user_id: str
    turns: dict[str, storage_pb2.Turn] = field(default_factory=dict)  # timestamp -> turn
    summary: str = ""


class MemoryConversationStore:
    def __init__(
        self, check: Callable[[str], None], clock: Callable[[], str], now_s: int, retention_days: int
    ):
        self.check = check  # fault injection: raises for a failing method
        self.clock = clock
        self.now_s = now_s  # the logical clock's epoch, so ttls are the same every run
        self.retention_days = retention_days
        self.sessions: dict[str, storage_pb2.Session] = {}
        self.conversations: dict[str, MemoryConversation] = {}

    def _claim(self, user_id: str, conversation_id: str) -> MemoryConversation:
        found = self.conversations.setdefault(conversation_id, MemoryConversation(user_id))
        if found.user_id != user_id:
            raise not_found_conversation(conversation_id)
        return found

    def _owned(self, user_id: str, conversation_id: str) -> MemoryConversation:
        check_id("conversation_id", conversation_id)
        found = self.conversations.get(conversation_id)
        if found is None or found.user_id != user_id:
            raise not_found_conversation(conversation_id)
        return found

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        self.check("save_session")
        record = session_record(session, self.clock(), self.retention_days, self.now_s)
        previous = self.sessions.get(session.session_id)
        if previous is not None and previous.user_id != session.user_id:
            raise not_found_session(session.session_id)
        self._claim(session.user_id, session.conversation_id)
        stored = storage_pb2.Session()
        stored.CopyFrom(record)
        stored.metadata_json = stored.metadata_json or "{}"
        if previous is not None:
            # As local.py's upsert: the stored session keeps the created_at it was first saved with.
            stored.created_at = previous.created_at
        self.sessions[session.session_id] = stored
        return record

    async def get_session(self, user_id: str, session_id: str) -> storage_pb2.Session:
        self.check("get_session")
        check_id("session_id", session_id)
        found = self.sessions.get(session_id)
        if found is None or found.user_id != user_id:
            raise not_found_session(session_id)
        copy = storage_pb2.Session()
        copy.CopyFrom(found)
        return copy

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        self.check("save_turn")
        record = turn_record(turn, self.retention_days, self.now_s)
        conversation = self._claim(turn.user_id, turn.conversation_id)
        existing = conversation.turns.get(turn.timestamp)
        if existing is not None and existing.turn_id != turn.turn_id:
            raise AlreadyExists(
                f"conversation {turn.conversation_id!r} has another turn ({existing.turn_id!r}) "
                f"at {turn.timestamp}"
            )
        stored = storage_pb2.Turn()
        stored.CopyFrom(record)
        stored.metadata_json = stored.metadata_json or "{}"
        conversation.turns[turn.timestamp] = stored
        return record

    async def get_conversation(self, user_id: str, conversation_id: str) -> storage_pb2.Conversation:
        self.check("get_conversation")
        found = self._owned(user_id, conversation_id)
        if not found.turns and not found.summary:
            raise not_found_conversation(conversation_id)
        return storage_pb2.Conversation(
            conversation_id=conversation_id,
            turns=[found.turns[ts] for ts in sorted(found.turns)],
            summary=found.summary,
            user_id=user_id,
        )

    async def list_conversations(
        self, user_id: str, limit: int, cursor: str = "", session_id: str = ""
    ) -> tuple[list[storage_pb2.ConversationSummary], str]:
        self.check("list_conversations")
        limit = check_limit(limit)
        after = decode_cursor(cursor, user_id)
        found = []
        for conversation_id, c in self.conversations.items():
            turns = c.turns
            if c.user_id != user_id or not turns:
                continue
            if session_id and all(t.session_id != session_id for t in turns.values()):
                continue
            first, last = min(turns), max(turns)
            found.append(
                storage_pb2.ConversationSummary(
                    conversation_id=conversation_id,
                    first_timestamp=first,
                    last_timestamp=last,
                    turn_count=len(turns),
                    summary=c.summary,
                    last_client_input=turns[last].client_input,
                )
            )
        # Most recent first, ties by id (as local.py), so the order never depends on insertion.
        found.sort(key=lambda c: (c.last_timestamp, c.conversation_id), reverse=True)
        if after is not None:
            position = (str(after.get("last_ts")), str(after.get("conversation_id")))
            found = [c for c in found if (c.last_timestamp, c.conversation_id) < position]
        page = found[:limit]
        next_cursor = ""
        if len(found) > limit:
            next_cursor = encode_cursor(
                {
                    "user_id": user_id,
                    "last_ts": page[-1].last_timestamp,
                    "conversation_id": page[-1].conversation_id,
                }
            )
        return page, next_cursor

    async def save_summary(self, user_id: str, conversation_id: str, summary: str) -> None:
        self.check("save_summary")
        found = self._owned(user_id, conversation_id)
        if not found.turns:
            raise not_found_conversation(conversation_id)
        found.summary = summary

    async def delete_conversation(self, user_id: str, conversation_id: str) -> Deleted:
        self.check("delete_conversation")
        found = self._owned(user_id, conversation_id)
        del self.conversations[conversation_id]
        sessions = [s for s, v in self.sessions.items() if v.conversation_id == conversation_id]
        for session_id in sessions:
            del self.sessions[session_id]
        turns = list(found.turns.values())
        return Deleted(
            conversations=1, turns=len(turns), sessions=len(sessions), audio_keys=turn_audio_keys(turns)
        )

    async def delete_user(self, user_id: str) -> Deleted:
        self.check("delete_user")
        deleted = Deleted()
        for conversation_id in [i for i, c in self.conversations.items() if c.user_id == user_id]:
            deleted.conversations += 1
            deleted.turns += len(self.conversations.pop(conversation_id).turns)
        sessions = [s for s, v in self.sessions.items() if v.user_id == user_id]
        for session_id in sessions:
            del self.sessions[session_id]
        deleted.sessions = len(sessions)
        return deleted


class MemoryUserStore:
    def __init__(self, check: Callable[[str], None], clock: Callable[[], str]) -> None:
        self.check = check
        self.clock = clock
        self.keys: dict[str, storage_pb2.ApiKey] = {}  # key_id -> key
        self.usage: dict[tuple[str, str], storage_pb2.DailyUsage] = {}

    async def create_key(self, key: storage_pb2.ApiKey) -> storage_pb2.ApiKey:
        self.check("create_key")
        record = new_key_record(key, self.clock())
        if record.key_id in self.keys or any(k.key_sha256 == record.key_sha256 for k in self.keys.values()):
            raise AlreadyExists(f"an API key with id {record.key_id!r} or this hash exists")
        self.keys[record.key_id] = record
        return record

    async def lookup_key(self, key_sha256: str) -> storage_pb2.ApiKey:
        self.check("lookup_key")
        check_sha256(key_sha256)
        for key in self.keys.values():
            if key.key_sha256 == key_sha256:
                return key
        raise NotFound("no such API key")

    async def list_keys(self, user_id: str = "") -> list[storage_pb2.ApiKey]:
        self.check("list_keys")
        keys = sorted(self.keys.values(), key=lambda k: (k.created_at, k.key_id))
        return [listed_key(k) for k in keys if not user_id or k.user_id == user_id]

    async def revoke_key(self, key_id: str) -> storage_pb2.ApiKey:
        self.check("revoke_key")
        check_key_id(key_id)
        key = self.keys.get(key_id)
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        key.revoked_at = key.revoked_at or self.clock()
        return key

    async def add_usage(self, usage: storage_pb2.DailyUsage) -> storage_pb2.DailyUsage:
        self.check("add_usage")
        check_usage(usage)
        total = self.usage.setdefault(
            (usage.user_id, usage.day), storage_pb2.DailyUsage(user_id=usage.user_id, day=usage.day)
        )
        total.audio_s += usage.audio_s
        total.cost_usd += usage.cost_usd
        total.turns += usage.turns
        copy = storage_pb2.DailyUsage()
        copy.CopyFrom(total)
        return copy

    async def get_usage(self, user_id: str, day: str) -> storage_pb2.DailyUsage:
        self.check("get_usage")
        check_user(user_id)
        check_day(day)
        found = self.usage.get((user_id, day))
        return storage_pb2.DailyUsage(user_id=user_id, day=day) if found is None else found

    async def delete_user(self, user_id: str) -> int:
        self.check("delete_user_keys")
        keys = [k for k, v in self.keys.items() if v.user_id == user_id]
        for key_id in keys:
            del self.keys[key_id]
        for day in [d for d in self.usage if d[0] == user_id]:
            del self.usage[day]
        return len(keys)
