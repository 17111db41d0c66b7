"""The contract every LLM backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from echo.v1 import llm_pb2


class LLMBackend(Protocol):
    name: str

    async def start(self) -> None:
        """Load the model or open clients; called once before the service reports SERVING."""

    async def close(self) -> None: ...

    def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        """Token deltas as they are produced; the last event has done=True and carries usage (with
        cost_usd), timing, model and stop_reason. The request is already validated by the server.
        When the consumer stops iterating (the call was cancelled) the backend's work must stop too."""
        ...

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        """A summary of the conversation, produced with this same backend (see services.llm.summary)."""
        ...

    async def list_models(self) -> list[llm_pb2.ModelInfo]: ...
