"""A small client for the /v1/voice protocol, used by `echo-voice talk|chat`, the tests and bench/."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from pydantic import BaseModel, ValidationError

from echo_voice.credentials import load_api_key
from gateway.events import (
    SERVER_TYPES,
    Error,
    InputAudio,
    InputCommit,
    ResponseAudioStart,
    ResponseDone,
    ResponseTextDelta,
    ServerEvent,
    SessionStart,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    parse_server_event,
    to_wire,
)

# With talk(commit_grace_s=...): how long after the audio ends to wait for the server's VAD to end the
# turn before the client commits it itself (what `echo-voice talk` does).
COMMIT_GRACE_S = 2.0


class TurnTimeout(TimeoutError):
    """The gateway did not finish a turn in time; the message says what was still missing."""


class InvalidServerEvent(ValueError):
    """The gateway sent a text frame that is not one of the protocol's events (a gateway bug)."""


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
class Closed:
    """Not a server event: the connection closed (``{"type": "connection.closed"}`` as a dict)."""

    type: str = "connection.closed"


@dataclass
class Received:
    """One text frame from the gateway: the typed event, and the JSON object as it was sent (plus
    ``_received_at``, the client's perf_counter() on arrival, for latency figures)."""

    event: ServerEvent | Closed
    raw: dict[str, Any]


class AudioFrame(bytes):
    """A binary frame of reply audio, stamped with the client's perf_counter() on arrival: a reader
    may take it from the queue much later (after streaming the rest of the user's audio)."""

    received_at: float = 0.0


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
    # Who ended the user's turn: the server's VAD (speech.stopped after the last speech.started), the
    # client (it sent input.commit), or both (a commit after the VAD had ended it does nothing).
    vad_ended_turn: bool = False
    committed_by_client: bool = False


