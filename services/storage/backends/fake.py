"""In-memory storage for deterministic tests: local.py's contract without a disk, plus fault injection.

Record times come from a logical clock (a fixed epoch plus one microsecond per write), not the wall
clock, so every run stores the same values. Nothing survives the process.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from echo.v1 import storage_pb2
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, ServiceError, Unavailable
from services.storage.backends.base import check_id, check_key, check_turn
from services.storage.config import StorageSettings


@dataclass
class FakeStorageSettings:
    chunk_bytes: int = field(default=64 * 1024, metadata={"help": "GetAudio chunk size"})
    epoch: str = field(
        default="2026-01-01T00:00:00.000000Z", metadata={"help": "first value of the logical clock"}
    )


def load_fake_settings() -> FakeStorageSettings:
    return load_settings(FakeStorageSettings, prefix="ECHO_STORAGE_FAKE_", section="storage_fake")


class Faults:
    """Injected failures: the next n calls (optionally only of some methods) raise a given error."""

    def __init__(self) -> None:
        self.remaining = 0
        self.error: ServiceError = Unavailable("storage is unavailable (injected fault)")
        self.methods: frozenset[str] = frozenset()
        self.calls: list[str] = []  # every store method called, in order
        self.raised = 0

    def check(self, method: str) -> None:
        self.calls.append(method)
        if self.remaining and (not self.methods or method in self.methods):
            self.remaining -= 1
            self.raised += 1
            # A fresh instance each time, so tracebacks do not pile up on one shared exception.
            raise type(self.error)(*self.error.args)


class MemoryConversationStore:
    def __init__(self, faults: Faults, clock: LogicalClock) -> None:
        self.faults = faults
        self.clock = clock
        self.sessions: dict[str, storage_pb2.Session] = {}
        self.turns: dict[str, dict[str, storage_pb2.Turn]] = {}  # conversation -> timestamp -> turn
        self.summaries: dict[str, str] = {}

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        self.faults.check("save_session")
        check_id("session_id", session.session_id)
        check_id("conversation_id", session.conversation_id)
        now = self.clock()
        record = storage_pb2.Session()
        record.CopyFrom(session)
        record.created_at = record.created_at or now
        record.updated_at = now
        stored = storage_pb2.Session()
        stored.CopyFrom(record)
        stored.metadata_json = stored.metadata_json or "{}"
        previous = self.sessions.get(session.session_id)
        if previous is not None:
            # As local.py's upsert: the stored session keeps the created_at it was first saved with.
            stored.created_at = previous.created_at
        self.sessions[session.session_id] = stored
        return record

    async def get_session(self, session_id: str) -> storage_pb2.Session:
        self.faults.check("get_session")
        check_id("session_id", session_id)
        if session_id not in self.sessions:
            raise NotFound(f"no session {session_id!r}")
        found = storage_pb2.Session()
        found.CopyFrom(self.sessions[session_id])
        return found

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        self.faults.check("save_turn")
        check_turn(turn)
        turns = self.turns.setdefault(turn.conversation_id, {})
        existing = turns.get(turn.timestamp)
        if existing is not None and existing.turn_id != turn.turn_id:
            raise AlreadyExists(
                f"conversation {turn.conversation_id!r} has another turn ({existing.turn_id!r}) "
                f"at {turn.timestamp}"
            )
        stored = storage_pb2.Turn()
        stored.CopyFrom(turn)
        stored.metadata_json = stored.metadata_json or "{}"
        turns[turn.timestamp] = stored
        return turn

    async def get_conversation(self, conversation_id: str) -> storage_pb2.Conversation:
        self.faults.check("get_conversation")
        check_id("conversation_id", conversation_id)
        turns = self.turns.get(conversation_id, {})
        if not turns and conversation_id not in self.summaries:
            raise NotFound(f"no conversation {conversation_id!r}")
        return storage_pb2.Conversation(
            conversation_id=conversation_id,
            turns=[turns[ts] for ts in sorted(turns)],
            summary=self.summaries.get(conversation_id, ""),
        )

    async def list_conversations(
        self, limit: int, session_id: str = ""
    ) -> list[storage_pb2.ConversationSummary]:
        self.faults.check("list_conversations")
        if limit < 0:
            raise InvalidArgument("limit must be >= 0")
        limit = min(limit or 50, 500)
        if session_id:
            check_id("session_id", session_id)
        found = []
        for conversation_id, turns in self.turns.items():
            if not turns or (session_id and all(t.session_id != session_id for t in turns.values())):
                continue
            first, last = min(turns), max(turns)
            found.append(
                storage_pb2.ConversationSummary(
                    conversation_id=conversation_id,
                    first_timestamp=first,
                    last_timestamp=last,
                    turn_count=len(turns),
                    summary=self.summaries.get(conversation_id, ""),
                    last_client_input=turns[last].client_input,
                )
            )
        # Most recent first; ties broken by id so the order never depends on insertion.
        found.sort(key=lambda c: c.conversation_id)
        found.sort(key=lambda c: c.last_timestamp, reverse=True)
        return found[:limit]

    async def save_summary(self, conversation_id: str, summary: str) -> None:
        self.faults.check("save_summary")
        check_id("conversation_id", conversation_id)
        if not self.turns.get(conversation_id):
            raise NotFound(f"no conversation {conversation_id!r}")
        self.summaries[conversation_id] = summary


class MemoryAudioStore:
    def __init__(self, faults: Faults, chunk_bytes: int) -> None:
        self.faults = faults
        self.chunk_bytes = chunk_bytes
        self.objects: dict[str, tuple[bytes, str]] = {}  # key -> (data, content type)

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int) -> int:
        self.faults.check("put")
        check_key(key)
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise InvalidArgument(f"audio object {key!r} is over the {max_bytes}-byte limit")
            parts.append(chunk)
        # Stored only once complete: readers see the old object or the whole new one.
        self.objects[key] = (b"".join(parts), content_type or "application/octet-stream")
        return size

    async def get(self, key: str) -> AsyncIterator[tuple[bytes, str]]:
        self.faults.check("get")
        check_key(key)
        if key not in self.objects:
            raise NotFound(f"no audio {key!r}")
        data, content_type = self.objects[key]
        for offset in range(0, len(data), self.chunk_bytes):
            yield data[offset : offset + self.chunk_bytes], content_type

    async def url(self, key: str) -> str:
        self.faults.check("url")
        return ""  # no object store: audio is served through GetAudio, as with local storage


class LogicalClock:
    """ISO-8601 UTC times that advance one microsecond per reading, from a fixed epoch."""

    def __init__(self, epoch: str) -> None:
        try:
            parsed = datetime.fromisoformat(epoch)
        except ValueError:
            raise ConfigError(f"ECHO_STORAGE_FAKE_EPOCH={epoch!r} is not an ISO-8601 time") from None
        self.epoch = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        self._ticks = itertools.count()

    def __call__(self) -> str:
        now = self.epoch + timedelta(microseconds=next(self._ticks))
        return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


class FakeStorageBackend:
    name = "fake"
    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, service: StorageSettings, settings: FakeStorageSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_fake_settings()
        self.faults = Faults()
        self.conversations = MemoryConversationStore(self.faults, LogicalClock(self.settings.epoch))
        self.audio = MemoryAudioStore(self.faults, self.settings.chunk_bytes)

    def fail_next(self, n: int, error: ServiceError | None = None, methods: Iterable[str] = ()) -> None:
        """The next ``n`` store calls (of ``methods`` only, when given: e.g. {"save_turn"}) raise
        ``error`` (default Unavailable), as an outage would; later calls work again."""
        self.faults.remaining = n
        self.faults.error = error or Unavailable("storage is unavailable (injected fault)")
        self.faults.methods = frozenset(methods)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
