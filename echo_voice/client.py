"""A small client for the /v1/voice protocol, used by `echo-voice talk|chat`, the tests and bench/."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets

COMMIT_GRACE_S = 2.0  # after the audio ends, how long `talk` waits for the server's VAD to end the turn


class TurnTimeout(TimeoutError):
    """The gateway did not finish a turn in time; the message says what was still missing."""


class UnexpectedEvent(AssertionError):
    """An error (or the connection closing) arrived where another event was expected."""

    def __init__(self, expected: str, event: dict[str, Any]) -> None:
        self.event = event
        if event.get("type") == "error":
            got = f"error [{event.get('code')}] {event.get('message')}"
        else:
            got = "the connection closed"
        super().__init__(f"expected {expected}, got {got}")


@dataclass
class TurnResult:
    turn_id: str = ""
    transcript: str = ""
    partials: list[str] = field(default_factory=list)
    reply_text: str = ""
    deltas: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    sample_rate: int = 0
    done: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Client-side clock: when the client finished sending speech, and when the first reply audio arrived.
    speech_sent_at: float | None = None
    first_audio_at: float | None = None
    audio_started_at: float | None = None  # when the client began sending the utterance


class VoiceClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None
        self.started: dict[str, Any] = {}
        self.queue: asyncio.Queue[dict[str, Any] | bytes] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VoiceClient:
        self.ws = await websockets.connect(self.url, max_size=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.queue.put_nowait(message)
                else:
                    event = json.loads(message)
                    event["_received_at"] = time.perf_counter()  # client clock, for latency figures
                    self.queue.put_nowait(event)
        except websockets.ConnectionClosed:
            pass
        self.queue.put_nowait({"type": "connection.closed"})

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def send_audio(self, pcm: bytes) -> None:
        await self.ws.send(pcm)

    async def next_event(self, timeout: float = 60.0) -> dict[str, Any] | bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def expect(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next JSON event of type ``kind``; fails on anything else except audio/progress."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next_event(max(0.1, deadline - time.monotonic()))
            if isinstance(event, dict) and event.get("type") == kind:
                return event
            if isinstance(event, dict) and event.get("type") in ("error", "connection.closed"):
                raise UnexpectedEvent(kind, event)

    async def start(self, sample_rate: int = 16000, **options: Any) -> dict[str, Any]:
        await self.send(
            {
                "type": "session.start",
                "audio": {"encoding": "pcm_s16le", "sample_rate": sample_rate, "channels": 1},
                **options,
            }
        )
        self.started = await self.expect("session.started")
        return self.started

    async def stream_audio(
        self, pcm: bytes, sample_rate: int, realtime: bool = True, chunk_s: float = 0.02
    ) -> None:
        step = int(sample_rate * chunk_s) * 2
        t0 = time.perf_counter()
        for i in range(0, len(pcm), step):
            await self.send_audio(pcm[i : i + step])
            if realtime:  # pace like a microphone, against the clock so sleeps don't drift
                ahead = t0 + (i + step) / 2 / sample_rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)

    async def collect_turn(
        self, result: TurnResult | None = None, timeout: float = 180.0, commit_after: float | None = None
    ) -> TurnResult:
        """Read events until response.done (or an error that ends the turn). With ``commit_after``,
        send input.commit at that perf_counter() time unless the server's VAD has ended the turn
        (transcript.final or speech.stopped) by then. Raises TurnTimeout after ``timeout`` seconds."""
        result = result or TurnResult()
        deadline = time.monotonic() + timeout
        vad_ended = False
        while True:
            if commit_after is not None and time.perf_counter() >= commit_after:
                commit_after = None
                if not vad_ended and not result.transcript:
                    await self.send({"type": "input.commit"})
            wait = deadline - time.monotonic()
            if commit_after is not None:
                wait = min(wait, commit_after - time.perf_counter())
            try:
                event = await self.next_event(max(0.01, wait))
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
                raise TurnTimeout(self._missing(result, timeout)) from None
            if isinstance(event, bytes):
                if result.first_audio_at is None:
                    result.first_audio_at = time.perf_counter()
                result.audio += event
                continue
            result.events.append(event)
            kind = event.get("type")
            if kind == "speech.started":
                vad_ended = False
            elif kind == "speech.stopped":
                vad_ended = True
            elif kind == "transcript.partial":
                result.partials.append(event["text"])
            elif kind == "transcript.final":
                result.transcript = event["text"]
                result.turn_id = event["turn_id"]
                if not event["text"]:
                    return result
            elif kind == "response.text.delta":
                result.deltas.append(event["delta"])
                result.turn_id = event["turn_id"]
            elif kind == "response.audio.start":
                result.sample_rate = event["sample_rate"]
            elif kind == "response.done":
                result.done = event
                result.reply_text = event["text"]
                return result
            elif kind == "error":
                result.errors.append(event)
                # An error outside a turn ends the wait; so does a failed transcription, after which
                # no reply follows for that utterance (docs/protocol.md, "STT fails").
                if not event.get("turn_id") or event.get("code", "").startswith("stt_"):
                    return result
            elif kind == "connection.closed":
                return result

    @staticmethod
    def _missing(result: TurnResult, timeout: float) -> str:
        if result.deltas:
            got = "part of the reply but no response.done"
        elif result.transcript:
            got = "the transcript but no reply"
        else:
            got = "no transcript and no reply"
        return f"gave up on the turn after {timeout:g} s: the gateway sent {got}"

    async def talk(
        self,
        pcm: bytes,
        sample_rate: int,
        realtime: bool = True,
        silence_s: float = 1.0,
        timeout: float = 180.0,
    ) -> TurnResult:
        """Speak ``pcm``, then silence so server VAD ends the turn. Sent faster than real time, the
        turn is committed at once (VAD timing means nothing then); in real time, input.commit follows
        when the VAD has not ended the turn within COMMIT_GRACE_S of the audio's end."""
        result = TurnResult(audio_started_at=time.perf_counter())
        await self.stream_audio(pcm, sample_rate, realtime)
        result.speech_sent_at = time.perf_counter()
        await self.stream_audio(b"\0" * int(sample_rate * silence_s) * 2, sample_rate, realtime)
        if not realtime:
            await self.send({"type": "input.commit"})
            return await self.collect_turn(result, timeout)
        return await self.collect_turn(result, timeout, commit_after=time.perf_counter() + COMMIT_GRACE_S)
