"""Piper (piper-tts 1.x, ONNX on CPU): one audio chunk per sentence, as Piper splits them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.v1 import audio_pb2, tts_pb2
from services.common import models
from services.common.audio import float_to_pcm16, resample
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import InvalidArgument, NotFound
from services.common.threads import iterate_in_thread
from services.tts.backends.base import check_plain_pcm_request
from services.tts.config import TTSSettings

log = logging.getLogger("echo.tts.piper")


@dataclass
class PiperSettings:
    voice: str = field(default="piper-joe", metadata={"help": "default voice: model name or .onnx path"})


def load_piper_settings() -> PiperSettings:
    return load_settings(PiperSettings, prefix="ECHO_TTS_", section="tts")


def _voice_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.onnx")) if path.is_dir() else [path]


class PiperBackend:
    name = "piper"
    # Audio streams sentence by sentence.
    capabilities = BackendCapabilities(streaming=True, word_timings=False)

    requires = ("piper",)

    def __init__(self, service: TTSSettings, settings: PiperSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_piper_settings()
        self._voices: dict[str, Any] = {}  # voice name -> PiperVoice
        self._aliases: dict[str, str] = {}
        self.default_voice = ""

    async def start(self) -> None:
        from piper import PiperVoice

        started = time.monotonic()
        for onnx in _voice_files(await models.resolve_async(self.settings.voice)):
            voice = await asyncio.to_thread(PiperVoice.load, onnx)
            name = onnx.name.removesuffix(".onnx")
            self._voices[name] = voice
            self._aliases[self.settings.voice] = self._aliases.get(self.settings.voice, name)
            self.default_voice = self.default_voice or name
            log.info("loaded Piper voice %s (%d Hz)", name, voice.config.sample_rate)
        if not self._voices:
            raise RuntimeError(f"no Piper voice found at {self.settings.voice}")
        # The first synthesis initialises espeak-ng and ONNX kernels; do it before SERVING.
        await asyncio.to_thread(lambda: list(self._voices[self.default_voice].synthesize("Ready.")))
        log.info("Piper ready in %.1f s", time.monotonic() - started)

    async def close(self) -> None:
        self._voices.clear()

    def _voice(self, requested: str) -> tuple[str, Any]:
        name = self._aliases.get(requested, requested) or self.default_voice
        if name not in self._voices:
            raise NotFound(f"unknown voice {requested!r}; available: {', '.join(sorted(self._voices))}")
        return name, self._voices[name]

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]:
        result = []
        for name, voice in self._voices.items():
            lang = str(voice.config.espeak_voice)
            if language and not lang.lower().startswith(language.split("-")[0].lower()):
                continue
            result.append(
                tts_pb2.VoiceInfo(
                    name=name,
                    language=name.split("-")[0].replace("_", "-"),
                    sample_rate=voice.config.sample_rate,
                    backend=self.name,
                    is_default=name == self.default_voice,
                    aliases=sorted(
                        a for a, to in self._aliases.items() if to == name and a != name and "/" not in a
                    ),
                )
            )
        return result

    async def synthesize(
        self, request: tts_pb2.SynthesizeRequest
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        from piper import SynthesisConfig

        check_plain_pcm_request(request, self.name)
        _, voice = self._voice(request.voice)
        native_rate = voice.config.sample_rate
        out_rate = request.format.sample_rate or native_rate
        if not 8000 <= out_rate <= 48000:
            raise InvalidArgument(f"sample rate {out_rate} is outside 8000-48000")
        config = SynthesisConfig(length_scale=1.0 / request.rate if request.rate else None)

        def sentences() -> Iterator[tuple[bytes, str]]:
            for chunk in voice.synthesize(request.text, config):
                samples = resample(chunk.audio_float_array, native_rate, out_rate)
                yield float_to_pcm16(samples), " ".join(chunk.phonemes)

        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=out_rate, channels=1)
        )
        index = 0
        async for pcm, _phonemes in iterate_in_thread(sentences):
            yield tts_pb2.SynthesizeResponse(audio=pcm, sentence_index=index)
            index += 1
        yield tts_pb2.SynthesizeResponse(usage=audio_pb2.Usage(characters=len(request.text)))
