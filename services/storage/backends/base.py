"""The contract of a storage backend: a conversation store and an audio store.

Split in two because the AWS backend is two services (DynamoDB for records, S3 for audio).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from echo.v1 import storage_pb2
from services.common.capabilities import BackendCapabilities
from services.common.errors import InvalidArgument, NotFound

# "{session_id}/{timestamp}_input.wav": a few path segments of safe characters, no "." or ".." parts.
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}){0,3}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def check_turn(turn: storage_pb2.Turn) -> None:
    """What every backend requires of a turn before writing it."""
    check_id("conversation_id", turn.conversation_id)
    check_id("session_id", turn.session_id)
    if not _TIMESTAMP.match(turn.timestamp):
        raise InvalidArgument(
            f"timestamp {turn.timestamp!r} must be ISO-8601 UTC like 2026-01-31T12:00:00.000000Z"
        )
    check_metadata(turn.metadata_json)
    for key in (turn.input_audio_key, turn.output_audio_key):
        if key:
            check_key(key)


def session_record(
    session: storage_pb2.Session, now: str, retention_days: int, now_s: float | None = None
) -> storage_pb2.Session:
    """What SaveSession stores and answers: checked, timed, with the retention ttl."""
    check_user(session.user_id)
    check_id("session_id", session.session_id)
    check_id("conversation_id", session.conversation_id)
    check_metadata(session.metadata_json)
    record = storage_pb2.Session()
    record.CopyFrom(session)
    record.created_at = record.created_at or now
    record.updated_at = now
    record.ttl = retention_ttl(record.ttl, retention_days, now_s)
    return record


def turn_record(turn: storage_pb2.Turn, retention_days: int, now_s: float | None = None) -> storage_pb2.Turn:
    """What SaveTurn stores and answers: checked, with the retention ttl."""
    check_user(turn.user_id)
    check_turn(turn)
    record = storage_pb2.Turn()
    record.CopyFrom(turn)
    record.ttl = retention_ttl(record.ttl, retention_days, now_s)
    return record


def check_metadata(metadata_json: str) -> None:
    if not metadata_json:
        return
    try:
        value = json.loads(metadata_json)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"metadata_json is not JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("metadata_json must be a JSON object")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise InvalidArgument(
            f"invalid audio key {key!r}: use up to 4 '/'-separated segments of [A-Za-z0-9_.-]"
        )
    return key


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(f"invalid {kind} {value!r}: 1-128 characters of [A-Za-z0-9_.:-]")
    return value


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEY_ID = re.compile(r"^k_[0-9a-f]{12}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_PAGE = 500


def check_user(user_id: str) -> str:
    # "." and ".." are ids by the pattern, but would climb out of a user's audio folder.
    if user_id in (".", ".."):
        raise InvalidArgument(f"invalid user_id {user_id!r}")
    return check_id("user_id", user_id)


def new_key_record(key: storage_pb2.ApiKey, now: str) -> storage_pb2.ApiKey:
    """The record CreateApiKey stores: checked, created now, not revoked."""
    check_user(key.user_id)
    check_key_id(key.key_id)
    check_sha256(key.key_sha256)
    if len(key.label) > 200:
        raise InvalidArgument("label is over 200 characters")
    return storage_pb2.ApiKey(
        key_id=key.key_id, user_id=key.user_id, key_sha256=key.key_sha256, label=key.label, created_at=now
    )


def check_usage(usage: storage_pb2.DailyUsage) -> None:
    check_user(usage.user_id)
    check_day(usage.day)
    if usage.audio_s < 0 or usage.cost_usd < 0 or usage.turns < 0:
        raise InvalidArgument("usage adds only: audio_s, cost_usd and turns must be >= 0")


def listed_key(key: storage_pb2.ApiKey) -> storage_pb2.ApiKey:
    """As ListApiKeys answers: without the hash."""
    listed = storage_pb2.ApiKey()
    listed.CopyFrom(key)
    listed.key_sha256 = ""
    return listed


def check_day(day: str) -> str:
    if not _DAY.match(day):
        raise InvalidArgument(f"day {day!r} must be a UTC day like 2026-01-31")
    return day


def check_key_id(key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise InvalidArgument(f"invalid key_id {key_id!r}: 'k_' and 12 hex digits")
    return key_id


def check_sha256(key_sha256: str) -> str:
    if not _SHA256.match(key_sha256):
        raise InvalidArgument("key_sha256 must be 64 lowercase hex digits")
    return key_sha256


def check_limit(limit: int) -> int:
    if limit < 0:
        raise InvalidArgument("limit must be >= 0")
    return min(limit or 50, MAX_PAGE)


def retention_ttl(ttl: int, retention_days: int, now: float | None = None) -> int:
    """The ttl a record is stored with: the caller's, else now + the retention (0: keep forever)."""
    if ttl or retention_days <= 0:
        return ttl
    return int(now if now is not None else time.time()) + retention_days * 86400


