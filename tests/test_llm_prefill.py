"""Prefill: the conversation so far is evaluated while the user speaks, so the Generate that follows the
final transcript evaluates only its last words. On the real smollm2-135m model, through the service
and in process; the scheduling rules (generations first, stale prefills skipped) also on their own."""

from __future__ import annotations

import asyncio
import json
import threading

import grpc
import httpx
import llama_cpp
import pytest

from echo.v1 import llm_pb2, llm_pb2_grpc
from services.llm.backends.fake import FakeLLMBackend, FakeLLMSettings
from services.llm.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from services.llm.backends.llamacpp_context import ModelSlot
from services.llm.backends.openai_compat import OpenAICompatBackend, OpenAICompatSettings
from services.llm.config import LLMSettings
from tests.conftest import require_model
from tests.servicetools import grpc_channel, start_grpc_service
from tests.test_llm_service import wait_until

MODEL = "smollm2-135m"
models = pytest.mark.models

M = llm_pb2.ChatMessage
SYSTEM = M(role="system", content="You are a helpful assistant. Answer in one short sentence.")
HISTORY = [
    M(role="user", content="Hello, who are you?"),
    M(role="assistant", content="I am a helpful assistant."),
]
# Another conversation, to leave in the context first: its system prompt starts with other words, so
# it shares with ours only the chat template's "<|im_start|>system\n" (3 tokens).
OTHER = [
    M(role="system", content="Cooking questions only: answer them briefly."),
    M(role="user", content="How long should I boil an egg?"),
]
TEMPLATE_HEADER_TOKENS = 3


def conversation(user_text: str) -> list[llm_pb2.ChatMessage]:
    return [SYSTEM, *HISTORY, M(role="user", content=user_text)]


def generate_request(messages: list[llm_pb2.ChatMessage], max_tokens: int = 16) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        messages=messages, sampling=llm_pb2.SamplingParams(max_tokens=max_tokens, temperature=0)
    )


async def collect(events) -> tuple[str, llm_pb2.GenerateEvent]:
    received = [event async for event in events]
    assert received[-1].done
    return "".join(e.delta for e in received[:-1]), received[-1]


@pytest.fixture(scope="module")
def llm_service(log_dir):
    require_model(MODEL)
    proc, address = start_grpc_service("llm", {"ECHO_LLM_MODEL": MODEL}, log_dir / "prefill")
    yield address
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def stub(llm_service):
    async with grpc_channel(llm_service) as channel:
        yield llm_pb2_grpc.LanguageModelStub(channel)


@pytest.fixture(scope="module")
async def local_backend():
    require_model(MODEL)
    # Small chunks: a long prefill has many points where a Generate can take the model.
    backend = LlamaCppBackend(LLMSettings(), LlamaCppSettings(model=MODEL, prefill_chunk_tokens=8))
    await backend.start()
    yield backend
    await backend.close()


def generate(stub: llm_pb2_grpc.LanguageModelStub, request: llm_pb2.GenerateRequest):
    return collect(stub.Generate(request, timeout=120))


# --- through the service ------------------------------------------------------------------------------


@models
async def test_prefill_leaves_only_the_last_words_to_evaluate(stub):
    final = generate_request(conversation("What is the capital of France?"))
    await generate(stub, generate_request(OTHER))
    cold_text, cold = await generate(stub, final)
    # Without a prefill the whole prompt is evaluated, but for the template header it shares.
    assert cold.timing.prompt_cached_tokens == TEMPLATE_HEADER_TOKENS
    assert cold.timing.prompt_eval_tokens == cold.usage.input_tokens - TEMPLATE_HEADER_TOKENS

    await generate(stub, generate_request(OTHER))
    # Trailing space as a partial transcript may have it: the cut still ends on the word.
    prefilled = await stub.Prefill(
        llm_pb2.PrefillRequest(messages=conversation("What is the capital ")), timeout=120
    )
    assert not prefilled.preempted and prefilled.ms > 0
    assert prefilled.cached_tokens == TEMPLATE_HEADER_TOKENS and prefilled.evaluated_tokens > 30
    warm_text, warm = await generate(stub, final)
    assert warm.usage.input_tokens == cold.usage.input_tokens
    assert warm.timing.prompt_cached_tokens == prefilled.cached_tokens + prefilled.evaluated_tokens
    # " of France?", the end of the user's turn and the assistant's header: nothing else.
    assert warm.timing.prompt_eval_tokens <= 8 + 2
    assert warm.timing.prompt_eval_tokens + warm.timing.prompt_cached_tokens == warm.usage.input_tokens
    assert "Paris" in cold_text and "Paris" in warm_text


@models
async def test_generate_after_a_prefill_of_another_conversation_still_answers(stub):
    prefilled = await stub.Prefill(
        llm_pb2.PrefillRequest(messages=[*OTHER[:1], M(role="user", content="How long should I")]),
        timeout=120,
    )
    assert prefilled.cached_tokens + prefilled.evaluated_tokens > 10
    text, done = await generate(stub, generate_request(conversation("What is the capital of France?")))
    assert "Paris" in text
    assert done.timing.prompt_cached_tokens == TEMPLATE_HEADER_TOKENS


