"""TTS over a fallback chain (ECHO_TTS_SERVICE=polly,piper): services.common.fallback. A synthesis falls
back only before its first response (the audio format) reaches the caller; after that an error ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from echo.v1 import tts_pb2
from services.common.fallback import FallbackChain
from services.tts.backends.base import TTSBackend


class FallbackTTS(FallbackChain[TTSBackend]):
    def __init__(self, backends: Sequence[TTSBackend], *args: object, **kwargs: object) -> None:
        super().__init__("tts", backends, *args, **kwargs)  # type: ignore[arg-type]

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]:
        return await self.call_in_turn(lambda backend, _: backend.voices(language))

    def synthesize(self, request: tts_pb2.SynthesizeRequest) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        return self.stream_in_turn(lambda backend, _: backend.synthesize(request))
