"""The contract every TTS backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from echo.v1 import tts_pb2


class TTSBackend(Protocol):
    name: str

    async def start(self) -> None:
        """Load voices or open clients; called once before the service reports SERVING."""

    async def close(self) -> None: ...

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]: ...

    def synthesize(self, request: tts_pb2.SynthesizeRequest) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        """Audio sentence by sentence. The first response carries ``format``, the last ``usage``.
        Raises NotFound for an unknown voice, InvalidArgument for text or a format it cannot do."""
        ...