@models
async def test_repeated_prefill_finds_everything_cached(stub):
    request = llm_pb2.PrefillRequest(messages=conversation("Tell me about the moon"))
    first = await stub.Prefill(request, timeout=120)
    again = await stub.Prefill(request, timeout=120)
    assert not again.preempted and again.evaluated_tokens == 0
    assert again.cached_tokens == first.cached_tokens + first.evaluated_tokens


@models
async def test_prefill_while_a_generate_streams_does_not_disturb_it(stub):
    counting = llm_pb2.GenerateRequest(
        messages=[M(role="user", content="Count from 1 to 400, separated by commas.")],
        sampling=llm_pb2.SamplingParams(max_tokens=60, temperature=0),
    )
    # The reply alone first: counting is so certain a reply that only a disturbed context changes it.
    reference, _ = await generate(stub, counting)
    streaming = asyncio.Event()
    deltas: list[str] = []

    async def consume() -> llm_pb2.GenerateEvent:
        async for event in stub.Generate(counting, timeout=120):
            if event.done:
                return event
            deltas.append(event.delta)
            streaming.set()
        raise AssertionError("no done event")

    task = asyncio.create_task(consume())
    await streaming.wait()
    prefilled = await stub.Prefill(llm_pb2.PrefillRequest(messages=conversation("What is the")), timeout=120)
    done = await task
    # The prefill waited for the generation (it never runs beside one), then ran whole.
    assert not prefilled.preempted and prefilled.evaluated_tokens > 0
    assert done.stop_reason == "length" and done.usage.output_tokens == 60
    assert "".join(deltas) == reference and reference.startswith("1")


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (llm_pb2.PrefillRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (llm_pb2.PrefillRequest(messages=[M(role="robot", content="hi")]), grpc.StatusCode.INVALID_ARGUMENT),
        (
            llm_pb2.PrefillRequest(messages=conversation("Hi"), model="no-such-model"),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
@models
async def test_invalid_prefill_requests(stub, request_, code):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Prefill(request_, timeout=30)
    assert caught.value.code() == code


# --- in process: the counts are llama.cpp's, and a Generate always goes first -------------------------


def prompt_tokens_evaluated(backend: LlamaCppBackend) -> int:
    """llama.cpp's own count of tokens evaluated in batches of more than one (prompt evaluation)."""
    return llama_cpp.llama_perf_context(backend.llm._ctx.ctx).n_p_eval


@models
async def test_reported_counts_are_what_llama_cpp_evaluated(local_backend):
    await collect(local_backend.generate(generate_request(OTHER)))
    await local_backend.prefill(llm_pb2.PrefillRequest(messages=conversation("What is the capital")))
    # llama.cpp counts a batch when it next synchronises; start the count after this prefill's.
    llama_cpp.llama_synchronize(local_backend.llm._ctx.ctx)
    llama_cpp.llama_perf_context_reset(local_backend.llm._ctx.ctx)
    _, done = await collect(
        local_backend.generate(generate_request(conversation("What is the capital of France?"), max_tokens=1))
    )
    assert done.timing.prompt_eval_tokens > 1  # one batch, counted as prompt evaluation
    assert prompt_tokens_evaluated(local_backend) == done.timing.prompt_eval_tokens


def long_conversation(last: str) -> list[llm_pb2.ChatMessage]:
    turns = []
    for i in range(40):
        turns.append(M(role="user", content=f"Tell me one fact about the number {i}."))
        turns.append(
            M(role="assistant", content=f"The number {i} comes right after {i - 1} when you count up.")
        )
    return [SYSTEM, *turns, M(role="user", content=last)]


@models
async def test_a_generate_preempts_a_running_prefill_and_keeps_its_work(local_backend):
    backend = local_backend
    await collect(backend.generate(generate_request(OTHER)))
    backend.last_prefill = None
    task = asyncio.create_task(
        backend.prefill(llm_pb2.PrefillRequest(messages=long_conversation("What is the capital")))
    )
    await wait_until(lambda: backend.last_prefill is not None and backend.last_prefill.evaluated_tokens > 0)
    job = backend.last_prefill
    assert job is not None and len(job.tokens) > 1000  # hundreds of chunks left when the Generate comes
    text, done = await collect(
        backend.generate(generate_request(long_conversation("What is the capital of France?")))
    )
    prefilled = await task
    assert prefilled.preempted
    reached = prefilled.cached_tokens + prefilled.evaluated_tokens
    assert 0 < prefilled.evaluated_tokens and reached < len(job.tokens)
    # What the prefill evaluated before it stopped is not evaluated again.
    assert done.timing.prompt_cached_tokens == reached
    assert done.timing.prompt_eval_tokens == done.usage.input_tokens - reached
    assert text.strip()


@models
async def test_a_queued_prefill_is_skipped_by_a_generate(local_backend):
    backend = local_backend
    backend.last_prefill = None
    async with backend.slot.held():  # the model is busy
        queued = asyncio.create_task(
            backend.prefill(llm_pb2.PrefillRequest(messages=conversation("What is the capital")))
        )
        await wait_until(lambda: backend.last_prefill is not None)
        events = backend.generate(generate_request(conversation("What is the capital of France?")))
        first = asyncio.create_task(anext(events))  # runs to its wait for the model
        prefilled = await queued  # answered while the model is still busy: it never ran
        assert prefilled.preempted and prefilled.cached_tokens == prefilled.evaluated_tokens == 0
    text = (await first).delta + (await collect(events))[0]
    assert "Paris" in text


# --- the scheduling rules on their own ------------------------------------------------------------------


async def test_slot_generations_first_then_the_newest_prefill():
    slot = ModelSlot()
    await slot.acquire()
    order: list[str] = []

    async def generation(name: str) -> None:
        await slot.acquire()
        order.append(name)
        slot.release()

    async def prefill(name: str) -> None:
        if await slot.acquire_for_prefill(threading.Event()):
            order.append(name)
            slot.release()
        else:
            order.append(f"{name} skipped")

    tasks = [asyncio.create_task(generation("g1"))]
    await asyncio.sleep(0)  # let each task reach its wait, in this order
    tasks.append(asyncio.create_task(prefill("p1")))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(prefill("p2")))  # supersedes p1
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(generation("g2")))  # makes p2 stale too
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(prefill("p3")))
    await asyncio.sleep(0)
    slot.release()
    await asyncio.gather(*tasks)
    assert order == ["p1 skipped", "p2 skipped", "g1", "g2", "p3"]
    assert not slot.busy


