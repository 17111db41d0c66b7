"""One fallback mechanism for every service: an ordered list of backends of one Protocol.

``ECHO_STT_SERVICE=transcribe,whisper`` (likewise ``ECHO_LLM_SERVICE``, ``ECHO_TTS_SERVICE``) puts the
named backends in a ``FallbackChain``, tried in that order:

- A backend that fails with an availability error (``is_availability_error``: unavailable, throttled,
  past a deadline) is marked down and skipped for a cooldown that doubles with each consecutive
  failure, from ``cooldown_s`` up to ``max_cooldown_s``; once the cooldown is over the next request
  tries it again, and a success clears its record. Any other error (bad input, not found, no
  permission) is the caller's or the operator's to fix, goes straight back, and marks nothing down.
- A stream falls back only while nothing committed has reached the caller; after that the error
  propagates (the caller has output it cannot take back).
- When every backend is in its cooldown, requests fail at once with UNAVAILABLE and
  ``availability_changes`` reports False, which the gRPC server turns into NOT_SERVING health; it
  reports True again when a cooldown ends (a request will be tried again) or a backend recovers.
- ``name`` and ``capabilities`` are those of the backend serving now (the first one not down);
  ``names`` is the configured order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc

from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument, NotFound, ServiceError, Unavailable

log = logging.getLogger("echo.fallback")

T = TypeVar("T")

# The backend, not the request, is the problem: another backend may well succeed.
AVAILABILITY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)


def is_availability_error(error: BaseException) -> bool:
    if isinstance(error, ServiceError):
        return error.code in AVAILABILITY_CODES
    return isinstance(error, TimeoutError)


@dataclass
class FallbackSettings:
    cooldown_s: float = field(
        default=5.0, metadata={"help": "how long a failed backend is skipped; doubles per failure in a row"}
    )
    max_cooldown_s: float = field(default=300.0, metadata={"help": "the longest cooldown"})

    def __post_init__(self) -> None:
        if not 0 < self.cooldown_s <= self.max_cooldown_s:
            raise ConfigError(
                f"fallback cooldown_s ({self.cooldown_s}) must be positive and at most "
                f"max_cooldown_s ({self.max_cooldown_s})"
            )


def load_fallback_settings(service: str) -> FallbackSettings:
    """ECHO_<SERVICE>_FALLBACK_COOLDOWN_S and _MAX_COOLDOWN_S, or config.yaml's <service>_fallback."""
    return load_settings(
        FallbackSettings, prefix=f"ECHO_{service.upper()}_FALLBACK_", section=f"{service}_fallback"
    )


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


B = TypeVar("B", bound=Backend)


