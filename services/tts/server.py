"""TTS gRPC servicer: request validation shared by every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from echo.v1 import audio_pb2, tts_pb2, tts_pb2_grpc
from services.common.capabilities import capabilities_message
from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.tts.backends.base import TTSBackend


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(self, backend: TTSBackend, max_chars: int) -> None:
        self.backend = backend
        self.max_chars = max_chars

    @stream_errors
    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        if not request.text.strip():
            raise InvalidArgument("text is empty")
        if len(request.text) > self.max_chars:
            raise InvalidArgument(f"text is {len(request.text)} characters; the limit is {self.max_chars}")
        async for response in self.backend.synthesize(request):
            yield response

    @unary_errors
    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        return tts_pb2.ListVoicesResponse(voices=await self.backend.voices(request.language))

    @unary_errors
    async def GetCapabilities(
        self, request: audio_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Capabilities:
        return capabilities_message(self.backend)
