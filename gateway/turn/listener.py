"""The listener: audio in, conversion to 16 kHz, VAD, and one STT stream per utterance."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from echo.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from gateway.clients import rpc_error
from gateway.turn.clock import now
from gateway.turn.reply import Final, Partial
from gateway.vad import FRAME, RATE, StreamingVAD
from services.common.audio import PcmConverter, float_to_pcm16, rms_dbfs

log = logging.getLogger("echo.gateway.listener")

PREROLL_S = 0.3  # audio kept from before the VAD fired, so the first syllable is not clipped
QUIET_DBFS = -50.0  # pending audio below this is silence, not a quiet user

# Runs blocking work (VAD inference) off the event loop: asyncio.to_thread, or inline in tests.
Offload = Callable[..., Awaitable[Any]]


def new_turn_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Utterance:
    """The user's speech for one turn, streaming into the STT service."""

    turn_id: str
    audio: bytearray = field(default_factory=bytearray)  # 16 kHz mono pcm_s16le
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    speech_end: float = 0.0  # loop time when the last voiced audio arrived
    finished_at: float = 0.0  # loop time the turn was declared over
    voice_ended_at_s: float = 0.0  # where the voice last was, as an offset in the session's input

    def feed(self, pcm: bytes) -> None:
        self.audio += pcm
        self.queue.put_nowait(pcm)


@dataclass
class Heard:
    """What one chunk of input audio meant."""

    speech_started_at_s: float | None = None  # offset in the session's input audio
    speech_ended_at_s: float | None = None
    speech_end_time: float = 0.0  # loop time of the last voiced audio
    too_long: bool = False  # the open utterance reached max_utterance_s


class Listener:
    def __init__(
        self,
        stt: stt_pb2_grpc.SpeechToTextStub,
        vad: StreamingVAD,
        converter: PcmConverter,
        signal: Callable[[Any], None],
        offload: Offload,
        language: str,
        stt_timeout_s: float,
        max_utterance_s: float,
    ) -> None:
        self.stt = stt
        self.vad = vad
        self.converter = converter
        self.signal = signal
        self.offload = offload
        self.language = language
        self.stt_timeout_s = stt_timeout_s
        self.max_bytes = int(max_utterance_s * RATE * 2)
        self.recent: deque[np.ndarray] = deque()  # the last PREROLL_S of input, 16 kHz float
        self.recent_samples = 0
        self.pending = bytearray()  # input since the last turn, for input.commit without VAD
        self.utterance: Utterance | None = None
        self.last_partial = ""
        self.streams: set[asyncio.Task[None]] = set()  # STT streams still running, open or ending

    @property
    def voice_frame(self) -> int:
        return self.vad.last_voice_frame

    def voice_end_time(self, arrived: float | None = None) -> float:
        """Loop time the last voiced audio arrived (``arrived``: when the latest audio did)."""
        lag_s = (self.vad.frames - self.vad.last_voice_frame) * FRAME / RATE
        return (now() if arrived is None else arrived) - lag_s

    @property
    def voice_ended_at_s(self) -> float:
        """Offset in the session's input audio where the voice last was."""
        return self.vad.last_voice_frame * FRAME / RATE

    @property
    def quiet_ms(self) -> float:
        return self.vad.silent_run * FRAME / RATE * 1000

    async def hear(self, data: bytes) -> Heard:
        samples = self.converter.convert(data)
        heard = Heard()
        if not len(samples):
            return heard
        pcm = float_to_pcm16(samples)
        arrived = now()
        self._remember(samples)
        self.pending += pcm
        del self.pending[: max(0, len(self.pending) - self.max_bytes)]
        if self.utterance is not None:
            self.utterance.feed(pcm)
        # Silero is cheap (~0.2 ms per 32 ms frame) but it is still inference: keep it off the loop.
        for event in await self.offload(self.vad.process, samples):
            if event.kind == "start":
                heard.speech_started_at_s = event.at_s
            else:
                heard.speech_ended_at_s = event.at_s
                heard.speech_end_time = self.voice_end_time(arrived)
        heard.too_long = self.utterance is not None and len(self.utterance.audio) >= self.max_bytes
        return heard

    def _remember(self, samples: np.ndarray) -> None:
        self.recent.append(samples)
        self.recent_samples += len(samples)
        while self.recent and self.recent_samples - len(self.recent[0]) >= PREROLL_S * RATE:
            self.recent_samples -= len(self.recent.popleft())

    def pending_is_quiet(self) -> bool:
        return len(self.pending) < RATE * 2 // 10 or rms_dbfs(bytes(self.pending)) < QUIET_DBFS

    def open(self, with_pending: bool = False) -> Utterance:
        """Start an utterance: from the pre-roll (the VAD fired), or all pending audio (input.commit)."""
        if with_pending:
            initial = bytes(self.pending)
        else:
            initial = float_to_pcm16(np.concatenate(list(self.recent))) if self.recent else b""
        utterance = Utterance(turn_id=new_turn_id())
        utterance.feed(initial)
        utterance.task = asyncio.create_task(self._transcribe(utterance))
        self.streams.add(utterance.task)
        utterance.task.add_done_callback(self.streams.discard)
        self.utterance = utterance
        self.last_partial = ""
        return utterance

    def finish(self, speech_end: float) -> Utterance | None:
        """End the open utterance: its STT stream is closed and the final transcript will follow."""
        utterance, self.utterance = self.utterance, None
        if utterance is None:
            return None
        utterance.speech_end = speech_end
        utterance.finished_at = now()
        utterance.voice_ended_at_s = self.voice_ended_at_s
        utterance.queue.put_nowait(None)
        self.vad.speaking = False
        self.pending.clear()
        return utterance

    def cancel(self) -> None:
        """Drop the open utterance (its STT stream failed)."""
        if self.utterance is not None and self.utterance.task is not None:
            self.utterance.task.cancel()
        self.utterance = None

    async def close(self) -> None:
        """The session is over: stop every STT stream still running."""
        self.utterance = None
        for task in list(self.streams):
            task.cancel()
        await asyncio.gather(*self.streams, return_exceptions=True)

    async def _transcribe(self, utterance: Utterance) -> None:
        config = stt_pb2.RecognitionConfig(
            audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1),
            language=self.language,
            interim_results=True,
        )

        async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
            yield stt_pb2.StreamingRecognizeRequest(config=config)
            while (chunk := await utterance.queue.get()) is not None:
                yield stt_pb2.StreamingRecognizeRequest(audio=chunk)

        call = self.stt.StreamingRecognize(requests(), timeout=self.stt_timeout_s)
        final: stt_pb2.TranscriptEvent | None = None
        try:
            async for event in call:
                if event.kind == stt_pb2.TranscriptEvent.PARTIAL and event.text:
                    if self.utterance is utterance:
                        self.last_partial = event.text.strip()
                        self.signal(Partial(utterance.turn_id, event.text.strip(), event.stable))
                elif event.kind == stt_pb2.TranscriptEvent.FINAL:
                    final = event
        except grpc.aio.AioRpcError as e:
            error = rpc_error("stt", e)
            self.signal(Final(utterance, "", 0.0, (error.code, error.message)))
            return
        finally:
            call.cancel()
        text = final.text.strip() if final is not None else ""
        self.signal(Final(utterance, text, round(final.decode_ms, 1) if final is not None else 0.0))
