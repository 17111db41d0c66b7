"""What Prefill saves: the LLM's first token after the final transcript, with and without a prefill.

    python bench/prefill.py                          # the default model (qwen2.5-coder-0.5b)
    python bench/prefill.py --model smollm2-135m --turns 3

The llama.cpp backend runs in this process. A conversation goes turn by turn with the gateway's
system prompt, each reply generated for real (temperature 0) and kept as history. Before each turn's
question, the context is put back to where the previous turn left it (that turn generated again), and
the question is asked three ways:

- cold: another conversation was generated in between, so only the chat template's header is cached;
- previous turn: the context holds the previous turn, as it does in a conversation without prefill
  (the system prompt and the history are reused; the new question is evaluated). On a session's
  first turn there is no previous turn: the context holds another conversation, as cold;
- prefilled: as the previous turn, then Prefill with the question but for its last two words (the
  partial transcript's stable part), then the final question.

Prints, per way, the prompt tokens evaluated after the final and the first-token time, for the first
turn and as medians over the later turns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from echo.v1 import llm_pb2  # noqa: E402
from services.llm.backends.llamacpp import LlamaCppBackend, LlamaCppSettings  # noqa: E402
from services.llm.config import LLMSettings  # noqa: E402

QUESTIONS = [
    "Hello, can you tell me what the capital of Australia is?",
    "And how many people live in that city roughly?",
    "Who wrote the play Romeo and Juliet?",
    "How many days does a leap year have?",
    "What is the tallest mountain in the whole world?",
    "Thank you, and how far away is the moon from the earth?",
]
OTHER = [llm_pb2.ChatMessage(role="user", content="Write one sentence about the sea.")]
MAX_TOKENS = 40


def system_prompt() -> str:
    text = (ROOT / "gateway/prompts/system.txt").read_text().strip()
    return text.replace("{date}", datetime.now(UTC).strftime("%A %d %B %Y"))


def messages(system: str, history: list[tuple[str, str]], question: str) -> list[llm_pb2.ChatMessage]:
    out = [llm_pb2.ChatMessage(role="system", content=system)]
    for user, assistant in history:
        out += [llm_pb2.ChatMessage(role="user", content=user)]
        out += [llm_pb2.ChatMessage(role="assistant", content=assistant)]
    return [*out, llm_pb2.ChatMessage(role="user", content=question)]


async def ask(backend: LlamaCppBackend, chat: list[llm_pb2.ChatMessage]) -> tuple[str, llm_pb2.GenerateEvent]:
    request = llm_pb2.GenerateRequest(
        messages=chat, sampling=llm_pb2.SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
    )
    events = [event async for event in backend.generate(request)]
    return "".join(e.delta for e in events[:-1]).strip(), events[-1]


async def run(model: str, turns: int) -> None:
    backend = LlamaCppBackend(LLMSettings(), LlamaCppSettings(model=model))
    await backend.start()
    system = system_prompt()
    history: list[tuple[str, str]] = []
    rows: dict[str, list[tuple[int, float]]] = {"cold": [], "previous turn": [], "prefilled": []}
    prefill_rows: list[tuple[int, float]] = []
    previous = OTHER  # a session's first turn finds another conversation in the context
    try:
        for question in QUESTIONS[:turns]:
            final = messages(system, history, question)
            partial = messages(system, history, " ".join(question.split()[:-2]))
            for way in rows:
                await ask(backend, previous)  # the context as the previous turn left it
                if way == "cold":
                    await ask(backend, OTHER)
                if way == "prefilled":
                    done = await backend.prefill(llm_pb2.PrefillRequest(messages=partial))
                    prefill_rows.append((done.evaluated_tokens, done.ms))
                reply, event = await ask(backend, final)
                rows[way].append((event.timing.prompt_eval_tokens, event.timing.first_token_ms))
                print(
                    f"{way:>13}: {event.usage.input_tokens:4d} prompt tokens, "
                    f"{event.timing.prompt_eval_tokens:4d} evaluated, first token "
                    f"{event.timing.first_token_ms:6.0f} ms  {reply[:50]!r}",
                    flush=True,
                )
            history.append((question, reply))
            previous = final
    finally:
        await backend.close()
    print(f"\n{model}, {turns} turns, {MAX_TOKENS}-token replies:\n")
    print(
        "| after the final | first turn: tokens evaluated | first token (ms) "
        "| later turns: tokens evaluated | first token (ms) |"
    )
    print("|---|---:|---:|---:|---:|")
    for way, values in rows.items():
        later = values[1:] or values
        evaluated = statistics.median(v[0] for v in later)
        first = statistics.median(v[1] for v in later)
        print(f"| {way} | {values[0][0]} | {values[0][1]:.0f} | {evaluated:.0f} | {first:.0f} |")
    print(
        f"\nthe prefill itself (while the user speaks): {statistics.median(v[0] for v in prefill_rows):.0f} "
        f"tokens in {statistics.median(v[1] for v in prefill_rows):.0f} ms (medians; first turn "
        f"{prefill_rows[0][0]} tokens in {prefill_rows[0][1]:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="model name or .gguf path")
    parser.add_argument("--turns", type=int, default=len(QUESTIONS), help=f"at most {len(QUESTIONS)}")
    args = parser.parse_args()
    asyncio.run(run(args.model, args.turns))


if __name__ == "__main__":
    main()
