"""The contract every LLM backend implements."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from echo.v1 import audio_pb2, llm_pb2
from services.common.capabilities import BackendCapabilities

if TYPE_CHECKING:
    from services.llm.prices import PriceTable


class LLMBackend(Protocol):
    # Read-only: a fallback chain reports the backend serving now.
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...

    async def start(self) -> None:
        """Load the model or open clients; called once before the service reports SERVING."""

    async def close(self) -> None: ...

    def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        """Token deltas as they are produced; the last event has done=True and carries usage (with
        cost_usd), timing, model and stop_reason. The request is already validated by the server.
        When the consumer stops iterating (the call was cancelled) the backend's work must stop too."""
        ...

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        """Evaluate the conversation so far into the model's context, ahead of the Generate that will
        extend it (validated by the server). Best effort: never delays a Generate, and a stale prefill
        costs only the work it did. Backends with no context of their own answer zeros."""
        ...

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        """A summary of the conversation, produced with this same backend (see services.llm.summary)."""
        ...

    async def list_models(self) -> list[llm_pb2.ModelInfo]: ...


def sampling_value(sampling: llm_pb2.SamplingParams, name: str, default: float) -> float:
    """A float of SamplingParams ("temperature", "top_p"): its value when set, 0 included (temperature 0
    is greedy decoding), else the service's configured ``default``."""
    return float(getattr(sampling, name)) if sampling.HasField(name) else default


def no_prefill() -> llm_pb2.PrefillResponse:
    """What a backend with no context of its own answers: zeros. A provider's prompt cache, where it
    has one, is filled by the Generate calls themselves (their prompt prefix is kept stable)."""
    return llm_pb2.PrefillResponse()


def done_event(
    prices: PriceTable,
    model: str,
    input_tokens: int,
    output_tokens: int,
    first_token_ms: float,
    started: float,
    stop_reason: str,
    reported_model: str = "",
    prompt_cached_tokens: int = 0,
) -> llm_pb2.GenerateEvent:
    """The last event of every Generate stream: usage priced by ``model``, and timing; of the
    ``input_tokens``, ``prompt_cached_tokens`` were found in a cache and the rest were evaluated."""
    return llm_pb2.GenerateEvent(
        done=True,
        usage=audio_pb2.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=prices.cost(model, input_tokens, output_tokens),
        ),
        timing=llm_pb2.GenerateTiming(
            first_token_ms=first_token_ms,
            total_ms=(time.perf_counter() - started) * 1000,
            prompt_eval_tokens=max(0, input_tokens - prompt_cached_tokens),
            prompt_cached_tokens=prompt_cached_tokens,
        ),
        model=reported_model or model,
        stop_reason=stop_reason,
    )
