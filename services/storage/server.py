"""Storage gRPC servicer: thin; validation of ids and keys lives with the backend contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from echo.v1 import audio_pb2, storage_pb2, storage_pb2_grpc
from services.common.capabilities import capabilities_message
from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.storage.backends.base import StorageBackend, check_key


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, backend: StorageBackend, max_audio_bytes: int, presign_seconds: int = 900) -> None:
        self.backend = backend
        self.max_audio_bytes = max_audio_bytes
        self.presign_seconds = presign_seconds

    @unary_errors
    async def SaveSession(
        self, request: storage_pb2.Session, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Session:
        return await self.backend.conversations.save_session(request)

    @unary_errors
    async def GetSession(
        self, request: storage_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Session:
        return await self.backend.conversations.get_session(request.session_id)

    @unary_errors
    async def SaveTurn(
        self, request: storage_pb2.Turn, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Turn:
        return await self.backend.conversations.save_turn(request)

    @unary_errors
    async def GetConversation(
        self, request: storage_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Conversation:
        return await self.backend.conversations.get_conversation(request.conversation_id)

    @unary_errors
    async def ListConversations(
        self, request: storage_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListConversationsResponse:
        found = await self.backend.conversations.list_conversations(request.limit, request.session_id)
        return storage_pb2.ListConversationsResponse(conversations=found)

    @unary_errors
    async def PutAudio(
        self, request_iterator: AsyncIterator[storage_pb2.PutAudioRequest], context: grpc.aio.ServicerContext
    ) -> storage_pb2.PutAudioResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("request") != "key":
            raise InvalidArgument("the first PutAudio message must carry the key")
        key = check_key(first.key)

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("request") == "key":
                    raise InvalidArgument("PutAudio takes one key, in the first message")
                yield message.data

        size = await self.backend.audio.put(key, chunks(), first.content_type, self.max_audio_bytes)
        return storage_pb2.PutAudioResponse(key=key, size=size)

    @stream_errors
    async def GetAudio(
        self, request: storage_pb2.GetAudioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[storage_pb2.AudioChunk]:
        async for data, content_type in self.backend.audio.get(request.key):
            yield storage_pb2.AudioChunk(data=data, content_type=content_type)

    @unary_errors
    async def GetAudioUrl(
        self, request: storage_pb2.GetAudioRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.AudioUrl:
        url = await self.backend.audio.url(check_key(request.key))
        return storage_pb2.AudioUrl(url=url, expires_in_s=self.presign_seconds if url else 0)

    @unary_errors
    async def SaveSummary(
        self, request: storage_pb2.SaveSummaryRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.SaveSummaryResponse:
        await self.backend.conversations.save_summary(request.conversation_id, request.summary)
        return storage_pb2.SaveSummaryResponse()

    @unary_errors
    async def GetCapabilities(
        self, request: audio_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Capabilities:
        return capabilities_message(self.backend)
