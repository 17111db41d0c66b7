"""The LLM service, run as a real process on the tiny smollm2-135m model, with both backends:
llama.cpp in process, and the HTTP client against a real OpenAI-compatible server (llama.cpp's)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import llm_pb2, llm_pb2_grpc
from services.common import models
from services.common.config import ConfigError
from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.llm.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from services.llm.backends.openai_compat import (
    OllamaBackend,
    OpenAICompatBackend,
    OpenAICompatSettings,
    error_for_response,
)
from services.llm.config import LLMSettings
from services.llm.prices import PriceTable
from tests.conftest import require_model
from tests.servicetools import ROOT, assert_credential_required, free_port, grpc_channel, start_grpc_service

pytestmark = pytest.mark.models

MODEL = "smollm2-135m"
MAX_PROMPT_CHARS = 6000


def user(text: str) -> llm_pb2.ChatMessage:
    return llm_pb2.ChatMessage(role="user", content=text)


def long_reply_request(max_tokens: int = 1000) -> llm_pb2.GenerateRequest:
    # Long enough that the model is still generating when the test cancels after a few deltas.
    return llm_pb2.GenerateRequest(
        messages=[user("Count from 1 to 400, separated by commas.")],
        sampling=llm_pb2.SamplingParams(max_tokens=max_tokens, seed=3),
    )


async def wait_until(condition: Callable[[], bool], limit_s: float = 60.0) -> None:
    """Poll for a condition a worker thread or another process brings about (a generous limit: this
    checks that it happens, not how fast)."""
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.05)


async def collect(stub: llm_pb2_grpc.LanguageModelStub, request: llm_pb2.GenerateRequest):
    events = [event async for event in stub.Generate(request, timeout=120)]
    return [e.delta for e in events if not e.done], events[-1]


@pytest.fixture(scope="module")
def llm_service(log_dir):
    require_model(MODEL)
    proc, address = start_grpc_service(
        "llm", {"ECHO_LLM_MODEL": MODEL, "ECHO_LLM_MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS)}, log_dir
    )
    yield proc, address
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def stub(llm_service):
    async with grpc_channel(llm_service[1]) as channel:
        yield llm_pb2_grpc.LanguageModelStub(channel)


@pytest.fixture(scope="module")
async def local_backend():
    """The same backend in this process, to watch its worker directly and as a reference."""
    require_model(MODEL)
    backend = LlamaCppBackend(LLMSettings(), LlamaCppSettings(model=MODEL))
    await backend.start()
    yield backend
    await backend.close()


# --- llama.cpp backend, through the gRPC service ---------------------------------------------------


async def test_generate_streams_the_same_reply_as_llama_cpp_chat(stub, local_backend):
    request = llm_pb2.GenerateRequest(
        messages=[
            llm_pb2.ChatMessage(role="system", content="You are a helpful assistant."),
            user("Name three colours of the rainbow."),
        ],
        sampling=llm_pb2.SamplingParams(max_tokens=60, seed=11, temperature=0.7),
    )
    deltas, final = await collect(stub, request)
    assert len(deltas) >= 3 and all(deltas)
    # Independent reference: llama-cpp-python's own chat completion (the model's chat template) with
    # the same seed and sampling must produce the same text and token counts.
    reference = await asyncio.to_thread(
        local_backend.llm.create_chat_completion,
        messages=[{"role": m.role, "content": m.content} for m in request.messages],
        max_tokens=60,
        seed=11,
        temperature=0.7,
    )
    assert "".join(deltas) == reference["choices"][0]["message"]["content"]
    assert final.done and final.model == MODEL
    assert final.stop_reason == reference["choices"][0]["finish_reason"]
    assert final.usage.input_tokens == reference["usage"]["prompt_tokens"]
    assert final.usage.output_tokens == reference["usage"]["completion_tokens"] > 0
    assert final.usage.cost_usd == 0
    assert 0 < final.timing.first_token_ms <= final.timing.total_ms


async def test_max_tokens_caps_the_reply(stub):
    deltas, final = await collect(stub, long_reply_request(max_tokens=5))
    assert final.usage.output_tokens == 5
    assert final.stop_reason == "length"
    assert deltas


async def test_stop_sequence_ends_the_reply(stub):
    request = long_reply_request(max_tokens=200)
    request.sampling.stop.append("5")
    deltas, final = await collect(stub, request)
    text = "".join(deltas)
    assert final.stop_reason == "stop" and "5" not in text and "4" in text


async def test_concurrent_requests_queue_and_all_finish(stub):
    request = llm_pb2.GenerateRequest(
        messages=[user("Say hi.")], sampling=llm_pb2.SamplingParams(max_tokens=8)
    )
    results = await asyncio.gather(*(collect(stub, request) for _ in range(3)))
    for deltas, final in results:
        assert final.done and final.usage.output_tokens > 0 and "".join(deltas)


async def test_summarize(stub):
    reply = await stub.Summarize(
        llm_pb2.SummarizeRequest(
            messages=[
                user("I need a table for four at an Italian restaurant on Friday at 7pm."),
                llm_pb2.ChatMessage(role="assistant", content="Booked: Luigi's, Friday 7pm, four people."),
                user("Great, and remind me on Thursday."),
            ],
            max_tokens=60,
        ),
        timeout=120,
    )
    assert reply.summary.strip()
    assert reply.model == MODEL
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 60


async def test_list_models_names_the_default(stub):
    reply = await stub.ListModels(llm_pb2.ListModelsRequest(), timeout=10)
    assert [(m.name, m.backend, m.is_default) for m in reply.models] == [(MODEL, "llamacpp", True)]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (llm_pb2.GenerateRequest(), "no messages"),
        (llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="robot", content="hi")]), "role 'robot'"),
        (llm_pb2.GenerateRequest(messages=[user(""), user("  ")]), "empty"),
        (llm_pb2.GenerateRequest(messages=[user("x" * (MAX_PROMPT_CHARS + 1))]), "characters"),
        (
            llm_pb2.GenerateRequest(messages=[user("hi")], sampling=llm_pb2.SamplingParams(max_tokens=-1)),
            "max_tokens",
        ),
        (
            llm_pb2.GenerateRequest(messages=[user("hi")], sampling=llm_pb2.SamplingParams(temperature=-0.5)),
            "temperature",
        ),
        (
            llm_pb2.GenerateRequest(messages=[user("hi")], sampling=llm_pb2.SamplingParams(top_p=1.5)),
            "top_p",
        ),
        # Within the character limit, but more tokens than the 2048-token context holds.
        (llm_pb2.GenerateRequest(messages=[user("7 " * 2900)]), "context window"),
    ],
    ids=[
        "no-messages",
        "unknown-role",
        "all-empty",
        "too-long",
        "neg-max-tokens",
        "neg-temp",
        "top-p",
        "ctx",
    ],
)
async def test_invalid_generate_requests(stub, request_, message):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await collect(stub, request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


async def test_invalid_summarize_requests(stub):
    for request in (
        llm_pb2.SummarizeRequest(),
        llm_pb2.SummarizeRequest(messages=[user("hi")], max_tokens=-3),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Summarize(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_model_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await collect(stub, llm_pb2.GenerateRequest(messages=[user("hi")], model="gpt-17"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "gpt-17" in error.value.details()


async def test_cancelling_the_call_stops_generation_in_the_service(stub, llm_service):
    proc = llm_service[0]
    marker = "generation cancelled by the client after"
    before = proc.log_path.read_text().count(marker)
    call = stub.Generate(long_reply_request(max_tokens=1000), timeout=120)
    received = 0
    async for event in call:
        received += 1 if event.delta else 0
        if received == 3:
            break
    call.cancel()
    # The service logs when the worker really stops; wait (generously) for that line.
    await wait_until(lambda: proc.log_path.read_text().count(marker) > before)
    lines = [line for line in proc.log_path.read_text().splitlines() if marker in line]
    assert len(lines) == before + 1, proc.log_tail()
    # "... after N tokens (K after the cancel)": far short of max_tokens, at most a token or two late.
    counts = re.search(r"after (\d+) tokens \((\d+) after the cancel\)", lines[-1])
    assert counts, lines[-1]
    tokens, after = int(counts[1]), int(counts[2])
    assert tokens < 1000 and after <= 2
    # And the model is free again: a new request completes normally.
    _, final = await collect(stub, llm_pb2.GenerateRequest(messages=[user("Hi")]))
    assert final.done and final.stop_reason in ("stop", "length")


async def test_health_and_list_models_answer_while_a_generation_runs(stub, llm_service):
    """Inference runs off the event loop: while a long reply is being generated, the same process
    still answers other calls, and the reply keeps streaming after they are answered."""
    deltas: list[str] = []
    finished = asyncio.Event()
    three = asyncio.Event()

    async def generate() -> None:
        async for event in stub.Generate(long_reply_request(max_tokens=1000), timeout=300):
            if event.delta:
                deltas.append(event.delta)
                if len(deltas) == 3:
                    three.set()
        finished.set()

    task = asyncio.create_task(generate())
    try:
        await asyncio.wait_for(three.wait(), 120)
        async with grpc_channel(llm_service[1]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=60)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                assert not finished.is_set(), "the health check was answered only after the generation"
            listed = await stub.ListModels(llm_pb2.ListModelsRequest(), timeout=60)
            assert MODEL in [m.name for m in listed.models]
            answered_at = len(deltas)
            assert not finished.is_set()
        await wait_until(lambda: len(deltas) > answered_at + 3)
        assert len(deltas) > answered_at + 3  # and the generation went on meanwhile
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_cancelled_consumer_stops_the_worker_in_process(local_backend):
    consumer_has_three = asyncio.Event()

    async def consume() -> None:
        seen = 0
        async for _ in local_backend.generate(long_reply_request(max_tokens=1000)):
            seen += 1
            if seen == 3:
                consumer_has_three.set()

    task = asyncio.create_task(consume())
    await consumer_has_three.wait()
    assert local_backend.active_generations == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: local_backend.active_generations == 0)
    assert local_backend.active_generations == 0
    job = local_backend.last_generation
    assert job is not None and job.stop_reason == "cancelled"
    assert job.tokens_at_cancel is not None and job.output_tokens - job.tokens_at_cancel <= 2
    assert job.output_tokens < 1000


async def test_one_generation_at_a_time_per_model(local_backend):
    """Concurrent requests queue for the model: each reply streams whole, never interleaved."""
    arrivals: list[int] = []

    async def run(i: int) -> None:
        request = llm_pb2.GenerateRequest(
            messages=[user(f"Write a sentence about the number {i}.")],
            sampling=llm_pb2.SamplingParams(max_tokens=12, seed=i + 1),
        )
        async for _ in local_backend.generate(request):
            arrivals.append(i)

    await asyncio.gather(*(run(i) for i in range(3)))
    order = [i for n, i in enumerate(arrivals) if n == 0 or arrivals[n - 1] != i]
    assert sorted(order) == [0, 1, 2], arrivals  # three unbroken runs, one per request
    assert local_backend.active_generations == 0


def test_unknown_model_stops_the_service_at_start(log_dir):
    with pytest.raises(RuntimeError, match="no-such-model"):
        start_grpc_service("llm", {"ECHO_LLM_MODEL": "no-such-model"}, log_dir, timeout=60)


def test_price_table(tmp_path):
    table = PriceTable.load()
    assert table.cost(MODEL, 1000, 1000) == 0  # local models are free to run
    assert table.cost("unpriced-model", 1000, 1000) == 0
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  paid-model: {input: 0.5, output: 1.5}\n")
    assert PriceTable.load(prices).cost("paid-model", 2000, 1000) == pytest.approx(2.5)
    prices.write_text("models:\n  paid-model: {input: cheap}\n")
    with pytest.raises(ConfigError, match="paid-model"):
        PriceTable.load(prices)


# --- HTTP backend against a real OpenAI-compatible server ------------------------------------------


@pytest.fixture(scope="module")
def openai_server(log_dir):
    """llama-cpp-python's OpenAI-compatible server on the tiny model, as Ollama would be."""
    require_model(MODEL)
    port = free_port()
    log_path = log_dir / "llama_cpp_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(models.resolve(MODEL)),
                "--model_alias",
                MODEL,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "2",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base_url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not up after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def http_service(openai_server, log_dir):
    env = {"ECHO_LLM_SERVICE": "ollama", "ECHO_LLM_BASE_URL": openai_server, "ECHO_LLM_MODEL": MODEL}
    proc, address = start_grpc_service("llm", env, log_dir)
    yield address
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def http_stub(http_service):
    async with grpc_channel(http_service) as channel:
        yield llm_pb2_grpc.LanguageModelStub(channel)


