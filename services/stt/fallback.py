"""STT over a fallback chain (ECHO_STT_SERVICE=transcribe,whisper): services.common.fallback, plus what
streams of audio need. The caller's audio is read once into a ReplayBuffer, so a backend taking over
mid-utterance hears it all from the first byte. Only the FINAL commits: PARTIALs are provisional (each
replaces the last), so a backend may still hand over after sending some; the next backend's partials
start again from the start of the utterance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from echo.v1 import stt_pb2
from services.common.fallback import FallbackChain, ReplayBuffer
from services.stt.backends.base import STTBackend


@runtime_checkable
class HandsOver(Protocol):
    def handoff_config(self, config: stt_pb2.RecognitionConfig) -> stt_pb2.RecognitionConfig:
        """The request as this backend understood it, for a backend taking over (the language it
        would have transcribed in, say)."""
        ...


class FallbackSTT(FallbackChain[STTBackend]):
    def __init__(self, backends: Sequence[STTBackend], *args: object, **kwargs: object) -> None:
        super().__init__("stt", backends, *args, **kwargs)  # type: ignore[arg-type]

    def _config_for(self, index: int, config: stt_pb2.RecognitionConfig) -> stt_pb2.RecognitionConfig:
        """The first backend's reading of the request applies to all: a Transcribe configured for fr-FR
        hands a French request to Whisper even when Transcribe itself is down."""
        primary = self.backends[0]
        if index == 0 or not isinstance(primary, HandsOver):
            return config
        return primary.handoff_config(config)

    def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        return self._stream(config, audio)

    async def _stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        received = ReplayBuffer(audio)
        try:
            events = self.stream_in_turn(
                lambda backend, index: backend.stream(self._config_for(index, config), received.replay()),
                committed=lambda event: event.kind == stt_pb2.TranscriptEvent.FINAL,
            )
            async for event in events:
                if event.kind == stt_pb2.TranscriptEvent.FINAL:
                    # The caller's stream broke (a second config, say): that error, not a FINAL of part of it.
                    received.raise_caller_error()
                yield event
        except Exception:
            received.raise_caller_error()
            raise
        finally:
            await received.close()

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        async def attempt(backend: STTBackend, index: int) -> stt_pb2.RecognizeResponse:
            if index == 0:
                return await backend.recognize(request)
            handed = stt_pb2.RecognizeRequest()
            handed.CopyFrom(request)
            handed.config.CopyFrom(self._config_for(index, request.config))
            return await backend.recognize(handed)

        return await self.call_in_turn(attempt)
