"""In-memory storage for deterministic tests: local.py's contract without a disk, plus fault injection.

Record times come from a logical clock (a fixed epoch plus one microsecond per write), not the wall
clock, so every run stores the same values. Nothing survives the process.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument, ServiceError, Unavailable
from services.storage.backends.base import check_key, not_found_audio
from services.storage.backends.fake_records import MemoryConversationStore, MemoryUserStore
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


class MemoryAudioStore:
    def __init__(self, faults: Faults, chunk_bytes: int) -> None:
        self.faults = faults
        self.chunk_bytes = chunk_bytes
        # (user_id, key) -> (data, content type): the same key of two users is two objects.
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    async def put(
        self, user_id: str, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
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
        self.objects[(user_id, key)] = (b"".join(parts), content_type or "application/octet-stream")
        return size

    async def get(self, user_id: str, key: str) -> AsyncIterator[tuple[bytes, str]]:
        self.faults.check("get")
        check_key(key)
        if (user_id, key) not in self.objects:
            raise not_found_audio(key)
        data, content_type = self.objects[(user_id, key)]
        for offset in range(0, len(data), self.chunk_bytes):
            yield data[offset : offset + self.chunk_bytes], content_type

    async def url(self, user_id: str, key: str) -> str:
        self.faults.check("url")
        if (user_id, key) not in self.objects:
            raise not_found_audio(key)
        return ""  # no object store: audio is served through GetAudio, as with local storage

    async def delete(self, user_id: str, keys: tuple[str, ...]) -> int:
        self.faults.check("delete")
        return sum(self.objects.pop((user_id, k), None) is not None for k in keys)

    async def delete_user(self, user_id: str) -> int:
        self.faults.check("delete_audio_of_user")
        owned = [k for k in self.objects if k[0] == user_id]
        for k in owned:
            del self.objects[k]
        return len(owned)


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
        clock = LogicalClock(self.settings.epoch)
        epoch_s = int(clock.epoch.timestamp())
        self.conversations = MemoryConversationStore(
            self.faults.check, clock, epoch_s, service.retention_days
        )
        self.users = MemoryUserStore(self.faults.check, clock)
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
