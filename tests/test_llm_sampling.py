"""Sampling values that are set reach the model as they are, 0 included (temperature 0 is greedy
decoding); unset ones are the service's configured defaults. Before SamplingParams had field presence,
`temperature or default` turned a requested 0 into the default."""

from __future__ import annotations

import json

import httpx
import pytest

from echo.v1 import llm_pb2
from services.common.errors import InvalidArgument
from services.llm.backends.openai_compat import OpenAICompatBackend, OpenAICompatSettings
from services.llm.config import LLMSettings
from services.llm.server import check_sampling
from tests.test_llm_service import MODEL, local_backend, openai_server, user  # noqa: F401 - fixtures

pytestmark = pytest.mark.models

DEFAULTS = LLMSettings()


def greedy_request(seed: int, **sampling: float) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        messages=[user("Write one sentence about the sea.")],
        sampling=llm_pb2.SamplingParams(max_tokens=24, seed=seed, **sampling),
    )


async def text_of(backend, request: llm_pb2.GenerateRequest) -> str:  # type: ignore[no-untyped-def]
    return "".join([e.delta async for e in backend.generate(request)])


def test_zero_passes_validation_and_out_of_range_values_do_not():
    check_sampling(llm_pb2.SamplingParams(temperature=0, top_p=0))
    check_sampling(llm_pb2.SamplingParams())
    with pytest.raises(InvalidArgument, match="temperature"):
        check_sampling(llm_pb2.SamplingParams(temperature=2.5))
    with pytest.raises(InvalidArgument, match="top_p"):
        check_sampling(llm_pb2.SamplingParams(top_p=-0.1))
    # Presence survives the wire: what the service receives still says "set to 0".
    wire = llm_pb2.SamplingParams.FromString(llm_pb2.SamplingParams(temperature=0).SerializeToString())
    assert wire.HasField("temperature") and not wire.HasField("top_p")


async def test_llamacpp_passes_zero_to_llama_cpp(local_backend):  # noqa: F811 - the imported fixture
    assert DEFAULTS.temperature > 0 and DEFAULTS.top_p > 0  # else 0 could not be told from the default
    # Once before, so both compared runs find the prompt in llama.cpp's prefix cache: a prompt evaluated
    # in one batch and one evaluated from the cache take different kernels, whose last bits can differ.
    await text_of(local_backend, greedy_request(seed=1, temperature=0, top_p=0))
    first = await text_of(local_backend, greedy_request(seed=1, temperature=0, top_p=0))
    job = local_backend.last_generation
    assert (job.temperature, job.top_p) == (0.0, 0.0)
    # Greedy decoding does not depend on the seed; sampling at the default temperature would.
    assert await text_of(local_backend, greedy_request(seed=2, temperature=0, top_p=0)) == first
    await text_of(local_backend, greedy_request(seed=1))
    job = local_backend.last_generation
    assert (job.temperature, job.top_p) == pytest.approx((DEFAULTS.temperature, DEFAULTS.top_p))


async def test_openai_compatible_backend_sends_zero(openai_server):  # noqa: F811 - the imported fixture
    backend = OpenAICompatBackend(
        LLMSettings(backend="openai"), OpenAICompatSettings(base_url=openai_server, model=MODEL)
    )
    await backend.start()
    bodies: list[dict] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            bodies.append(json.loads(request.content))

    assert backend.client is not None
    backend.client.event_hooks["request"].append(record)
    try:
        await text_of(backend, greedy_request(seed=1, temperature=0, top_p=0))  # prompt cached, as above
        first = await text_of(backend, greedy_request(seed=1, temperature=0, top_p=0))
        assert (bodies[-1]["temperature"], bodies[-1]["top_p"]) == (0, 0)
        assert await text_of(backend, greedy_request(seed=2, temperature=0, top_p=0)) == first
        await text_of(backend, greedy_request(seed=1))
        assert (bodies[-1]["temperature"], bodies[-1]["top_p"]) == pytest.approx(
            (DEFAULTS.temperature, DEFAULTS.top_p)
        )
    finally:
        await backend.close()
