"""The Bedrock LLM backend with the real aioboto3 client: requests are built, signed and sent by the SDK
over HTTP to a local stand-in, which answers with real AWS event-stream frames (or AWS error replies)
that botocore parses."""

from __future__ import annotations

import grpc
import pytest

from echo.v1 import llm_pb2, llm_pb2_grpc
from services.common.errors import (
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.llm import config, summary
from services.llm.backends.bedrock import BedrockBackend
from services.llm.config import LLMSettings
from tests.aws.bedrock_standin import BedrockStandIn, ModelScript
from tests.aws.conftest import isolated_aws_env
from tests.servicetools import grpc_channel, start_grpc_service

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TITAN = "amazon.titan-text-express-v1"
LITE = "amazon.titan-text-lite-v1"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"


def request(text: str = "What is the capital of France?", **kwargs) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        messages=[
            llm_pb2.ChatMessage(role="system", content="You are Echo."),
            llm_pb2.ChatMessage(role="user", content=text),
        ],
        **kwargs,
    )


@pytest.fixture(scope="module")
def standin_server():
    standin = BedrockStandIn()
    url = standin.serve()
    yield standin, url
    standin.stop()


@pytest.fixture
def standin(standin_server, aws_env, monkeypatch):
    """The HTTP stand-in, scripted afresh per test; both Bedrock endpoints point at it."""
    standin, url = standin_server
    standin.models.clear()
    standin.calls.clear()
    standin.catalogue_error = ""
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", url)
    return standin


async def started(settings: LLMSettings) -> BedrockBackend:
    backend = BedrockBackend(settings)
    await backend.start()
    return backend


@pytest.fixture
async def bedrock(standin):
    backend = await started(LLMSettings(backend="bedrock"))
    yield backend, standin
    await backend.close()


async def collect(backend, req) -> tuple[str, llm_pb2.GenerateEvent]:
    text, last = "", None
    async for event in backend.generate(req):
        text += event.delta
        last = event
    return text, last


def models_called(standin: BedrockStandIn) -> list[str]:
    return [c.model_id for c in standin.calls if c.operation == "converse-stream"]