class GatewayRefused(ConnectionError):
    """The WebSocket upgrade was answered with an HTTP error (docs/protocol.md, "Authentication")."""

    def __init__(self, status: int, body: bytes) -> None:
        try:
            error = json.loads(body)["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "", body.decode(errors="replace")[:200]
        hint = ""
        if status == 401:
            hint = " (set ECHO_API_KEY, or create a key with `echo-voice keys create --user NAME`)"
        super().__init__(f"the gateway refused the session: HTTP {status} {code}: {message}{hint}")
        self.status, self.code = status, code


class VoiceClient:
    def __init__(self, url: str, token: str | None = None) -> None:
        """``token``: the API key or JWT to send (default: ECHO_API_KEY or the credentials file)."""
        self.url = url
        self.token = load_api_key() if token is None else token
        self.ws: Any = None
        self.started: dict[str, Any] = {}
        self.queue: asyncio.Queue[Received | AudioFrame | InvalidServerEvent] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VoiceClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            self.ws = await websockets.connect(self.url, max_size=None, additional_headers=headers)
        except websockets.InvalidStatus as e:
            raise GatewayRefused(e.response.status_code, e.response.body or b"") from None
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                received_at = time.perf_counter()
                if isinstance(message, bytes):
                    frame = AudioFrame(message)
                    frame.received_at = received_at
                    self.queue.put_nowait(frame)
                    continue
                try:
                    event = parse_server_event(message)
                except ValidationError as e:
                    # Raised to whoever reads next: a malformed event must not pass as a missing one.
                    self.queue.put_nowait(InvalidServerEvent(f"not a protocol event: {message[:200]} ({e})"))
                    continue
                raw = json.loads(message)
                raw["_received_at"] = received_at
                self.queue.put_nowait(Received(event, raw))
        except websockets.ConnectionClosed:
            pass
        closed = Closed()
        self.queue.put_nowait(Received(closed, {"type": closed.type}))

    async def send(self, message: BaseModel | dict[str, Any]) -> None:
        """A client message (one of gateway/events.py's classes); a dict is sent as it is, so tests
        can send what the classes would refuse."""
        await self.ws.send(to_wire(message) if isinstance(message, BaseModel) else json.dumps(message))

    async def send_audio(self, pcm: bytes) -> None:
        await self.ws.send(pcm)

    async def receive(self, timeout: float = 60.0) -> Received | bytes:
        """The next audio frame or typed event; raises InvalidServerEvent for a malformed one."""
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, InvalidServerEvent):
            raise item
        return item

    async def next_event(self, timeout: float = 60.0) -> dict[str, Any] | bytes:
        item = await self.receive(timeout)
        return item if isinstance(item, bytes) else item.raw

    async def expect(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next JSON event of type ``kind``; fails on anything else except audio/progress."""
        if kind not in SERVER_TYPES:
            raise ValueError(f"{kind!r} is not a server event; expected one of {list(SERVER_TYPES)}")
        deadline = time.monotonic() + timeout
        while True:
            item = await self.receive(max(0.1, deadline - time.monotonic()))
            if isinstance(item, bytes):
                continue
            if item.event.type == kind:
                return item.raw
            if isinstance(item.event, Error | Closed):
                raise UnexpectedEvent(kind, item.raw)

    async def start(self, sample_rate: int = 16000, **options: Any) -> dict[str, Any]:
        """session.start with pcm_s16le mono input at ``sample_rate``; ``options`` are SessionStart's
        other fields (``output_audio``, ``voice``, ``language``, ``conversation_id``)."""
        await self.send(SessionStart(audio=InputAudio(sample_rate=sample_rate), **options))
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

    async def commit(self, result: TurnResult) -> None:
        await self.send(InputCommit())
        result.committed_by_client = True

    async def collect_turn(
        self, result: TurnResult | None = None, timeout: float = 180.0, commit_after: float | None = None
    ) -> TurnResult:
        """Read events until response.done (or an error that ends the turn). With ``commit_after``,
        send input.commit at that perf_counter() time unless the server's VAD has ended the turn
        (transcript.final or speech.stopped) by then. Raises TurnTimeout after ``timeout`` seconds."""
        result = result or TurnResult()
        deadline = time.monotonic() + timeout
        while True:
            if commit_after is not None and time.perf_counter() >= commit_after:
                commit_after = None
                if not result.vad_ended_turn and not result.transcript:
                    await self.commit(result)
            wait = deadline - time.monotonic()
            if commit_after is not None:
                wait = min(wait, commit_after - time.perf_counter())
            try:
                item = await self.receive(max(0.01, wait))
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
                raise TurnTimeout(self._missing(result, timeout)) from None
            if isinstance(item, bytes):
                if result.first_audio_at is None:
                    stamped = isinstance(item, AudioFrame) and item.received_at
                    result.first_audio_at = stamped or time.perf_counter()
                result.audio += item
                continue
            result.events.append(item.raw)
            if self._record(result, item):
                return result

    @staticmethod
    def _record(result: TurnResult, item: Received) -> bool:
        """Note one event in ``result``; True when it ends the turn."""
        event = item.event
        if isinstance(event, SpeechStarted):
            result.vad_ended_turn = False
        elif isinstance(event, SpeechStopped):
            result.vad_ended_turn = True
        elif isinstance(event, TranscriptPartial):
            result.partials.append(event.text)
        elif isinstance(event, TranscriptFinal):
            result.transcript, result.turn_id = event.text, event.turn_id
            return not event.text  # nothing intelligible: no reply follows
        elif isinstance(event, ResponseTextDelta):
            result.deltas.append(event.delta)
            result.turn_id = event.turn_id
        elif isinstance(event, ResponseAudioStart):
            result.sample_rate = event.sample_rate
        elif isinstance(event, ResponseDone):
            result.done, result.reply_text = item.raw, event.text
            return True
        elif isinstance(event, Error):
            result.errors.append(item.raw)
            # An error outside a turn ends the wait; so does a failed transcription, after which
            # no reply follows for that utterance (docs/protocol.md, "STT fails"), and a refused turn
            # ("Quotas": rate_limited, quota_exceeded).
            return not event.turn_id or event.code.startswith("stt_") or event.retry_after_s is not None
        return isinstance(event, Closed)

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
        silence_s: float = 2.0,
        timeout: float = 180.0,
        commit_grace_s: float | None = None,
    ) -> TurnResult:
        """Speak ``pcm``, then ``silence_s`` of silence, and wait for the server's VAD to end the turn
        (the default 2 s is longer than the 1.8 s that ends a turn Smart Turn calls unfinished: a
        client that stops sending audio stops the VAD's clock too).
        Sent faster than real time, the turn is committed at once (VAD timing means nothing then). In
        real time, only with ``commit_grace_s`` does the client commit the turn itself when the VAD has
        not ended it that long after the audio's end. ``committed_by_client`` and ``vad_ended_turn``
        in the result say which happened."""
        result = TurnResult(audio_started_at=time.perf_counter())
        await self.stream_audio(pcm, sample_rate, realtime)
        result.speech_sent_at = time.perf_counter()
        await self.stream_audio(b"\0" * int(sample_rate * silence_s) * 2, sample_rate, realtime)
        if not realtime:
            await self.commit(result)
            return await self.collect_turn(result, timeout)
        commit_after = None if commit_grace_s is None else time.perf_counter() + commit_grace_s
        return await self.collect_turn(result, timeout, commit_after=commit_after)
