"""Output: the session's event sink, and each reply's channel with the hold-back speculation needs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from pydantic import BaseModel

from gateway import events as ev
from gateway.turn.clock import ms, now
from gateway.turn.reply import Reply

log = logging.getLogger("echo.gateway.output")


class Sink(Protocol):
    """Where the session's frames go: the WebSocket, or a test's recorder."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class Output:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.closed = False
        self.session_id = ""  # for log lines
        self._lock = asyncio.Lock()

    async def send(self, event: BaseModel) -> None:
        await self._write(ev.to_wire(event))

    async def send_audio(self, pcm: bytes) -> None:
        await self._write(pcm)

    async def error(
        self, code: str, message: str, turn_id: str | None = None, retry_after_s: float | None = None
    ) -> None:
        log.info("session %s error %s: %s", self.session_id or "-", code, message)
        await self.send(
            ev.Error(code=ev.ErrorCode(code), message=message, turn_id=turn_id, retry_after_s=retry_after_s)
        )

    async def _write(self, frame: str | bytes) -> None:
        if self.closed:
            return
        async with self._lock:
            try:
                if isinstance(frame, bytes):
                    await self.sink.send_bytes(frame)
                else:
                    await self.sink.send_text(frame)
            except Exception:  # the client went away; the receive loop notices and ends the session
                self.closed = True


class Hold(Enum):
    OPEN = "open"  # output flows to the client
    HELD = "held"  # buffered: a speculative reply whose turn is not confirmed yet
    DISCARDED = "discarded"  # a speculation nobody will hear: output is dropped


class AudioStream(Enum):
    NOT_STARTED = "not_started"
    OPEN = "open"
    CLOSED = "closed"


class ReplyChannel:
    """Everything one reply sends goes through here, so a held reply can buffer it and a released one
    flushes it in order. Delivery is where playout and voice-to-voice are measured."""

    def __init__(self, output: Output, reply: Reply, held: bool, on_audio_out: Callable[[Reply], None]):
        self.output = output
        self.reply = reply
        self.hold = Hold.HELD if held else Hold.OPEN
        self.audio = AudioStream.NOT_STARTED
        self.buffer: list[BaseModel | bytes] = []
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self._on_audio_out = on_audio_out
        self._flushing = asyncio.Lock()

    async def send(self, item: BaseModel | bytes) -> None:
        if self.hold is Hold.DISCARDED:
            return
        if self.hold is Hold.HELD or self._flushing.locked():
            self.buffer.append(item)
            return
        await self._deliver(item)

    async def start_audio(self, sample_rate: int) -> None:
        if self.audio is AudioStream.NOT_STARTED:
            self.audio = AudioStream.OPEN
            await self.send(
                ev.ResponseAudioStart(
                    turn_id=self.reply.turn_id, encoding="pcm_s16le", sample_rate=sample_rate, channels=1
                )
            )

    async def end_audio(self) -> None:
        if self.audio is AudioStream.OPEN:
            self.audio = AudioStream.CLOSED
            await self.send(ev.ResponseAudioEnd(turn_id=self.reply.turn_id))

    async def error(self, code: str, message: str) -> None:
        log.info("session %s error %s: %s", self.output.session_id or "-", code, message)
        await self.send(ev.Error(code=ev.ErrorCode(code), message=message, turn_id=self.reply.turn_id))

    async def release(self) -> None:
        """Send the buffered output in order; later output then flows directly."""
        if self.hold is not Hold.HELD:
            return
        self.hold = Hold.OPEN
        async with self._flushing:
            while self.buffer:
                await self._deliver(self.buffer.pop(0))
        self.released.set()

    def discard(self) -> None:
        self.hold = Hold.DISCARDED
        self.buffer.clear()

    async def _deliver(self, item: BaseModel | bytes) -> None:
        if isinstance(item, bytes):
            await self.output.send_audio(item)
            self.reply.playout.on_sent(len(item))
            return
        if isinstance(item, ev.ResponseAudioStart):
            # Measured when the audio really leaves, also for a reply that was held back.
            self.reply.timings["voice_to_voice"] = ms(now() - self.reply.speech_end)
            await self.output.send(item)
            self._on_audio_out(self.reply)
            return
        await self.output.send(item)
