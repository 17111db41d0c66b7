"""The contract of a storage backend: a conversation store and an audio store.

Split in two because the AWS backend is two services (DynamoDB for records, S3 for audio).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Protocol

from echo.v1 import storage_pb2
from services.common.capabilities import BackendCapabilities
from services.common.errors import InvalidArgument

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


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(f"invalid {kind} {value!r}: 1-128 characters of [A-Za-z0-9_.:-]")
    return value


class ConversationStore(Protocol):
    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session: ...

    async def get_session(self, session_id: str) -> storage_pb2.Session:
        """Raises NotFound."""
        ...

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        """Idempotent on (conversation_id, timestamp): a retried save of the same turn_id replaces,
        never duplicates; a different turn at the same key raises AlreadyExists."""
        ...

    async def get_conversation(self, conversation_id: str) -> storage_pb2.Conversation:
        """Turns in timestamp order; raises NotFound for an unknown conversation."""
        ...

    async def list_conversations(
        self, limit: int, session_id: str = ""
    ) -> list[storage_pb2.ConversationSummary]:
        """Most recently active first."""
        ...

    async def save_summary(self, conversation_id: str, summary: str) -> None:
        """Raises NotFound for a conversation without turns."""
        ...


class AudioStore(Protocol):
    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int) -> int:
        """Store the object atomically; returns its size. Nothing is left behind on failure."""
        ...

    def get(self, key: str) -> AsyncIterator[tuple[bytes, str]]:
        """(chunk, content_type) pairs; raises NotFound."""
        ...

    async def url(self, key: str) -> str:
        """A time-limited URL a client can fetch the object from, or "" when the store has none."""
        ...


class StorageBackend(Protocol):
    name: str
    capabilities: BackendCapabilities
    conversations: ConversationStore
    audio: AudioStore

    async def start(self) -> None: ...

    async def close(self) -> None: ...
