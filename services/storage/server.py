"""Storage gRPC servicer: thin; validation of ids and keys lives with the backend contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from echo.v1 import audio_pb2, storage_pb2, storage_pb2_grpc
from services.common.capabilities import capabilities_message
from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.storage.backends.base import StorageBackend, check_id, check_key, check_user


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, backend: StorageBackend, max_audio_bytes: int, presign_seconds: int = 300) -> None:
        self.backend = backend
        self.max_audio_bytes = max_audio_bytes
        self.presign_seconds = presign_seconds

    @unary_errors
    async def SaveSession(
        self, request: storage_pb2.Session, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Session:
        check_user(request.user_id)
        return await self.backend.conversations.save_session(request)

    @unary_errors
    async def GetSession(
        self, request: storage_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Session:
        return await self.backend.conversations.get_session(check_user(request.user_id), request.session_id)

    @unary_errors
    async def SaveTurn(
        self, request: storage_pb2.Turn, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Turn:
        check_user(request.user_id)
        return await self.backend.conversations.save_turn(request)

    @unary_errors
    async def GetConversation(
        self, request: storage_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.Conversation:
        return await self.backend.conversations.get_conversation(
            check_user(request.user_id), request.conversation_id
        )

    @unary_errors
    async def ListConversations(
        self, request: storage_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListConversationsResponse:
        if request.session_id:
            check_id("session_id", request.session_id)
        found, cursor = await self.backend.conversations.list_conversations(
            check_user(request.user_id), request.limit, request.cursor, request.session_id
        )
        return storage_pb2.ListConversationsResponse(conversations=found, next_cursor=cursor)

    @unary_errors
    async def PutAudio(
        self, request_iterator: AsyncIterator[storage_pb2.PutAudioRequest], context: grpc.aio.ServicerContext
    ) -> storage_pb2.PutAudioResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("request") != "key":
            raise InvalidArgument("the first PutAudio message must carry the key")
        user_id = check_user(first.user_id)
        key = check_key(first.key)

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("request") == "key":
                    raise InvalidArgument("PutAudio takes one key, in the first message")
                yield message.data

        size = await self.backend.audio.put(user_id, key, chunks(), first.content_type, self.max_audio_bytes)
        return storage_pb2.PutAudioResponse(key=key, size=size)

    @stream_errors
    async def GetAudio(
        self, request: storage_pb2.GetAudioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[storage_pb2.AudioChunk]:
        user_id, key = check_user(request.user_id), check_key(request.key)
        async for data, content_type in self.backend.audio.get(user_id, key):
            yield storage_pb2.AudioChunk(data=data, content_type=content_type)

    @unary_errors
    async def GetAudioUrl(
        self, request: storage_pb2.GetAudioRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.AudioUrl:
        url = await self.backend.audio.url(check_user(request.user_id), check_key(request.key))
        return storage_pb2.AudioUrl(url=url, expires_in_s=self.presign_seconds if url else 0)

    @unary_errors
    async def SaveSummary(
        self, request: storage_pb2.SaveSummaryRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.SaveSummaryResponse:
        await self.backend.conversations.save_summary(
            check_user(request.user_id), request.conversation_id, request.summary
        )
        return storage_pb2.SaveSummaryResponse()

    @unary_errors
    async def DeleteConversation(
        self, request: storage_pb2.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DeleteResult:
        user_id = check_user(request.user_id)
        deleted = await self.backend.conversations.delete_conversation(user_id, request.conversation_id)
        audio = await self.backend.audio.delete(user_id, deleted.audio_keys)
        return storage_pb2.DeleteResult(
            conversations=deleted.conversations,
            turns=deleted.turns,
            audio_objects=audio,
            sessions=deleted.sessions,
        )

    @unary_errors
    async def DeleteUser(
        self, request: storage_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DeleteResult:
        user_id = check_user(request.user_id)
        deleted = await self.backend.conversations.delete_user(user_id)
        audio = await self.backend.audio.delete_user(user_id)
        keys = await self.backend.users.delete_user(user_id)
        return storage_pb2.DeleteResult(
            conversations=deleted.conversations,
            turns=deleted.turns,
            audio_objects=audio,
            sessions=deleted.sessions,
            api_keys=keys,
        )

    @unary_errors
    async def CreateApiKey(
        self, request: storage_pb2.ApiKey, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ApiKey:
        return await self.backend.users.create_key(request)

    @unary_errors
    async def LookupApiKey(
        self, request: storage_pb2.LookupApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ApiKey:
        return await self.backend.users.lookup_key(request.key_sha256)

    @unary_errors
    async def ListApiKeys(
        self, request: storage_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListApiKeysResponse:
        if request.user_id:
            check_user(request.user_id)
        return storage_pb2.ListApiKeysResponse(keys=await self.backend.users.list_keys(request.user_id))

    @unary_errors
    async def RevokeApiKey(
        self, request: storage_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ApiKey:
        return await self.backend.users.revoke_key(request.key_id)

    @unary_errors
    async def AddUsage(
        self, request: storage_pb2.DailyUsage, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DailyUsage:
        return await self.backend.users.add_usage(request)

    @unary_errors
    async def GetUsage(
        self, request: storage_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DailyUsage:
        return await self.backend.users.get_usage(request.user_id, request.day)

    @unary_errors
    async def GetCapabilities(
        self, request: audio_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Capabilities:
        return capabilities_message(self.backend)