async def test_http_backend_streams_a_reply(http_stub):
    request = llm_pb2.GenerateRequest(
        messages=[user("Name three colours of the rainbow.")], sampling=llm_pb2.SamplingParams(max_tokens=40)
    )
    deltas, final = await collect(http_stub, request)
    assert len(deltas) >= 3 and all(deltas) and "".join(deltas).strip()
    assert final.done and final.model == MODEL and final.stop_reason in ("stop", "length")
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 40
    assert final.usage.cost_usd == 0
    assert 0 < final.timing.first_token_ms <= final.timing.total_ms


async def test_http_backend_summarize_and_list_models(http_stub):
    reply = await http_stub.Summarize(
        llm_pb2.SummarizeRequest(
            messages=[user("Book a taxi to the airport at 6am tomorrow.")], max_tokens=40
        ),
        timeout=120,
    )
    assert reply.summary.strip()
    listed = await http_stub.ListModels(llm_pb2.ListModelsRequest(), timeout=10)
    assert [(m.name, m.backend, m.is_default) for m in listed.models] == [(MODEL, "ollama", True)]


async def test_http_backend_prices_the_usage_from_the_table(openai_server, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"models:\n  {MODEL}: {{input: 1.0, output: 3.0}}\n")
    backend = OpenAICompatBackend(
        LLMSettings(backend="openai", prices_file=str(prices)),
        OpenAICompatSettings(base_url=openai_server, model=MODEL),
    )
    await backend.start()
    try:
        request = llm_pb2.GenerateRequest(
            messages=[user("Hi")], sampling=llm_pb2.SamplingParams(max_tokens=8)
        )
        events = [event async for event in backend.generate(request)]
    finally:
        await backend.close()
    usage = events[-1].usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 1.0 + usage.output_tokens * 3.0) / 1000)


