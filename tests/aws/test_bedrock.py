"""The Bedrock LLM backend with the real aioboto3 client: requests are built, signed and sent by the SDK;
the stand-in answers with real AWS event-stream frames that botocore parses."""

from __future__ import annotations

import pytest

from echo.v1 import llm_pb2
from services.common.errors import InvalidArgument, PermissionDenied, ServiceError, Unauthenticated
from services.llm.backends.bedrock import BedrockBackend
from services.llm.config import LLMSettings
from tests.aws.bedrock_standin import BedrockStandIn, ModelScript

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-text-express-v1"


def request(text: str = "What is the capital of France?", **kwargs) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        messages=[
            llm_pb2.ChatMessage(role="system", content="You are Echo."),
            llm_pb2.ChatMessage(role="user", content=text),
        ],
        **kwargs,
    )


@pytest.fixture
async def bedrock(aws_env):
    standin = BedrockStandIn()
    backend = BedrockBackend(LLMSettings(backend="bedrock"))
    await backend.start()
    standin.register(backend.client.meta.events)
    yield backend, standin
    await backend.close()


async def collect(backend, req) -> tuple[str, llm_pb2.GenerateEvent]:
    text, last = "", None
    async for event in backend.generate(req):
        text += event.delta
        last = event
    return text, last


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
    assert call.authorization.startswith("AWS4-HMAC-SHA256")  # really signed by the SDK
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
    assert [c.model_id for c in standin.calls] == [HAIKU, TITAN]
    assert done.usage.cost_usd > 0


async def test_no_fallback_once_text_has_streamed(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(
        reply="one two three four five", midstream_error="modelStreamErrorException"
    )
    standin.models[TITAN] = ModelScript(reply="never used")
    received = []
    with pytest.raises(ServiceError) as err:
        async for event in backend.generate(request()):
            received.append(event.delta)
    assert "".join(received) == "one two"
    assert "ConverseStream" in str(err.value)
    assert [c.model_id for c in standin.calls] == [HAIKU]


async def test_access_denied_and_bad_model_are_clear(bedrock):
    backend, standin = bedrock
    standin.models[HAIKU] = ModelScript(error="AccessDeniedException")
    with pytest.raises(PermissionDenied) as err:
        await collect(backend, request(model=HAIKU))
    assert "ConverseStream" in str(err.value) and HAIKU in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        await collect(backend, request(model="no.such-model-v9"))
    assert "model identifier is invalid" in str(err.value)


async def test_purpose_picks_the_model(bedrock):
    backend, standin = bedrock
    standin.models["amazon.titan-text-lite-v1"] = ModelScript(reply="Cheap answer.")
    text, done = await collect(backend, request(purpose="cheap"))
    assert text == "Cheap answer." and done.model == "amazon.titan-text-lite-v1"


async def test_missing_credentials_are_unauthenticated(monkeypatch, aws_env):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    backend = BedrockBackend(LLMSettings(backend="bedrock"))
    await backend.start()
    BedrockStandIn(models={HAIKU: ModelScript()}).register(backend.client.meta.events)
    try:
        with pytest.raises(Unauthenticated) as err:
            await collect(backend, request())
        assert "credentials" in str(err.value)
    finally:
        await backend.close()
