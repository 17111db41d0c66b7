"""LLM gRPC servicer: validates requests, then streams the backend's reply."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Sequence

import grpc

from echo.v1 import audio_pb2, llm_pb2, llm_pb2_grpc
from services.common.capabilities import capabilities_message
from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.llm.backends.base import LLMBackend
from services.llm.config import LLMSettings

log = logging.getLogger("echo.llm.server")

ROLES = ("system", "user", "assistant")


def check_messages(messages: Sequence[llm_pb2.ChatMessage], max_chars: int) -> None:
    if not messages:
        raise InvalidArgument("no messages: send at least one user message")
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidArgument(f"messages[{i}] has role {message.role!r}; use one of {', '.join(ROLES)}")
    if not any(m.content.strip() for m in messages):
        raise InvalidArgument("every message is empty: there is nothing to reply to")
    total = sum(len(m.content) for m in messages)
    if total > max_chars:
        raise InvalidArgument(
            f"the prompt is {total} characters; the limit is {max_chars} (shorten the conversation)"
        )


def check_max_tokens(max_tokens: int) -> None:
    if max_tokens < 0:
        raise InvalidArgument(f"max_tokens must be positive (or 0 for the default), got {max_tokens}")


def check_sampling(sampling: llm_pb2.SamplingParams) -> None:
    check_max_tokens(sampling.max_tokens)
    # Unset means the configured default; a value that is set, 0 included, is used as it is.
    if sampling.HasField("temperature") and not (
        math.isfinite(sampling.temperature) and 0 <= sampling.temperature <= 2
    ):
        raise InvalidArgument(
            f"temperature must be between 0 and 2 (unset for the default), got {sampling.temperature}"
        )
    if sampling.HasField("top_p") and not (math.isfinite(sampling.top_p) and 0 <= sampling.top_p <= 1):
        raise InvalidArgument(f"top_p must be between 0 and 1 (unset for the default), got {sampling.top_p}")


class LanguageModelServicer(llm_pb2_grpc.LanguageModelServicer):
    def __init__(self, backend: LLMBackend, settings: LLMSettings) -> None:
        self.backend = backend
        self.settings = settings

    @stream_errors
    async def Generate(
        self, request: llm_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.GenerateEvent]:
        check_messages(request.messages, self.settings.max_prompt_chars)
        check_sampling(request.sampling)
        if log.isEnabledFor(logging.DEBUG):
            # The exact context the model sees; at DEBUG only, since it is the user's conversation.
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            log.debug("generate messages=%s", json.dumps(messages))
        # When the client cancels, grpc cancels this coroutine; the backend's generator is then closed
        # by the async-for below, and its cleanup stops the generation.
        async for event in self.backend.generate(request):
            yield event

    @unary_errors
    async def Prefill(
        self, request: llm_pb2.PrefillRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.PrefillResponse:
        check_messages(request.messages, self.settings.max_prompt_chars)
        return await self.backend.prefill(request)

    @unary_errors
    async def Summarize(
        self, request: llm_pb2.SummarizeRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.SummarizeResponse:
        check_messages(request.messages, self.settings.max_prompt_chars)
        check_max_tokens(request.max_tokens)
        return await self.backend.summarize(request)

    @unary_errors
    async def ListModels(
        self, request: llm_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ListModelsResponse:
        return llm_pb2.ListModelsResponse(models=await self.backend.list_models())

    @unary_errors
    async def GetCapabilities(
        self, request: audio_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Capabilities:
        return capabilities_message(self.backend)