async def test_slot_a_generation_stops_the_prefill_holding_it():
    slot = ModelSlot()
    stop = threading.Event()
    assert await slot.acquire_for_prefill(stop)
    waiting = asyncio.create_task(slot.acquire())
    await asyncio.sleep(0)
    assert stop.is_set() and not waiting.done()
    slot.release()
    await waiting
    assert slot.busy
    slot.release()
    assert not slot.busy


async def test_slot_is_passed_on_by_waiters_that_leave():
    slot = ModelSlot()
    await slot.acquire()
    left_early = asyncio.create_task(slot.acquire())
    handed_over = asyncio.create_task(slot.acquire())
    last = asyncio.create_task(slot.acquire())
    await asyncio.sleep(0)
    left_early.cancel()  # leaves while waiting
    await asyncio.sleep(0)
    slot.release()  # goes to handed_over ...
    handed_over.cancel()  # ... which leaves before it runs: it must pass the slot on
    for task in (left_early, handed_over):
        with pytest.raises(asyncio.CancelledError):
            await task
    await last
    assert slot.busy
    slot.release()
    assert not slot.busy


# --- backends with no context of their own ------------------------------------------------------------


async def test_fake_backend_records_prefills_and_reports_evaluation():
    backend = FakeLLMBackend(LLMSettings(), FakeLLMSettings(first_token_delay_s=0, token_interval_s=0))
    reply = await backend.prefill(llm_pb2.PrefillRequest(messages=conversation("What is")))
    assert reply == llm_pb2.PrefillResponse()
    assert [m.content for m in backend.prefills[0].messages][-1] == "What is"
    _, done = await collect(backend.generate(generate_request(conversation("What is up?"))))
    assert done.timing.prompt_cached_tokens == 0
    assert done.timing.prompt_eval_tokens == done.usage.input_tokens > 0


async def test_http_backend_reports_the_providers_cached_tokens():
    """OpenAI's usage says how much of the prompt its cache served (prompt_tokens_details)."""
    sent: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        usage = {
            "prompt_tokens": 1200,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 1024},
        }
        chunks = [
            {"model": "m", "choices": [{"delta": {"content": "Paris."}, "finish_reason": "stop"}]},
            {"model": "m", "choices": [], "usage": usage},
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    backend = OpenAICompatBackend(LLMSettings(backend="openai"), OpenAICompatSettings(model="m"))
    backend.client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    try:
        assert await backend.prefill(llm_pb2.PrefillRequest(messages=conversation("What"))) == (
            llm_pb2.PrefillResponse()
        )
        text, done = await collect(backend.generate(generate_request(conversation("What is the capital?"))))
    finally:
        await backend.close()
    assert text == "Paris."
    assert (done.timing.prompt_cached_tokens, done.timing.prompt_eval_tokens) == (1024, 176)
    # The messages go as they came, in order and unchanged: the provider's cache keys on that prefix.
    assert sent[0]["messages"] == [
        {"role": m.role, "content": m.content} for m in conversation("What is the capital?")
    ]