async def test_streams_the_reply_with_usage_and_cost(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(reply="The capital of France is Paris.", input_tokens=120)
    text, done = await collect(backend, request())
    assert text == "The capital of France is Paris."
    assert done.done and done.model == HAIKU and done.stop_reason == "end_turn"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (120, 6)
    assert done.usage.cost_usd == pytest.approx((120 * 0.00025 + 6 * 0.00125) / 1000)
    call = standin.calls[-1]
    assert call.operation == "converse-stream" and call.model_id == HAIKU
    # Really signed by the SDK, for Bedrock's signing name.
    assert call.authorization.startswith("AWS4-HMAC-SHA256") and "/us-east-1/bedrock/" in call.authorization
    assert call.body["system"] == [{"text": "You are Echo."}]
    assert call.body["messages"] == [
        {"role": "user", "content": [{"text": "What is the capital of France?"}]}
    ]


async def test_throttled_model_falls_back(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(error="ThrottlingException")
    standin.models[TITAN] = ModelScript(reply="Paris.")
    text, done = await collect(backend, request())
    assert text == "Paris." and done.model == TITAN
    assert models_called(standin) == [HAIKU, TITAN]  # straight to the fallback: no SDK retry first
    assert done.usage.cost_usd == pytest.approx(
        (done.usage.input_tokens * 0.0002 + done.usage.output_tokens * 0.0006) / 1000
    )


@pytest.mark.parametrize(
    "error",
    ["ModelErrorException", "ModelNotReadyException", "ModelTimeoutException", "ServiceUnavailableException"],
)
async def test_model_errors_fall_back(bedrock, error):
    backend, standin = bedrock
    standin.models[SONNET] = ModelScript(error=error)
    standin.models[HAIKU] = ModelScript(reply="Fallback answer.")
    text, done = await collect(backend, request(purpose="complex"))
    assert text == "Fallback answer." and done.model == HAIKU
    assert models_called(standin) == [SONNET, HAIKU]


async def test_model_stream_error_before_any_text_falls_back(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(midstream_error="modelStreamErrorException", midstream_after=0)
    standin.models[TITAN] = ModelScript(reply="From the fallback.")
    text, done = await collect(backend, request())
    assert text == "From the fallback." and done.model == TITAN
    assert models_called(standin) == [HAIKU, TITAN]


async def test_no_fallback_once_text_has_streamed(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(
        reply="one two three four five", midstream_error="modelStreamErrorException"
    )
    standin.models[TITAN] = ModelScript(reply="never used")
    received = []
    with pytest.raises(Unavailable) as err:
        async for event in backend.generate(request()):
            received.append(event.delta)
    assert "".join(received) == "one two"
    assert "ConverseStream" in str(err.value) and "ModelStreamErrorException" in str(err.value)
    assert models_called(standin) == [HAIKU]


async def test_throttling_without_a_fallback_is_a_clear_error(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(error="ThrottlingException")
    with pytest.raises(ResourceExhausted) as err:
        await collect(backend, request(model=HAIKU))  # an explicit model has no fallback
    message = str(err.value)
    assert HAIKU in message and "ThrottlingException" in message and "Too many requests" in message
    assert models_called(standin) == [HAIKU]


async def test_every_model_failing_names_each_failure(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(error="ThrottlingException")
    standin.models[TITAN] = ModelScript(error="ModelErrorException")
    with pytest.raises(Unavailable) as err:
        await collect(backend, request())
    message = str(err.value)
    assert "every model" in message and HAIKU in message and TITAN in message
    assert "ThrottlingException" in message and "ModelErrorException" in message


async def test_access_denied_and_bad_model_are_clear(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(error="AccessDeniedException")
    with pytest.raises(PermissionDenied) as err:
        await collect(backend, request(model=HAIKU))
    assert "ConverseStream" in str(err.value) and HAIKU in str(err.value)
    # An unknown model id is NOT_FOUND, as with the local backends; no fallback hides it.
    with pytest.raises(NotFound) as err:
        await collect(backend, request(model="no.such-model-v9"))
    assert "no model 'no.such-model-v9'" in str(err.value)
    assert "model identifier is invalid" in str(err.value)


async def test_purpose_picks_the_model(bedrock):
    backend, standin = bedrock
    standin.models[LITE] = ModelScript(reply="Cheap answer.")
    standin.models[SONNET] = ModelScript(reply="Considered answer.")
    text, done = await collect(backend, request(purpose="cheap"))
    assert text == "Cheap answer." and done.model == LITE
    text, done = await collect(backend, request(purpose="complex"))
    assert text == "Considered answer." and done.model == SONNET
    assert done.usage.cost_usd == pytest.approx(
        (done.usage.input_tokens * 0.003 + done.usage.output_tokens * 0.015) / 1000
    )
    assert models_called(standin) == [LITE, SONNET]


async def test_bedrock_model_id_replaces_the_quick_model(standin, monkeypatch):
    monkeypatch.setenv("ECHO_LLM_SERVICE", "bedrock")
    monkeypatch.setenv("BEDROCK_MODEL_ID", LITE)
    backend = await started(config.load())
    try:
        assert backend.table["quick"] == (LITE, TITAN)  # the fallback stays
        standin.models[LITE] = ModelScript(reply="Lite speaking.")
        standin.models[HAIKU] = ModelScript(reply="Haiku summarizing.")
        text, done = await collect(backend, request())
        assert text == "Lite speaking." and done.model == LITE
        # Other purposes keep their models.
        text, done = await collect(backend, request(purpose="summarize"))
        assert done.model == HAIKU
    finally:
        await backend.close()


async def test_summarize_through_bedrock(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(reply="The user asked for the capital of France; it is Paris.")
    reply = await backend.summarize(
        llm_pb2.SummarizeRequest(
            messages=[
                llm_pb2.ChatMessage(role="user", content="What is the capital of France?"),
                llm_pb2.ChatMessage(role="assistant", content="Paris."),
            ]
        )
    )
    assert reply.summary == "The user asked for the capital of France; it is Paris."
    assert reply.model == HAIKU and reply.usage.output_tokens == 11 and reply.usage.cost_usd > 0
    (call,) = standin.calls
    assert call.model_id == HAIKU  # the summarize purpose's model
    assert call.body["system"] == [{"text": summary.SYSTEM_PROMPT}]
    (message,) = call.body["messages"]
    assert "user: What is the capital of France?\nassistant: Paris." in message["content"][0]["text"]
    assert call.body["inferenceConfig"]["temperature"] == pytest.approx(0.2)


async def test_list_models_joins_the_catalogue_and_the_configured_set(bedrock):
    backend, standin = bedrock
    models = {m.name: m for m in await backend.list_models()}
    (listing,) = [c for c in standin.calls if c.operation == "foundation-models"]
    assert listing.body == {"byOutputModality": "TEXT"}
    assert "/bedrock/" in listing.authorization
    # From the catalogue only, with its name; embeddings are not offered.
    assert (
        models["meta.llama3-8b-instruct-v1:0"].description == "Meta Llama 3 8B Instruct (Bedrock catalogue)"
    )
    assert "amazon.titan-embed-text-v2:0" not in models
    # Configured, with the purposes it serves; the default is the quick model.
    assert models[HAIKU].is_default and [m.name for m in models.values() if m.is_default] == [HAIKU]
    assert models[HAIKU].description == "Anthropic Claude 3 Haiku (quick, complex, summarize)"
    assert models[MISTRAL].description == "cheap; not in this region's catalogue"
    assert all(m.backend == "bedrock" for m in models.values())


async def test_list_models_without_the_catalogue_lists_the_configured_set(bedrock):
    backend, standin = bedrock
    standin.catalogue_error = "AccessDeniedException"
    names = {m.name for m in await backend.list_models()}
    assert names == {HAIKU, SONNET, TITAN, LITE, MISTRAL}


async def test_missing_credentials_are_unauthenticated(standin, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    backend = await started(LLMSettings(backend="bedrock"))
    standin.models[HAIKU] = ModelScript()
    try:
        with pytest.raises(Unauthenticated) as err:
            await collect(backend, request())
        assert "credentials" in str(err.value)
        assert standin.calls == []  # nothing unsigned left the process
    finally:
        await backend.close()


async def test_the_before_send_handler_answers_the_same_way(aws_env):
    """The same replies injected into the SDK's pipeline (no socket): the same parsed stream."""
    backend = await started(LLMSettings(backend="bedrock"))
    standin = BedrockStandIn(models={HAIKU: ModelScript(reply="You said: {user}")})
    standin.register(backend.client.meta.events)
    try:
        text, done = await collect(backend, request("hello there"))
        assert text == "You said: hello there" and done.usage.output_tokens == 4
    finally:
        await backend.close()


async def test_through_the_llm_service(standin_server, log_dir):
    """The llm service process with ECHO_LLM_SERVICE=bedrock: the statuses its clients see."""
    standin, url = standin_server
    standin.models.clear()
    standin.models[HAIKU] = ModelScript(reply="You asked: {user}")
    env = isolated_aws_env(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=url, AWS_ENDPOINT_URL_BEDROCK=url)
    proc, address = start_grpc_service("llm", {"ECHO_LLM_SERVICE": "bedrock", **env}, log_dir)
    try:
        async with grpc_channel(address) as channel:
            stub = llm_pb2_grpc.LanguageModelStub(channel)
            events = [e async for e in stub.Generate(request("Is it raining?"), timeout=30)]
            assert "".join(e.delta for e in events) == "You asked: Is it raining?"
            assert events[-1].done and events[-1].usage.cost_usd > 0
            listed = await stub.ListModels(llm_pb2.ListModelsRequest(), timeout=30)
            assert HAIKU in {m.name for m in listed.models}
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Generate(request(model="no.such-model-v9"), timeout=30):
                    pass
            assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no.such-model-v9" in err.value.details()
            standin.models[HAIKU] = ModelScript(error="ThrottlingException")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Generate(request(model=HAIKU), timeout=30):
                    pass
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "ThrottlingException" in err.value.details()
    finally:
        proc.stop()
