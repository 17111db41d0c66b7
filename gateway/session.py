"""One WebSocket voice session: audio in, VAD, transcript, LLM tokens, speech out, memory.

Concurrency model: the receive loop never waits on a model. Each user utterance streams into its
own STT call; each reply runs as one task (LLM stream feeding a sentence queue, a speaker task
turning sentences into audio). Interrupting a reply cancels that task, which cancels its gRPC
calls, so no orphaned inference keeps running downstream. Saves to storage go through a per-session
queue with retries, so a slow or dead storage service never stalls the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from fastapi import WebSocket

from echo.v1 import audio_pb2, llm_pb2, storage_pb2, stt_pb2, tts_pb2
from gateway.clients import Services, rpc_error
from gateway.config import GatewaySettings
from gateway.protocol import (
    AudioSpec,
    ErrorCode,
    ProtocolError,
    number_field,
    parse_input_audio,
    parse_message,
    parse_output_audio,
    string_field,
)
from gateway.sentences import SentenceSplitter
from gateway.vad import RATE, SileroModel, StreamingVAD
from services.common.audio import float_to_pcm16, pcm16_to_float, resample, rms_dbfs, to_mono, wav_bytes

log = logging.getLogger("echo.gateway.session")

PREROLL_S = 0.3  # audio kept from before the VAD fired, so the first syllable is not clipped
OUTPUT_FRAME_S = 0.1  # reply audio is sent in frames this long
# After the estimated end of playback, how long to wait for a client that reports its playback
# position (its player may lag the server's clock a little) before the reply counts as heard.
PLAYOUT_GRACE_S = 1.0
SAVE_RETRIES = (0.5, 1.0, 2.0)
QUIET_DBFS = -50.0  # pending audio below this is silence, not a quiet user


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class Utterance:
    """The user's speech for one turn, streaming into the STT service."""

    turn_id: str
    audio: bytearray  # 16 kHz mono pcm_s16le
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[stt_pb2.TranscriptEvent | None] | None = None
    speech_end_wall: float | None = None  # perf_counter() when the last voiced audio arrived
    finished: bool = False

    def feed(self, pcm: bytes) -> None:
        self.audio += pcm
        self.queue.put_nowait(pcm)


@dataclass
class Reply:
    turn_id: str
    user_text: str
    input_audio: bytes
    timings: dict[str, float]
    speech_end_wall: float
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    tts_characters: int = 0
    tts_cost_usd: float = 0.0
    audio: bytearray = field(default_factory=bytearray)
    # (sentence, start_ms, end_ms) on the reply's audio timeline, for finding what was heard.
    segments: list[tuple[str, float, float]] = field(default_factory=list)
    playback_ms: float | None = None
    playback_update: asyncio.Event = field(default_factory=asyncio.Event)
    # The client plays reply audio as it arrives, at 1x: when it will have played everything sent so
    # far (perf_counter). A reply stays in progress until then, so an interruption during playback
    # still cuts the memory down to what was heard.
    playout_end: float = 0.0
    heard: float = 0.0  # fixed when the reply ends: ms of its audio the user heard
    spoken: str = ""  # fixed when the reply ends: the text of what the user heard
    audio_started: bool = False
    audio_ended: bool = False
    interrupted: bool = False
    interrupt_reason: str = ""
    error: str = ""
    task: asyncio.Task[None] | None = None
    # Downstream calls running right now ("llm", "tts"), and those an interruption cancelled.
    in_flight: set[str] = field(default_factory=set)
    cancelled_calls: list[str] = field(default_factory=list)
    # A speculative reply runs while the user may still be talking: its output is held back until
    # the end of the turn is confirmed (then flushed in order) or thrown away.
    held: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    flushing: bool = False
    buffer: list[dict[str, Any] | bytes] = field(default_factory=list)
    finished_while_held: bool = False
    discarded: bool = False
    speculative: bool = False
    voice_frame: int = 0  # the VAD's last voiced frame when the speculation began
    # Fixed at creation: a retried save reuses it, and storage dedupes on (conversation, timestamp).
    stamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.held:
            self.released.set()

    def sent_ms(self, output_rate: int) -> float:
        return len(self.audio) / 2 / output_rate * 1000

    def heard_ms(self, output_rate: int, realtime_playback: bool) -> float:
        """How much of the reply's audio the user has heard: the client's playback position when it
        sent one, else what a real-time player has played of the audio sent (or, for a client that
        plays no audio, all of it)."""
        sent = self.sent_ms(output_rate)
        if self.playback_ms is not None:
            return min(self.playback_ms, sent)
        if not realtime_playback:
            return sent
        still_queued_ms = max(0.0, self.playout_end - time.perf_counter()) * 1000
        return max(0.0, sent - still_queued_ms)

    def spoken_text(self, heard_ms: float) -> str:
        """What the user heard: everything when the reply completed, else the words of the sentences
        played up to ``heard_ms`` (a sentence cut mid-way keeps the share of its words played)."""
        if not self.interrupted:
            return self.text.strip()
        parts: list[str] = []
        for sentence, start, end in self.segments:
            if heard_ms >= end:
                parts.append(sentence)
            elif heard_ms > start:
                words = sentence.split()
                parts.append(" ".join(words[: int(len(words) * (heard_ms - start) / (end - start))]))
        return " ".join(p for p in parts if p).strip()


