"""The contract every TTS backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from echo.v1 import audio_pb2, tts_pb2
from services.common.capabilities import BackendCapabilities
from services.common.errors import InvalidArgument


class TTSBackend(Protocol):
    # Read-only: a fallback chain reports the backend serving now.
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...

    async def start(self) -> None:
        """Load voices or open clients; called once before the service reports SERVING."""

    async def close(self) -> None: ...

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]: ...

    def synthesize(self, request: tts_pb2.SynthesizeRequest) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        """Audio sentence by sentence. The first response carries ``format``, the last ``usage``.
        Raises NotFound for an unknown voice, InvalidArgument for text or a format it cannot do."""
        ...


def check_plain_pcm_request(request: tts_pb2.SynthesizeRequest, backend: str) -> None:
    """Refusals shared by backends that speak plain text as pcm_s16le, with no pitch or speech marks."""
    if request.ssml:
        raise InvalidArgument(f"the {backend} backend does not read SSML; send plain text")
    if request.format.encoding not in (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, audio_pb2.PCM_S16LE):
        raise InvalidArgument(
            f"{backend} produces pcm_s16le, not {audio_pb2.AudioEncoding.Name(request.format.encoding)}"
        )
    if request.pitch:
        raise InvalidArgument(f"the {backend} backend cannot change pitch")
    if request.speech_marks:
        raise InvalidArgument(f"the {backend} backend does not produce speech marks")
    if request.rate and not 0.25 <= request.rate <= 4.0:
        raise InvalidArgument(f"rate {request.rate} is outside 0.25-4.0")
