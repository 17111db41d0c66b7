"""STT gRPC servicer: validates the request stream's shape and hands audio to the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from echo.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from services.common.capabilities import capabilities_message
from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.stt.backends.base import STTBackend


class SpeechToTextServicer(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(self, backend: STTBackend) -> None:
        self.backend = backend

    @stream_errors
    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("config"):
            raise InvalidArgument("the first message of StreamingRecognize must carry a config")

        async def audio() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.HasField("config"):
                    raise InvalidArgument("config may only be sent once, first")
                yield message.audio

        async for event in self.backend.stream(first.config, audio()):
            yield event

    @unary_errors
    async def Recognize(
        self, request: stt_pb2.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.RecognizeResponse:
        return await self.backend.recognize(request)

    @unary_errors
    async def GetCapabilities(
        self, request: audio_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Capabilities:
        return capabilities_message(self.backend)