@dataclass
class _Record:
    failures: int = 0  # availability failures in a row
    down_until: float = float("-inf")  # clock time its cooldown ends
    last_error: str = ""


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an abandoned backend stream at once (``async for`` does not), so its cleanup runs now:
    an LLM stops generating, an HTTP response is closed."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class FallbackChain(Generic[B]):
    """The shared part; services/<svc>/fallback.py wraps it in each service's Protocol."""

    def __init__(
        self,
        service: str,
        backends: Sequence[B],
        settings: FallbackSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ConfigError(f"{service}: a fallback chain needs at least one backend")
        self.service = service
        self.backends = list(backends)
        self.settings = settings if settings is not None else FallbackSettings()
        self.clock = clock  # time.monotonic is asyncio's clock too, so cooldown timers agree with it
        self._records = [_Record() for _ in self.backends]
        self._changed = asyncio.Event()

    # --- what the chain is now ---------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.backends]

    def _up(self, index: int) -> bool:
        return self.clock() >= self._records[index].down_until

    def _eligible(self) -> list[int]:
        return [i for i in range(len(self.backends)) if self._up(i)]

    @property
    def serving(self) -> B:
        """The backend a request goes to first now (the first configured one when all are down)."""
        eligible = self._eligible()
        return self.backends[eligible[0] if eligible else 0]

    @property
    def name(self) -> str:
        return self.serving.name

    @property
    def capabilities(self) -> BackendCapabilities:
        return self.serving.capabilities

    def available(self) -> bool:
        return bool(self._eligible())

    async def availability_changes(self) -> AsyncIterator[bool]:
        """Whether requests are tried now, then again each time that changes (a backend is marked
        down, recovers, or its cooldown ends)."""
        last: bool | None = None
        while True:
            self._changed.clear()
            now = self.available()
            if now != last:
                last = now
                yield now
            ends = [r.down_until for r in self._records if r.down_until > self.clock()]
            timeout = min(ends) - self.clock() if ends else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every backend. One that is unavailable at start is only marked down, so the others
        still serve; any other failure (a missing model, bad settings) stops the service."""
        for index, backend in enumerate(self.backends):
            try:
                await backend.start()
            except Exception as error:
                if not is_availability_error(error):
                    raise
                self._mark_down(index, error)
        if not self.available():
            raise Unavailable(f"{self.service}: no backend could start: {self._summary()}")

    async def close(self) -> None:
        for backend in self.backends:
            try:
                await backend.close()
            except Exception:
                log.exception("%s backend %s failed to close", self.service, backend.name)

    # --- the record ---------------------------------------------------------------------------------

    def _mark_down(self, index: int, error: BaseException) -> None:
        record = self._records[index]
        record.failures += 1
        cooldown = min(self.settings.max_cooldown_s, self.settings.cooldown_s * 2 ** (record.failures - 1))
        record.down_until = self.clock() + cooldown
        record.last_error = f"{type(error).__name__}: {error}"
        log.warning(
            "%s backend %s is down (%s); skipped for %.0f s",
            self.service,
            self.backends[index].name,
            record.last_error,
            cooldown,
        )
        self._changed.set()

    def _mark_up(self, index: int) -> None:
        record = self._records[index]
        if record.failures:
            log.info("%s backend %s is back", self.service, self.backends[index].name)
            self._records[index] = _Record()
            self._changed.set()

    def _summary(self) -> str:
        now = self.clock()
        return "; ".join(
            f"{b.name}: {r.last_error or 'not tried'} (retried in {max(0.0, r.down_until - now):.0f} s)"
            for b, r in zip(self.backends, self._records, strict=True)
        )

    def _candidates(self) -> list[int]:
        eligible = self._eligible()
        if not eligible:
            raise Unavailable(f"every {self.service} backend is down: {self._summary()}")
        return eligible

    @staticmethod
    def _refusal(outage: Exception | None, backend: Backend, error: Exception) -> Exception:
        """What the caller hears when a backend taking over refuses a request that the one before it
        failed to serve: the outage is the cause (Whisper refusing an s3:// uri is not the caller's
        mistake), so its status stands, with the refusal said. Otherwise the error itself."""
        if outage is None or not isinstance(error, InvalidArgument | NotFound):
            return error
        return type(outage)(f"{outage} ({backend.name} cannot take over: {error})")

    # --- calls ----------------------------------------------------------------------------------------

    async def call_in_turn(self, operation: Callable[[B, int], Awaitable[T]]) -> T:
        """``operation(backend, index)`` on each backend in turn until one answers."""
        last: Exception | None = None
        for index in self._candidates():
            try:
                result = await operation(self.backends[index], index)
            except Exception as error:
                if not is_availability_error(error):
                    raise self._refusal(last, self.backends[index], error) from error
                self._mark_down(index, error)
                last = error
                continue
            self._mark_up(index)
            return result
        assert last is not None
        raise last

    async def stream_in_turn(
        self,
        open_stream: Callable[[B, int], AsyncIterator[T]],
        committed: Callable[[T], bool] = lambda item: True,
    ) -> AsyncIterator[T]:
        """The items of ``open_stream(backend, index)`` from the first backend that does not fail
        before a ``committed`` item has been passed on; after one has, a failure propagates."""
        last: Exception | None = None
        for index in self._candidates():
            delivered = False
            try:
                async with _closing(open_stream(self.backends[index], index)) as items:
                    async for item in items:
                        delivered = delivered or committed(item)
                        yield item
            except Exception as error:
                if not is_availability_error(error):
                    raise self._refusal(last, self.backends[index], error) from error
                self._mark_down(index, error)
                if delivered:
                    raise
                last = error
                continue
            self._mark_up(index)
            return
        assert last is not None
        raise last


class ReplayBuffer:
    """Reads a caller's stream once, in its own task, and keeps every item, so each backend in turn
    can be fed the whole stream from its first item. The reading task is the only reader of the
    caller's stream: a backend that is abandoned mid-read cannot break it for the next one."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        self.items: list[Any] = []
        self.error: BaseException | None = None  # the caller's stream failed (a second config, say)
        self._ended = False
        self._grew = asyncio.Event()
        self._task = asyncio.create_task(self._read(source))

    async def _read(self, source: AsyncIterator[Any]) -> None:
        try:
            async for item in source:
                self.items.append(item)
                self._grew.set()
        except Exception as error:
            self.error = error
        finally:
            self._ended = True
            self._grew.set()

    async def replay(self) -> AsyncIterator[Any]:
        """Everything received so far, then the rest as it arrives; ends when the caller's stream does."""
        position = 0
        while True:
            while position < len(self.items):
                yield self.items[position]
                position += 1
            if self._ended:
                return
            self._grew.clear()
            await self._grew.wait()

    def raise_caller_error(self) -> None:
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
