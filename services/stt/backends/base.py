"""The contract every STT backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from echo.v1 import stt_pb2
from services.common.capabilities import BackendCapabilities


class STTBackend(Protocol):
    # Read-only: a fallback chain reports the backend serving now.
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...

    async def start(self) -> None:
        """Load models or open clients; called once before the service reports SERVING."""

    async def close(self) -> None: ...

    def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        """Transcribe one utterance: PARTIAL events while audio arrives (if asked), then one FINAL
        when ``audio`` ends."""
        ...

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse: ...