async def test_http_backend_reports_a_stream_the_server_abandons(http_stub):
    # Over the server's 2048-token context: llama.cpp's server answers 200, then ends the stream empty.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await collect(http_stub, llm_pb2.GenerateRequest(messages=[user("7 " * 2900)]))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "without finishing" in error.value.details()


async def test_http_backend_wrong_path_is_not_found(openai_server):
    backend = OpenAICompatBackend(
        LLMSettings(), OpenAICompatSettings(base_url=f"{openai_server}/nothing/here")
    )
    await backend.start()
    try:
        with pytest.raises(NotFound, match="404"):
            async for _ in backend.generate(llm_pb2.GenerateRequest(messages=[user("hi")])):
                pass
        with pytest.raises(NotFound, match="/nothing/here/v1/models"):
            await backend.list_models()
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": {"message": "max_tokens is too large"}}, InvalidArgument),
        (422, {"detail": "messages: field required"}, InvalidArgument),
        (400, {"error": 'model "llama9" not found, try pulling it first'}, NotFound),
        (404, {"error": {"message": "no such route"}}, NotFound),
        (401, {"error": {"message": "bad key"}}, Unauthenticated),
        (403, {"error": {"message": "not allowed"}}, PermissionDenied),
        (429, {"error": {"message": "rate limited"}}, ResourceExhausted),
        (503, {"error": {"message": "loading model"}}, Unavailable),
    ],
)
def test_http_status_mapping_keeps_the_servers_message(status, body, error):
    """Statuses the llama.cpp server cannot be made to send mid-test, in the shapes that OpenAI and Ollama
    use: each maps to one gRPC status and keeps the server's own words."""
    response = httpx.Response(status, json=body)
    mapped = error_for_response(response, "http://llm.example/v1/chat/completions")
    assert type(mapped) is error
    assert str(status) in str(mapped) and "llm.example" in str(mapped)
    text = body.get("detail") or body["error"]
    assert (text if isinstance(text, str) else text["message"]) in str(mapped)


