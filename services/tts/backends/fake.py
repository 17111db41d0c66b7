"""A tone instead of speech, for deterministic tests: its length follows the text, its pace is set.

Messages have Piper's shape (format first, audio chunks, usage last) and its validation, so the
servicer and its callers see what they would see from a real voice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from echo.v1 import audio_pb2, tts_pb2
from services.common.audio import float_to_pcm16
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import InvalidArgument, NotFound
from services.tts.backends.base import check_plain_pcm_request
from services.tts.config import TTSSettings

VOICE = "fake-tone"
ALIASES = ("fake",)


@dataclass
class FakeTTSSettings:
    ms_per_char: float = field(default=50.0, metadata={"help": "tone length per character of text"})
    sample_rate: int = field(default=16000, metadata={"help": "rate when the request names none"})
    chunk_s: float = field(default=0.2, metadata={"help": "audio per response message"})
    chunk_delay_s: float = field(default=0.0, metadata={"help": "asyncio sleep before each audio message"})
    frequency_hz: float = field(default=440.0, metadata={"help": "tone frequency"})
    amplitude: float = field(default=0.3, metadata={"help": "tone amplitude (full scale = 1)"})
    language: str = field(default="en-US", metadata={"help": "language the voice claims"})


def load_fake_settings() -> FakeTTSSettings:
    return load_settings(FakeTTSSettings, prefix="ECHO_TTS_FAKE_", section="tts_fake")


def tone(seconds: float, rate: int, frequency_hz: float, amplitude: float) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


class FakeTTSBackend:
    name = "fake"
    capabilities = BackendCapabilities(streaming=True, word_timings=False)

    def __init__(self, service: TTSSettings, settings: FakeTTSSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_fake_settings()
        self.requests: list[tts_pb2.SynthesizeRequest] = []  # every Synthesize request, as received

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]:
        if language and not self.settings.language.lower().startswith(language.split("-")[0].lower()):
            return []
        return [
            tts_pb2.VoiceInfo(
                name=VOICE,
                language=self.settings.language,
                sample_rate=self.settings.sample_rate,
                backend=self.name,
                is_default=True,
                aliases=list(ALIASES),
            )
        ]

    def _check(self, request: tts_pb2.SynthesizeRequest) -> int:
        """The same refusals as Piper; returns the output sample rate."""
        check_plain_pcm_request(request, self.name)
        if request.voice not in ("", VOICE, *ALIASES):
            raise NotFound(f"unknown voice {request.voice!r}; available: {VOICE}")
        out_rate = request.format.sample_rate or self.settings.sample_rate
        if not 8000 <= out_rate <= 48000:
            raise InvalidArgument(f"sample rate {out_rate} is outside 8000-48000")
        return out_rate

    def synthesize(self, request: tts_pb2.SynthesizeRequest) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        out_rate = self._check(request)
        recorded = tts_pb2.SynthesizeRequest()
        recorded.CopyFrom(request)
        self.requests.append(recorded)
        return self._synthesize(request, out_rate)

    async def _synthesize(
        self, request: tts_pb2.SynthesizeRequest, out_rate: int
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        # A faster rate shortens the tone, as Piper's length scale shortens speech.
        seconds = len(request.text) * self.settings.ms_per_char / 1000 / (request.rate or 1.0)
        samples = tone(seconds, out_rate, self.settings.frequency_hz, self.settings.amplitude)
        step = max(1, round(self.settings.chunk_s * out_rate))
        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=out_rate, channels=1)
        )
        for index, offset in enumerate(range(0, len(samples), step)):
            await asyncio.sleep(self.settings.chunk_delay_s)
            yield tts_pb2.SynthesizeResponse(
                audio=float_to_pcm16(samples[offset : offset + step]), sentence_index=index
            )
        yield tts_pb2.SynthesizeResponse(usage=audio_pb2.Usage(characters=len(request.text)))
