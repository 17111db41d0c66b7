"""Summarize a conversation with whatever backend generates replies: one short system prompt."""

from __future__ import annotations

from echo.v1 import audio_pb2, llm_pb2
from services.llm.backends.base import LLMBackend

SYSTEM_PROMPT = (
    "You summarize conversations. Write a short, factual summary of the conversation the user gives "
    "you, in a few sentences: who wanted what, what was decided, and any open questions. "
    "Reply with the summary only."
)


def summary_request(request: llm_pb2.SummarizeRequest, default_max_tokens: int) -> llm_pb2.GenerateRequest:
    transcript = "\n".join(f"{m.role}: {m.content}" for m in request.messages if m.content.strip())
    return llm_pb2.GenerateRequest(
        messages=[
            llm_pb2.ChatMessage(role="system", content=SYSTEM_PROMPT),
            llm_pb2.ChatMessage(role="user", content=f"Summarize this conversation:\n\n{transcript}"),
        ],
        model=request.model,
        sampling=llm_pb2.SamplingParams(
            max_tokens=request.max_tokens or default_max_tokens,
            # Summaries should be stable, not creative.
            temperature=0.2,
        ),
        purpose="summarize",
    )


async def summarize(
    backend: LLMBackend, request: llm_pb2.SummarizeRequest, default_max_tokens: int
) -> llm_pb2.SummarizeResponse:
    parts: list[str] = []
    usage, model = audio_pb2.Usage(), ""
    async for event in backend.generate(summary_request(request, default_max_tokens)):
        parts.append(event.delta)
        if event.done:
            usage, model = event.usage, event.model
    return llm_pb2.SummarizeResponse(summary="".join(parts).strip(), usage=usage, model=model)
