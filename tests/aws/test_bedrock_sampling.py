"""Bedrock gets a requested temperature or topP of 0 as 0 (not the configured default), as the stand-in
sees it in the ConverseStream body the real SDK sends."""

from __future__ import annotations

import pytest

from echo.v1 import llm_pb2
from services.llm.backends.bedrock import BedrockBackend
from services.llm.config import LLMSettings
from tests.aws.bedrock_standin import BedrockStandIn, ModelScript

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        ({"temperature": 0.0, "top_p": 0.0}, (0.0, 0.0)),
        ({"temperature": 0.0}, (0.0, LLMSettings().top_p)),
        ({}, (LLMSettings().temperature, LLMSettings().top_p)),
        ({"temperature": 1.3, "top_p": 0.5}, (1.3, 0.5)),
    ],
)
async def test_inference_config_carries_what_was_asked(sampling, expected, aws_env):
    backend = BedrockBackend(LLMSettings(backend="bedrock"))
    await backend.start()
    standin = BedrockStandIn()
    standin.models[HAIKU] = ModelScript(reply="Paris.")
    standin.register(backend.client.meta.events)
    request = llm_pb2.GenerateRequest(
        messages=[llm_pb2.ChatMessage(role="user", content="Capital of France?")],
        sampling=llm_pb2.SamplingParams(**sampling),
    )
    try:
        assert "".join([e.delta async for e in backend.generate(request)]) == "Paris."
    finally:
        await backend.close()
    inference = standin.calls[-1].body["inferenceConfig"]
    assert (inference["temperature"], inference["topP"]) == pytest.approx(expected)
