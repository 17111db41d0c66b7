"""A scripted STT backend for deterministic tests: known transcripts, paced by the audio it receives.

Behaviour depends only on the audio bytes and the script, never on wall-clock time, so a test
harness running the servicer under a virtual asyncio clock sees the same events every run.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from echo.v1 import audio_pb2, stt_pb2
from services.common.audio import SAMPLE_WIDTH, read_wav, rms_dbfs
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import InvalidArgument
from services.stt.backends.whisper import check_stream_format
from services.stt.config import STTSettings

# Chunks louder than this count as speech; the same floor Whisper's quiet-tail detection uses.
VOICED_ABOVE_DBFS = -50.0
# Less audio than this is no utterance at all (Whisper answers it with an empty FINAL too).
MIN_AUDIO_S = 0.1


@dataclass
class FakeSTTSettings:
    transcripts: str = field(
        default="", metadata={"help": "'|'-separated transcripts, one per stream, before any script()"}
    )
    default_text: str = field(default="hello", metadata={"help": "transcript once the script is used up"})
    partial_every_s: float = field(default=0.5, metadata={"help": "received audio between partials"})
    words_per_s: float = field(default=3.0, metadata={"help": "words revealed per second of voiced audio"})
    quiet_tail_s: float = field(
        default=0.2, metadata={"help": "quiet after speech that gives a stable partial"}
    )
    decode_ms: float = field(default=0.0, metadata={"help": "decode_ms reported on FINAL events"})
    decode_delay_s: float = field(default=0.0, metadata={"help": "asyncio sleep before each FINAL"})


def load_fake_settings() -> FakeSTTSettings:
    return load_settings(FakeSTTSettings, prefix="ECHO_STT_FAKE_", section="stt_fake")


def _split_script(text: str) -> list[str]:
    return [part.strip() for part in text.split("|")] if text.strip() else []


class FakeSTTBackend:
    name = "fake"
    capabilities = BackendCapabilities(streaming=True, stable_partials=True, word_timings=True)

    def __init__(self, service: STTSettings, settings: FakeSTTSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_fake_settings()
        self._script: deque[str] = deque(_split_script(self.settings.transcripts))
        self.streams: list[str] = []  # the transcript each stream() call took, in order
        self.recognized: list[str] = []  # the same for recognize()

    def script(self, *texts: str) -> None:
        """Queue transcripts: each later stream() or recognize() call takes the next one."""
        self._script.extend(texts)

    def _next_text(self) -> str:
        return self._script.popleft() if self._script else self.settings.default_text

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _language(self, requested: str) -> str:
        return requested or self.service.language

    def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        # The transcript is taken when the call is made, so the script order is the call order.
        check_stream_format(config.audio)
        text = self._next_text()
        self.streams.append(text)
        return self._stream(text, config, audio)

    async def _stream(
        self, text: str, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        words = text.split()
        language = self._language(config.language)
        rate = config.audio.sample_rate
        frame_bytes = SAMPLE_WIDTH * (config.audio.channels or 1)
        partial_every = max(1, round(self.settings.partial_every_s * rate))
        quiet_tail = round(self.settings.quiet_tail_s * rate)
        total = 0  # frames received
        voiced = 0  # frames in voiced chunks
        voiced_from: int | None = None  # first voiced frame
        voiced_to = 0  # end of the last voiced chunk
        quiet_run = 0  # consecutive quiet frames since the last voiced chunk
        stable_sent = False  # for the current quiet spell
        next_partial = partial_every
        shown = 0  # words in the last partial
        leftover = b""

        def partial(k: int, stable: bool = False) -> stt_pb2.TranscriptEvent:
            return stt_pb2.TranscriptEvent(
                kind=stt_pb2.TranscriptEvent.PARTIAL,
                text=" ".join(words[:k]),
                start_s=(voiced_from or 0) / rate,
                end_s=voiced_to / rate,
                language=language,
                audio_s=total / rate,
                stable=stable,
            )

        async for data in audio:
            data = leftover + data
            cut = len(data) - len(data) % frame_bytes
            data, leftover = data[:cut], data[cut:]
            frames = len(data) // frame_bytes
            if not frames:
                continue
            total += frames
            if rms_dbfs(data) > VOICED_ABOVE_DBFS:
                voiced += frames
                voiced_from = total - frames if voiced_from is None else voiced_from
                voiced_to = total
                quiet_run = 0
                stable_sent = False
            else:
                quiet_run += frames
            if not config.interim_results:
                continue
            if voiced and not stable_sent and quiet_run >= quiet_tail:
                stable_sent = True
                shown = len(words)
                yield partial(shown, stable=True)
            if total >= next_partial:
                next_partial = (total // partial_every + 1) * partial_every
                # Rounded first, so 1.0000000001 s of speech does not reveal an extra word.
                k = min(math.ceil(round(voiced / rate * self.settings.words_per_s, 6)), len(words))
                if k > shown:
                    shown = k
                    yield partial(k)
        await asyncio.sleep(self.settings.decode_delay_s)
        if total < MIN_AUDIO_S * rate:
            yield stt_pb2.TranscriptEvent(
                kind=stt_pb2.TranscriptEvent.FINAL, audio_s=total / rate, language=language
            )
            return
        # Words spread evenly over the voiced span (the whole audio when none of it was loud).
        start, end = (voiced_from, voiced_to) if voiced_from is not None else (0, total)
        step = (end - start) / rate / max(1, len(words))
        yield stt_pb2.TranscriptEvent(
            kind=stt_pb2.TranscriptEvent.FINAL,
            text=text,
            start_s=start / rate,
            end_s=end / rate,
            words=[
                stt_pb2.Word(
                    text=word,
                    start_s=start / rate + i * step,
                    end_s=start / rate + (i + 1) * step,
                    probability=1.0,
                )
                for i, word in enumerate(words)
            ],
            language=language,
            decode_ms=self.settings.decode_ms,
            audio_s=total / rate,
        )

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        if not request.audio and not request.uri:
            raise InvalidArgument("no audio in the request")
        text = self._next_text()
        self.recognized.append(text)
        return stt_pb2.RecognizeResponse(
            text=text,
            segments=[stt_pb2.Segment(text=text, start_s=0.0, end_s=_duration_s(request))] if text else [],
            language=self._language(request.config.language),
            duration_s=_duration_s(request),
            processing_ms=self.settings.decode_ms,
        )


def _duration_s(request: stt_pb2.RecognizeRequest) -> float:
    """The recording's length where it can be read without a decoder (PCM and WAV), else 0."""
    fmt = request.config.audio
    if fmt.encoding == audio_pb2.PCM_S16LE and fmt.sample_rate > 0:
        return len(request.audio) / (SAMPLE_WIDTH * (fmt.channels or 1)) / fmt.sample_rate
    if request.audio[:4] == b"RIFF":
        pcm, rate, channels = read_wav(request.audio)
        return len(pcm) / (SAMPLE_WIDTH * channels) / rate
    return 0.0