def encode_cursor(position: dict[str, Any]) -> str:
    """Opaque to clients: where the next page starts, as the backend names it."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, user_id: str) -> dict[str, Any] | None:
    """The position in ``cursor``; a cursor made for another user (or made up) is INVALID_ARGUMENT."""
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or position.get("user_id") != user_id:
        raise InvalidArgument("cursor is not one a ListConversations answer gave this user")
    return position


def not_found_conversation(conversation_id: str) -> NotFound:
    # One message for missing and another user's: the answer must not tell them apart.
    return NotFound(f"no conversation {conversation_id!r}")


def not_found_audio(key: str) -> NotFound:
    return NotFound(f"no audio {key!r}")


def not_found_session(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id!r}")


@dataclass
class Deleted:
    """What a delete removed; the audio keys are the ones the audio store must remove next."""

    conversations: int = 0
    turns: int = 0
    sessions: int = 0
    audio_keys: tuple[str, ...] = ()


def turn_audio_keys(turns: list[storage_pb2.Turn]) -> tuple[str, ...]:
    return tuple(sorted({k for t in turns for k in (t.input_audio_key, t.output_audio_key) if k}))


class ConversationStore(Protocol):
    """Every call names the user; another user's record is NotFound with the missing one's message."""

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        """NotFound when the session's conversation belongs to another user."""
        ...

    async def get_session(self, user_id: str, session_id: str) -> storage_pb2.Session:
        """Raises NotFound."""
        ...

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        """Idempotent on (conversation_id, timestamp): a retried save of the same turn_id replaces,
        never duplicates (nor counts twice); a different turn at the same key raises AlreadyExists;
        a conversation of another user is NotFound."""
        ...

    async def get_conversation(self, user_id: str, conversation_id: str) -> storage_pb2.Conversation:
        """Turns in timestamp order; raises NotFound for an unknown conversation."""
        ...

    async def list_conversations(
        self, user_id: str, limit: int, cursor: str = "", session_id: str = ""
    ) -> tuple[list[storage_pb2.ConversationSummary], str]:
        """The user's conversations, most recently active first, and the next page's cursor ("" on
        the last page)."""
        ...

    async def save_summary(self, user_id: str, conversation_id: str, summary: str) -> None:
        """Raises NotFound for a conversation without turns."""
        ...

    async def delete_conversation(self, user_id: str, conversation_id: str) -> Deleted:
        """Turns, header and summary; raises NotFound."""
        ...

    async def delete_user(self, user_id: str) -> Deleted:
        """Every session, turn and conversation of the user."""
        ...


class UserStore(Protocol):
    """API keys (by the sha256 of the key) and daily usage."""

    async def create_key(self, key: storage_pb2.ApiKey) -> storage_pb2.ApiKey:
        """AlreadyExists when the key_id or the hash is taken."""
        ...

    async def lookup_key(self, key_sha256: str) -> storage_pb2.ApiKey:
        """Raises NotFound; a revoked key comes back with revoked_at set."""
        ...

    async def list_keys(self, user_id: str = "") -> list[storage_pb2.ApiKey]:
        """Oldest first, key_sha256 left empty; every user's when user_id is empty."""
        ...

    async def revoke_key(self, key_id: str) -> storage_pb2.ApiKey:
        """Raises NotFound; a second revoke keeps the first revoked_at."""
        ...

    async def add_usage(self, usage: storage_pb2.DailyUsage) -> storage_pb2.DailyUsage:
        """Adds atomically; returns the day's total."""
        ...

    async def get_usage(self, user_id: str, day: str) -> storage_pb2.DailyUsage:
        """Zeros when nothing was recorded."""
        ...

    async def delete_user(self, user_id: str) -> int:
        """Removes the user's keys and usage; returns the number of keys removed."""
        ...


class AudioStore(Protocol):
    """Objects are per user: the same key of two users names two objects."""

    async def put(
        self, user_id: str, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        """Store the object atomically; returns its size. Nothing is left behind on failure."""
        ...

    def get(self, user_id: str, key: str) -> AsyncIterator[tuple[bytes, str]]:
        """(chunk, content_type) pairs; raises NotFound."""
        ...

    async def url(self, user_id: str, key: str) -> str:
        """A time-limited URL a client can fetch the object from, or "" when the store has none;
        NotFound for a missing object."""
        ...

    async def delete(self, user_id: str, keys: tuple[str, ...]) -> int:
        """Removes those of the keys that exist; returns how many."""
        ...

    async def delete_user(self, user_id: str) -> int:
        """Removes every object of the user; returns how many."""
        ...


class StorageBackend(Protocol):
    name: str
    capabilities: BackendCapabilities
    conversations: ConversationStore
    users: UserStore
    audio: AudioStore

    async def start(self) -> None: ...

    async def close(self) -> None: ...