async def test_http_backend_cancel_closes_the_response(openai_server):
    backend = OllamaBackend(LLMSettings(), OpenAICompatSettings(base_url=openai_server, model=MODEL))
    await backend.start()
    try:
        stream = backend.generate(long_reply_request(max_tokens=300))
        deltas = 0
        async for event in stream:
            deltas += 1 if event.delta else 0
            assert backend.open_streams == 1
            if deltas == 3:
                break
        await stream.aclose()  # what grpc does to the handler's generator on cancel
        assert backend.open_streams == 0
    finally:
        await backend.close()


@pytest.fixture(scope="module")
def dead_url_service(log_dir):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"ECHO_LLM_SERVICE": "openai", "ECHO_LLM_BASE_URL": dead}
    proc, address = start_grpc_service("llm", env, log_dir)
    yield dead, address
    assert proc.stop() == 0, proc.log_tail()


async def test_http_backend_with_no_server_is_unavailable(dead_url_service):
    dead, address = dead_url_service
    async with grpc_channel(address) as channel:
        stub = llm_pb2_grpc.LanguageModelStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stub, llm_pb2.GenerateRequest(messages=[user("hi")]))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dead in error.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ListModels(llm_pb2.ListModelsRequest(), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_calls_need_the_service_credential(llm_service):
    """Nobody on the host calls the model directly without the credential."""

    async def generate(channel: grpc.aio.Channel) -> list[llm_pb2.GenerateEvent]:
        request = llm_pb2.GenerateRequest(
            messages=[user("Say hi.")], sampling=llm_pb2.SamplingParams(max_tokens=2, seed=3)
        )
        return [e async for e in llm_pb2_grpc.LanguageModelStub(channel).Generate(request, timeout=60)]

    service = "echo.v1.LanguageModel"
    await assert_credential_required(
        llm_service[1], [f"/{service}/Generate", f"/{service}/Prefill"], generate
    )
