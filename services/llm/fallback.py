"""LLM over a fallback chain (ECHO_LLM_SERVICE=bedrock,llamacpp): services.common.fallback. A reply
falls back only before its first event reaches the caller; after that an error ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from echo.v1 import llm_pb2
from services.common.fallback import FallbackChain
from services.llm.backends.base import LLMBackend


class FallbackLLM(FallbackChain[LLMBackend]):
    def __init__(self, backends: Sequence[LLMBackend], *args: object, **kwargs: object) -> None:
        super().__init__("llm", backends, *args, **kwargs)  # type: ignore[arg-type]

    def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        return self.stream_in_turn(lambda backend, _: backend.generate(request))

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        # The backend the next Generate will go to first.
        return await self.call_in_turn(lambda backend, _: backend.prefill(request))

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        return await self.call_in_turn(lambda backend, _: backend.summarize(request))

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        return await self.call_in_turn(lambda backend, _: backend.list_models())
