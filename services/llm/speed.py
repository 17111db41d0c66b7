"""`python -m services.llm.speed [MODEL ...]`: first-token latency and decode speed of local models,
measured through the llama.cpp backend the service uses (in process, ECHO_LLM_THREADS threads)."""

from __future__ import annotations

import asyncio
import statistics
import sys

from echo.v1 import llm_pb2
from services.llm.backends.llamacpp import LlamaCppBackend, load_llamacpp_settings
from services.llm.config import load

PROMPT = "Explain in a short paragraph why the sky is blue."


async def measure(model: str, runs: int = 3, max_tokens: int = 128) -> None:
    settings = load_llamacpp_settings()
    settings.model = model
    backend = LlamaCppBackend(load(), settings)
    await backend.start()
    first, speed = [], []
    try:
        for run in range(runs):
            request = llm_pb2.GenerateRequest(
                # A different question each run, so no run reuses the previous prompt's cache.
                messages=[llm_pb2.ChatMessage(role="user", content=f"{PROMPT} (take {run + 1})")],
                sampling=llm_pb2.SamplingParams(max_tokens=max_tokens, seed=run + 1),
            )
            async for event in backend.generate(request):
                if event.done:
                    decode_s = (event.timing.total_ms - event.timing.first_token_ms) / 1000
                    first.append(event.timing.first_token_ms)
                    speed.append((event.usage.output_tokens - 1) / decode_s if decode_s > 0 else 0.0)
                    prompt_tokens = event.usage.input_tokens
    finally:
        await backend.close()
    print(
        f"{model}: first token {statistics.median(first):.0f} ms (prompt {prompt_tokens} tokens), "
        f"{statistics.median(speed):.1f} tokens/s decoding, {settings.threads} threads (median of {runs})"
    )


def main() -> None:
    for model in sys.argv[1:] or ["smollm2-135m", "qwen2.5-coder-0.5b"]:
        asyncio.run(measure(model))


if __name__ == "__main__":
    main()