class VoiceSession:
    def __init__(
        self,
        ws: WebSocket,
        services: Services,
        settings: GatewaySettings,
        vad_model: SileroModel,
        system_prompt: str,
    ) -> None:
        self.ws = ws
        self.services = services
        self.settings = settings
        self.vad_model = vad_model
        self.system_prompt = system_prompt
        self.started = False
        self.closed = False
        self.session_id = ""
        self.conversation_id = ""
        self.input = AudioSpec()
        self.output_rate = 22050
        self.voice = settings.voice  # what TTS requests name: empty lets the TTS service choose
        self.voice_name = ""  # the voice the user hears, for the client and the stored turns
        self.language = ""  # empty: each service's configured default
        self.realtime_playback = True
        self.history: list[tuple[str, str]] = []
        self.history_start = 0  # first turn of the history still sent to the LLM
        self.vad: StreamingVAD | None = None
        self.leftover = b""
        self.recent = deque[np.ndarray]()  # the last PREROLL_S of input, 16 kHz float
        self.recent_samples = 0
        self.pending = bytearray()  # input since the last turn, for input.commit without VAD
        self.utterance: Utterance | None = None
        self.speculative: Reply | None = None
        self.speculation = {"started": 0, "used": 0, "discarded": 0}
        self.vad_ended_turn = False
        self.reply: Reply | None = None
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.saves: asyncio.Queue[Reply | None] = asyncio.Queue()
        self.unsaved: list[Reply] = []
        self.saver: asyncio.Task[None] | None = None

    # ----- sending -----------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.ws.send_text(json.dumps(event))
            except Exception:  # the client went away; the receive loop notices and cleans up
                self.closed = True

    async def send_audio(self, pcm: bytes) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.ws.send_bytes(pcm)
            except Exception:
                self.closed = True

    async def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        event: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if turn_id:
            event["turn_id"] = turn_id
        log.info("session %s error %s: %s", self.session_id or "-", code, message)
        await self.send(event)

    async def emit(self, reply: Reply, item: dict[str, Any] | bytes) -> None:
        """Everything a reply sends goes through here, so a held (speculative) reply can buffer it."""
        if reply.discarded:
            return
        if reply.held or reply.flushing:
            reply.buffer.append(item)
            return
        await self.deliver(reply, item)

    async def deliver(self, reply: Reply, item: dict[str, Any] | bytes) -> None:
        if isinstance(item, bytes):
            await self.send_audio(item)
            # A real-time player starts this frame when it arrives or when the previous one ends.
            now = time.perf_counter()
            reply.playout_end = max(reply.playout_end, now) + len(item) / 2 / self.output_rate
            return
        if item["type"] == "response.audio.start":
            # Measured when the audio really leaves, also for a reply that was held back.
            reply.timings["voice_to_voice"] = _ms(time.perf_counter() - reply.speech_end_wall)
        await self.send(item)

    async def emit_error(self, reply: Reply, code: str, message: str) -> None:
        log.info("session %s error %s: %s", self.session_id or "-", code, message)
        await self.emit(reply, {"type": "error", "code": code, "message": message, "turn_id": reply.turn_id})

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ----- receive loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while not self.closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    if message.get("bytes") is not None:
                        await self.on_audio(message["bytes"])
                    elif message.get("text") is not None:
                        await self.on_text(message["text"])
                except ProtocolError as e:
                    await self.send_error(e.code, e.message)
                except Exception as e:  # a gateway bug must not take the session down with it
                    log.exception("unexpected error handling a client message")
                    await self.send_error(ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            await self.shutdown()

    async def on_text(self, text: str) -> None:
        message = parse_message(text, self.settings.max_message_bytes)
        kind = message["type"]
        if kind == "session.start":
            await self.start(message)
            return
        if not self.started:
            raise ProtocolError(ErrorCode.SESSION_NOT_STARTED, f"send session.start before {kind}")
        if kind == "input.text":
            user_text = string_field(message, "text", "") or ""
            if not user_text.strip():
                raise ProtocolError(ErrorCode.EMPTY_INPUT, "input.text: 'text' is empty")
            if len(user_text) > self.settings.max_text_chars:
                raise ProtocolError(
                    ErrorCode.TEXT_TOO_LONG,
                    f"input.text is {len(user_text)} characters; the limit is {self.settings.max_text_chars}",
                )
            await self.interrupt("new_input")
            turn_id = self.new_turn_id()
            self.start_reply(turn_id, user_text.strip(), b"", {}, time.perf_counter())
        elif kind == "input.commit":
            await self.commit()
        elif kind == "response.cancel":
            await self.interrupt("client_cancel")
        elif kind == "playback.position":
            turn_id = string_field(message, "turn_id")
            ms = number_field(message, "ms")
            if self.reply is not None and self.reply.turn_id == turn_id:
                self.reply.playback_ms = ms
                self.reply.playback_update.set()
        elif kind == "session.end":
            await self.end()

    # ----- session lifecycle -------------------------------------------------------------------

    async def start(self, message: dict[str, Any]) -> None:
        if self.started:
            raise ProtocolError(ErrorCode.SESSION_ALREADY_STARTED, "this session has already started")
        spec = parse_input_audio(message)
        requested_rate, realtime_playback = parse_output_audio(message)
        voice = string_field(message, "voice", self.settings.voice) or ""
        language = string_field(message, "language", "") or ""
        resume = string_field(message, "conversation_id")
        voice_name, native_rate = await self.check_voice(voice)
        history: list[tuple[str, str]] = []
        if resume:
            history = await self.load_history(resume)
        self.input, self.language = spec, language
        # An alias is replaced by the voice's name; no voice stays empty, so a TTS backend that picks a
        # voice per language (Polly) still can.
        self.voice, self.voice_name = (voice_name if voice else ""), voice_name
        self.realtime_playback = realtime_playback
        self.output_rate = requested_rate or native_rate
        self.history = history
        self.session_id = uuid.uuid4().hex
        self.conversation_id = resume or uuid.uuid4().hex
        self.vad = StreamingVAD(
            self.vad_model,
            self.settings.vad_threshold,
            self.settings.min_speech_ms,
            self.settings.end_silence_ms,
        )
        self.started = True
        self.saver = asyncio.create_task(self.save_loop())
        self.spawn(self.save_session())
        await self.send(
            {
                "type": "session.started",
                "session_id": self.session_id,
                "conversation_id": self.conversation_id,
                "output_audio": {
                    "encoding": "pcm_s16le",
                    "sample_rate": self.output_rate,
                    "channels": 1,
                    "playback": "realtime" if self.realtime_playback else "none",
                },
                "voice": self.voice_name,
                "resumed_turns": len(history),
                "limits": {
                    "max_frame_bytes": self.settings.max_frame_bytes,
                    "max_text_chars": self.settings.max_text_chars,
                    "max_utterance_s": self.settings.max_utterance_s,
                },
            }
        )

    async def check_voice(self, voice: str) -> tuple[str, int]:
        """The voice's name (an alias or no voice resolved to the TTS service's name for it) and its
        native sample rate; unknown voices are refused before the session starts."""
        try:
            reply = await self.services.tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
        except grpc.aio.AioRpcError as e:
            # No TTS now does not stop a session: replies will report tts errors as they happen.
            error = rpc_error("tts", e)
            await self.send_error(error.code, error.message)
            return voice, 22050
        if not voice:
            default = next((v for v in reply.voices if v.is_default), None)
            return (default.name, default.sample_rate) if default else ("", 22050)
        for info in reply.voices:
            if voice == info.name or voice in info.aliases:
                return info.name, info.sample_rate
        names = sorted(v.name for v in reply.voices)
        raise ProtocolError(
            ErrorCode.UNKNOWN_VOICE, f"unknown voice {voice!r}; available: {', '.join(names)}"
        )

    async def load_history(self, conversation_id: str) -> list[tuple[str, str]]:
        try:
            conversation = await self.services.storage.GetConversation(
                storage_pb2.GetConversationRequest(conversation_id=conversation_id),
                timeout=self.settings.storage_timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise ProtocolError(
                    ErrorCode.CONVERSATION_NOT_FOUND, f"no conversation {conversation_id!r} to resume"
                ) from None
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"conversation_id: {e.details()}") from None
            raise rpc_error("storage", e) from None
        return [(t.client_input, t.agent_response) for t in conversation.turns]

    async def save_session(self) -> None:
        now = datetime.now(UTC).isoformat()
        record = storage_pb2.Session(
            session_id=self.session_id,
            conversation_id=self.conversation_id,
            created_at=now,
            updated_at=now,
            metadata_json=json.dumps(
                {"voice": self.voice_name, "language": self.language, "input": vars(self.input)}
            ),
        )
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.services.storage.SaveSession(record, timeout=self.settings.storage_timeout_s)

    async def end(self) -> None:
        self.discard_speculation()
        await self.interrupt("session_end")
        await self.flush_saves()
        await self.send(
            {
                "type": "session.ended",
                "session_id": self.session_id,
                "unsaved_turns": len(self.unsaved),
                "speculation": self.speculation,
            }
        )
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def shutdown(self) -> None:
        self.closed = True
        if self.utterance is not None and self.utterance.task is not None:
            self.utterance.task.cancel()
        self.discard_speculation()
        await self.interrupt("disconnect")
        for task in list(self.tasks):
            task.cancel()
        await self.flush_saves()

    def new_turn_id(self) -> str:
        return uuid.uuid4().hex[:12]

    # ----- audio in ----------------------------------------------------------------------------

    async def on_audio(self, data: bytes) -> None:
        if not self.started or self.vad is None:
            raise ProtocolError(ErrorCode.SESSION_NOT_STARTED, "send session.start before audio")
        if len(data) > self.settings.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"audio frame of {len(data)} bytes; the limit is {self.settings.max_frame_bytes}",
            )
        data = self.leftover + data
        frame_bytes = 2 * self.input.channels
        usable = len(data) - len(data) % frame_bytes
        data, self.leftover = data[:usable], data[usable:]
        if not data:
            return
        samples = resample(to_mono(pcm16_to_float(data), self.input.channels), self.input.sample_rate, RATE)
        pcm = float_to_pcm16(samples)
        arrived = time.perf_counter()
        self.remember(samples)
        self.pending += pcm
        max_bytes = int(self.settings.max_utterance_s * RATE * 2)
        del self.pending[: max(0, len(self.pending) - max_bytes)]
        if self.utterance is not None:
            self.utterance.feed(pcm)
        # Silero is cheap (~0.2 ms per 32 ms frame) but it is still inference: keep it off the loop.
        events = await asyncio.to_thread(self.vad.process, samples)
        if self.speculative is not None and self.vad.last_voice_frame > self.speculative.voice_frame:
            self.discard_speculation()  # the user was only pausing
        for event in events:
            if event.kind == "start":
                await self.on_speech_start(event.at_s)
            else:
                lag_s = self.vad.frames * 512 / RATE - event.at_s
                await self.on_speech_end(event.at_s, arrived - lag_s)
        if self.utterance is not None and len(self.utterance.audio) >= max_bytes:
            self.finish_utterance(self.utterance, arrived)

    def remember(self, samples: np.ndarray) -> None:
        self.recent.append(samples)
        self.recent_samples += len(samples)
        while self.recent and self.recent_samples - len(self.recent[0]) >= PREROLL_S * RATE:
            self.recent_samples -= len(self.recent.popleft())

    async def on_speech_start(self, at_s: float) -> None:
        await self.send({"type": "speech.started", "at_ms": _ms(at_s)})
        if self.settings.barge_in:
            await self.interrupt("barge_in")
        if self.utterance is None:
            preroll = float_to_pcm16(np.concatenate(list(self.recent))) if self.recent else b""
            self.open_utterance(preroll)

    async def on_speech_end(self, at_s: float, wall: float) -> None:
        await self.send({"type": "speech.stopped", "at_ms": _ms(at_s)})
        if self.utterance is not None:
            self.finish_utterance(self.utterance, wall)

    async def commit(self) -> None:
        """input.commit: end the user's turn now, VAD or not."""
        if self.utterance is None:
            quiet = len(self.pending) < RATE * 2 // 10 or rms_dbfs(bytes(self.pending)) < QUIET_DBFS
            if quiet and self.vad_ended_turn:
                self.vad_ended_turn = False
                return  # the VAD already ended this turn; its reply is on the way
            if quiet:
                raise ProtocolError(ErrorCode.EMPTY_INPUT, "input.commit: no audio since the last turn")
            await self.interrupt("new_input")
            self.open_utterance(bytes(self.pending))
        assert self.utterance is not None
        if self.vad is not None:
            self.vad.speaking = False
        self.finish_utterance(self.utterance, time.perf_counter())

    def open_utterance(self, initial: bytes) -> None:
        utterance = Utterance(turn_id=self.new_turn_id(), audio=bytearray())
        utterance.feed(initial)
        utterance.task = self.spawn(self.transcribe(utterance))
        self.utterance = utterance

    def finish_utterance(self, utterance: Utterance, speech_end_wall: float) -> None:
        if utterance.finished:
            return
        utterance.finished = True
        utterance.speech_end_wall = speech_end_wall
        utterance.queue.put_nowait(None)
        self.vad_ended_turn = True
        self.utterance = None
        self.pending.clear()
        self.spawn(self.after_utterance(utterance, time.perf_counter()))

    async def transcribe(self, utterance: Utterance) -> stt_pb2.TranscriptEvent | None:
        config = stt_pb2.RecognitionConfig(
            audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1),
            language=self.language,
            interim_results=True,
        )

        async def requests():  # type: ignore[no-untyped-def]
            yield stt_pb2.StreamingRecognizeRequest(config=config)
            while (chunk := await utterance.queue.get()) is not None:
                yield stt_pb2.StreamingRecognizeRequest(audio=chunk)

        call = self.services.stt.StreamingRecognize(requests(), timeout=self.settings.stt_timeout_s)
        final = None
        try:
            async for event in call:
                if event.kind == stt_pb2.TranscriptEvent.PARTIAL and not utterance.finished and event.text:
                    await self.send(
                        {"type": "transcript.partial", "turn_id": utterance.turn_id, "text": event.text}
                    )
                    if event.stable and self.settings.speculate:
                        self.speculate(utterance, event.text.strip())
                elif event.kind == stt_pb2.TranscriptEvent.FINAL:
                    final = event
        except grpc.aio.AioRpcError as e:
            error = rpc_error("stt", e)
            await self.send_error(error.code, error.message, utterance.turn_id)
            return None
        finally:
            call.cancel()
        return final

    async def after_utterance(self, utterance: Utterance, finished_at: float) -> None:
        assert utterance.task is not None
        final = await utterance.task
        if final is None:
            return
        now = time.perf_counter()
        speech_end = utterance.speech_end_wall or finished_at
        timings = {
            "endpointing": _ms(finished_at - speech_end),
            "stt": _ms(now - finished_at),
            "stt_decode": round(final.decode_ms, 1),
        }
        text = final.text.strip()
        await self.send({"type": "transcript.final", "turn_id": utterance.turn_id, "text": text})
        spec = self.speculative
        if spec is not None and (spec.turn_id != utterance.turn_id or spec.user_text != text or not text):
            self.discard_speculation()
            spec = None
        if not text:
            return  # nothing intelligible: no reply (documented)
        await self.interrupt("new_input")
        if spec is None:
            self.start_reply(utterance.turn_id, text, bytes(utterance.audio), timings, speech_end)
            return
        # The speculative reply was for exactly this turn: it becomes the reply, output released.
        self.speculative = None
        self.speculation["used"] += 1
        spec.input_audio, spec.speech_end_wall = bytes(utterance.audio), speech_end
        spec.timings.update(timings)
        self.reply = spec
        await self.release(spec)

    # ----- speculation -------------------------------------------------------------------------

    def speculate(self, utterance: Utterance, text: str) -> None:
        """Start replying to a stable transcript while the end-of-turn silence is still running."""
        if not text or self.vad is None:
            return
        if self.speculative is not None:
            if self.speculative.user_text == text:
                return
            self.discard_speculation()
        reply = Reply(utterance.turn_id, text, b"", {}, time.perf_counter(), held=True, speculative=True)
        reply.voice_frame = self.vad.last_voice_frame
        self.speculative = reply
        self.speculation["started"] += 1
        reply.task = self.spawn(self.respond(reply))

    def discard_speculation(self) -> None:
        reply, self.speculative = self.speculative, None
        if reply is None:
            return
        reply.discarded = True
        self.speculation["discarded"] += 1
        if reply.task is not None:
            reply.task.cancel()

    async def release(self, reply: Reply) -> None:
        """Send a held reply's buffered output in order; later output then flows directly."""
        reply.held, reply.flushing = False, True
        while reply.buffer:
            await self.deliver(reply, reply.buffer.pop(0))
        reply.flushing = False
        reply.released.set()
        if reply.finished_while_held:
            self.remember_reply(reply)

    # ----- the reply ---------------------------------------------------------------------------

    def start_reply(
        self, turn_id: str, user_text: str, input_audio: bytes, timings: dict[str, float], speech_end: float
    ) -> None:
        reply = Reply(turn_id, user_text, input_audio, timings, speech_end)
        self.reply = reply
        reply.task = self.spawn(self.respond(reply))

    async def interrupt(self, reason: str) -> None:
        """Stop the reply in progress, if any, and wait until it has wound down."""
        reply = self.reply
        if reply is None or reply.task is None or reply.task.done():
            return
        reply.interrupted = True
        reply.interrupt_reason = reason
        reply.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reply.task

    def messages(self, user_text: str) -> list[llm_pb2.ChatMessage]:
        prompt = self.system_prompt.replace("{date}", datetime.now(UTC).strftime("%A %d %B %Y"))
        messages = [llm_pb2.ChatMessage(role="system", content=prompt)]
        # Trim the context in blocks, not one turn at a time: a window that slides every turn changes
        # the prompt's prefix each time and defeats the LLM's prefix (KV) cache, so the whole
        # history would be re-read on every turn (1.3 s instead of 0.15 s on 2 cores).
        limit = self.settings.history_turns
        if len(self.history) - self.history_start > limit:
            self.history_start = len(self.history) - max(1, limit // 2)
        for user, assistant in self.history[self.history_start :]:
            messages.append(llm_pb2.ChatMessage(role="user", content=user))
            if assistant:
                messages.append(llm_pb2.ChatMessage(role="assistant", content=assistant))
        messages.append(llm_pb2.ChatMessage(role="user", content=user_text))
        return messages

    async def respond(self, reply: Reply) -> None:
        started = time.perf_counter()
        sentences: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        speaker = asyncio.create_task(self.speak(reply, sentences))
        call = self.services.llm.Generate(
            llm_pb2.GenerateRequest(
                messages=self.messages(reply.user_text),
                model=self.settings.llm_model,
                sampling=llm_pb2.SamplingParams(
                    max_tokens=self.settings.max_tokens, temperature=self.settings.temperature
                ),
                purpose="quick",
            ),
            timeout=self.settings.llm_timeout_s,
        )
        splitter = SentenceSplitter()
        reply.in_flight.add("llm")
        try:
            async for event in call:
                if event.delta:
                    if not reply.text:
                        reply.timings["llm_first_token"] = _ms(time.perf_counter() - started)
                    reply.text += event.delta
                    await self.emit(
                        reply, {"type": "response.text.delta", "turn_id": reply.turn_id, "delta": event.delta}
                    )
                    for sentence in splitter.push(event.delta):
                        reply.timings.setdefault("llm_first_sentence", _ms(time.perf_counter() - started))
                        sentences.put_nowait((sentence, time.perf_counter()))
                if event.done:
                    reply.model = event.model
                    reply.usage = {
                        "input_tokens": event.usage.input_tokens,
                        "output_tokens": event.usage.output_tokens,
                        "cost_usd": event.usage.cost_usd,
                    }
                    reply.timings["llm_total"] = _ms(time.perf_counter() - started)
                    # The service's own view, without the gRPC hop and queueing: their difference is
                    # transport overhead.
                    reply.timings["llm_first_token_service"] = round(event.timing.first_token_ms, 1)
            reply.in_flight.discard("llm")
            for sentence in splitter.flush():
                reply.timings.setdefault("llm_first_sentence", _ms(time.perf_counter() - started))
                sentences.put_nowait((sentence, time.perf_counter()))
            sentences.put_nowait(None)
            await speaker
            if reply.audio_started:
                reply.audio_ended = True
                await self.emit(reply, {"type": "response.audio.end", "turn_id": reply.turn_id})
            # A speculative reply that finished early waits here until its turn is confirmed (or it is
            # discarded, which cancels this task); then the reply lasts until the user has heard it.
            await reply.released.wait()
            await self.await_playout(reply)
        except asyncio.CancelledError:
            reply.interrupted = True
            reply.cancelled_calls = sorted(reply.in_flight)
        except grpc.aio.AioRpcError as e:
            reply.in_flight.discard("llm")
            error = rpc_error("llm", e)
            reply.error = error.code
            await self.emit_error(reply, error.code, error.message)
        finally:
            call.cancel()
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker
            reply.timings["total"] = _ms(time.perf_counter() - started)
            await self.finish_reply(reply)

    async def speak(self, reply: Reply, sentences: asyncio.Queue[tuple[str, float] | None]) -> None:
        """Send the reply's audio in sentence order. A separate task synthesises: it drains each
        TTS stream as fast as the service produces it, so the next sentence is being synthesised
        while this one is still being sent, and a TTS call is only "in flight" while the service is
        really working on it."""
        audio: asyncio.Queue[tuple[str, bytes | None] | None] = asyncio.Queue()
        synthesizer = asyncio.create_task(self.synthesize(reply, sentences, audio))
        frame_bytes = int(self.output_rate * OUTPUT_FRAME_S) * 2
        segment_start, queued_bytes = 0.0, 0
        try:
            while (item := await audio.get()) is not None:
                sentence, pcm = item
                if pcm is None:  # the sentence is complete; the next one starts where it ended
                    segment_start = queued_bytes / 2 / self.output_rate * 1000
                    continue
                # The sentence's span on the reply's timeline grows with each chunk, before it is sent,
                # so a sentence cut off mid-way still knows its length.
                queued_bytes += len(pcm)
                end_ms = queued_bytes / 2 / self.output_rate * 1000
                if reply.segments and reply.segments[-1][1] == segment_start:
                    reply.segments[-1] = (sentence, segment_start, end_ms)
                else:
                    reply.segments.append((sentence, segment_start, end_ms))
                if not reply.audio_started:
                    reply.audio_started = True
                    await self.emit(
                        reply,
                        {
                            "type": "response.audio.start",
                            "turn_id": reply.turn_id,
                            "encoding": "pcm_s16le",
                            "sample_rate": self.output_rate,
                            "channels": 1,
                        },
                    )
                for i in range(0, len(pcm), frame_bytes):
                    frame = pcm[i : i + frame_bytes]
                    reply.audio += frame
                    await self.emit(reply, frame)
        finally:
            if not synthesizer.done():
                synthesizer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await synthesizer

    async def synthesize(
        self,
        reply: Reply,
        sentences: asyncio.Queue[tuple[str, float] | None],
        audio: asyncio.Queue[tuple[str, bytes | None] | None],
    ) -> None:
        try:
            while (item := await sentences.get()) is not None:
                sentence, queued_at = item
                if reply.error:
                    continue  # TTS already failed this turn; the text still reaches the client
                call = self.services.tts.Synthesize(
                    tts_pb2.SynthesizeRequest(
                        text=sentence,
                        voice=self.voice,
                        language=self.language,
                        format=audio_pb2.AudioFormat(
                            encoding=audio_pb2.PCM_S16LE, sample_rate=self.output_rate
                        ),
                    ),
                    timeout=self.settings.tts_timeout_s,
                )
                reply.in_flight.add("tts")
                try:
                    async for response in call:
                        if response.audio:
                            reply.timings.setdefault("tts_first_audio", _ms(time.perf_counter() - queued_at))
                            audio.put_nowait((sentence, response.audio))
                        if response.HasField("usage"):
                            reply.in_flight.discard("tts")  # the service's last message: its work is done
                            reply.tts_characters += response.usage.characters
                            reply.tts_cost_usd += response.usage.cost_usd
                except grpc.aio.AioRpcError as e:
                    reply.in_flight.discard("tts")
                    error = rpc_error("tts", e)
                    reply.error = error.code
                    await self.emit_error(reply, error.code, error.message)
                else:
                    reply.in_flight.discard("tts")
                finally:
                    call.cancel()  # a no-op unless this task was cancelled mid-call
                audio.put_nowait((sentence, None))
        finally:
            audio.put_nowait(None)

    async def await_playout(self, reply: Reply) -> None:
        """Wait until the client has played the reply's audio: by the real-time estimate, or by the
        playback positions it reports (which end the wait early, or extend it by a short grace)."""
        if not self.realtime_playback or not reply.audio:
            return
        sent = reply.sent_ms(self.output_rate)
        grace_until = reply.playout_end + PLAYOUT_GRACE_S
        while True:
            played = reply.playback_ms
            if played is not None and played >= sent:
                return
            now = time.perf_counter()
            # Without positions the estimate decides; with them, the client gets a short grace.
            until = reply.playout_end if played is None else grace_until
            if now >= until:
                return
            reply.playback_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reply.playback_update.wait(), until - now)

    async def finish_reply(self, reply: Reply) -> None:
        if reply.discarded:
            return  # a speculation nobody heard: no events, no memory
        if reply.audio_started and not reply.audio_ended:
            reply.audio_ended = True
            await self.emit(reply, {"type": "response.audio.end", "turn_id": reply.turn_id})
        sent = reply.sent_ms(self.output_rate)
        reply.heard = reply.heard_ms(self.output_rate, self.realtime_playback) if reply.interrupted else sent
        reply.spoken = reply.spoken_text(reply.heard)
        done: dict[str, Any] = {
            "type": "response.done",
            "turn_id": reply.turn_id,
            "text": reply.spoken,
            "interrupted": reply.interrupted,
            "usage": self.usage(reply),
            "timings_ms": reply.timings,
            "audio_ms": {"sent": round(sent, 1), "heard": round(reply.heard, 1)},
        }
        if reply.interrupted:
            done["interrupt_reason"] = reply.interrupt_reason
            done["cancelled_calls"] = reply.cancelled_calls
        if reply.error:
            done["error"] = reply.error
        if reply.speculative:
            done["speculative"] = True
        await self.emit(reply, done)
        if reply.held:
            reply.finished_while_held = True  # remembered when released
        else:
            self.remember_reply(reply)

    def remember_reply(self, reply: Reply) -> None:
        # The next turn's context holds only what the user actually heard.
        spoken = reply.spoken
        self.history.append((reply.user_text, spoken + ("…" if reply.interrupted and spoken else "")))
        self.saves.put_nowait(reply)

    # ----- memory ------------------------------------------------------------------------------

    async def save_loop(self) -> None:
        while (reply := await self.saves.get()) is not None:
            if await self.save_with_retries(reply):
                await self.retry_unsaved()

    async def retry_unsaved(self) -> None:
        retry, self.unsaved = self.unsaved, []
        for reply in retry:
            try:
                await self.save(reply)
            except grpc.aio.AioRpcError:
                self.unsaved.append(reply)

    async def save_with_retries(self, reply: Reply) -> bool:
        for delay in (*SAVE_RETRIES, None):
            try:
                await self.save(reply)
                return True
            except grpc.aio.AioRpcError as e:
                if delay is None or e.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ):
                    error = rpc_error("storage", e)
                    self.unsaved.append(reply)
                    await self.send_error(
                        error.code,
                        f"{error.message}; the turn is kept and will be saved later",
                        reply.turn_id,
                    )
                    return False
                await asyncio.sleep(delay)
        return False

    async def save(self, reply: Reply) -> None:
        stamp = reply.stamp
        timestamp = stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
        key_stamp = stamp.strftime("%Y%m%dT%H%M%S%fZ")
        timeout = self.settings.storage_timeout_s
        input_key = output_key = ""
        if reply.input_audio:
            input_key = f"{self.session_id}/{key_stamp}_input.wav"
            await self.put_audio(input_key, wav_bytes(reply.input_audio, RATE), timeout)
        if reply.audio:
            output_key = f"{self.session_id}/{key_stamp}_output.wav"
            await self.put_audio(output_key, wav_bytes(bytes(reply.audio), self.output_rate), timeout)
        metadata = {
            "models": {"llm": reply.model, "tts": self.voice_name},
            "voice": self.voice_name,
            "latency_ms": reply.timings,
            "usage": self.usage(reply),
            "interrupted": reply.interrupted,
            "interrupt_reason": reply.interrupt_reason,
            "generated_text": reply.text if reply.interrupted else "",
            "error": reply.error,
        }
        await self.services.storage.SaveTurn(
            storage_pb2.Turn(
                conversation_id=self.conversation_id,
                timestamp=timestamp,
                session_id=self.session_id,
                turn_id=reply.turn_id,
                client_input=reply.user_text,
                agent_response=reply.spoken,
                metadata_json=json.dumps(metadata),
                input_audio_key=input_key,
                output_audio_key=output_key,
                interrupted=reply.interrupted,
            ),
            timeout=timeout,
        )

    @staticmethod
    def usage(reply: Reply) -> dict[str, Any]:
        """The LLM's tokens and cost, the TTS's characters and cost, and their sum."""
        llm_cost = float(reply.usage.get("cost_usd", 0.0))
        return {
            **reply.usage,
            "tts_characters": reply.tts_characters,
            "tts_cost_usd": round(reply.tts_cost_usd, 8),
            "total_cost_usd": round(llm_cost + reply.tts_cost_usd, 8),
        }

    async def put_audio(self, key: str, data: bytes, timeout: float) -> None:
        async def chunks():  # type: ignore[no-untyped-def]
            yield storage_pb2.PutAudioRequest(key=key, content_type="audio/wav")
            for i in range(0, len(data), 256 * 1024):
                yield storage_pb2.PutAudioRequest(data=data[i : i + 256 * 1024])

        await self.services.storage.PutAudio(chunks(), timeout=timeout)

    async def flush_saves(self) -> None:
        """Wait for queued saves, then give earlier failures one more try."""
        if self.saver is not None and not self.saver.done():
            self.saves.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self.saver
        await self.retry_unsaved()
        for reply in self.unsaved:
            log.error("turn %s of conversation %s could not be saved", reply.turn_id, self.conversation_id)
