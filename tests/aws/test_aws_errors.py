"""services.common.aws's error mapping: SDK and network failures become the Echo error a caller can act
on; anything else is a bug and propagates unchanged, so it ends as INTERNAL and no fallback hides it."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiohttp
import grpc
import pytest
from botocore import exceptions as bx

from echo.v1 import llm_pb2, tts_pb2, tts_pb2_grpc
from services.common import aws
from services.common.errors import InvalidArgument, ResourceExhausted, Unauthenticated, Unavailable
from services.llm.backends.bedrock import BedrockBackend
from services.llm.config import LLMSettings
from services.tts.backends.polly import PollyBackend
from services.tts.config import TTSSettings
from services.tts.server import TextToSpeechServicer
from tests.aws.bedrock_standin import BedrockStandIn, ModelScript

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-text-express-v1"


def client_error(code: str, status: int) -> bx.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "from the test"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "SynthesizeSpeech")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("ThrottlingException", 400), ResourceExhausted),
        (client_error("InternalServerException", 500), Unavailable),
        (bx.EndpointConnectionError(endpoint_url="https://polly.example"), Unavailable),
        (bx.ConnectTimeoutError(endpoint_url="https://polly.example"), Unavailable),
        (bx.ReadTimeoutError(endpoint_url="https://polly.example"), Unavailable),
        (bx.NoCredentialsError(), Unauthenticated),
        (bx.ParamValidationError(report="Text is required"), InvalidArgument),
        (aiohttp.ClientConnectionError("connection reset"), Unavailable),
        (aiohttp.ServerDisconnectedError(), Unavailable),
        (ConnectionResetError(104, "Connection reset by peer"), Unavailable),
        (TimeoutError(), Unavailable),
        (socket.gaierror(-2, "Name or service not known"), Unavailable),
        (ssl.SSLError(1, "certificate verify failed"), Unavailable),
    ],
)
def test_sdk_and_network_failures_are_mapped(error, expected):
    mapped = aws.map_error(error, "Polly SynthesizeSpeech")
    assert type(mapped) is expected
    assert "Polly SynthesizeSpeech" in str(mapped)
    with pytest.raises(expected):
        with aws.aws_errors("Polly SynthesizeSpeech"):
            raise error


@pytest.mark.parametrize(
    "error",
    [
        TypeError("unsupported operand type(s)"),
        KeyError("AudioStream"),
        AttributeError("'NoneType' object has no attribute 'read'"),
        ValueError("bad value"),
        FileNotFoundError(2, "No such file or directory"),  # an OSError, but not the network's
    ],
)
def test_bugs_propagate_unchanged(error):
    with pytest.raises(type(error)) as raised:
        aws.map_error(error, "Polly SynthesizeSpeech")
    assert raised.value is error
    with pytest.raises(type(error)) as raised:
        with aws.aws_errors("Polly SynthesizeSpeech"):
            raise error
    assert raised.value is error


class Bug:
    """A botocore before-send handler that fails like a programming error in the call path (only for
    requests whose URL contains ``only``)."""

    def __init__(self, error: Exception, only: str = "") -> None:
        self.error, self.only, self.calls = error, only, 0

    def __call__(self, request: Any, **_: Any) -> None:
        if self.only in request.url:
            self.calls += 1
            raise self.error


async def test_a_bug_in_a_bedrock_call_does_not_fall_back(aws_env):
    backend = BedrockBackend(LLMSettings(backend="bedrock"))
    await backend.start()
    standin = BedrockStandIn()
    standin.models[HAIKU] = ModelScript(error="ThrottlingException")
    standin.models[TITAN] = ModelScript(reply="Paris.")
    request = llm_pb2.GenerateRequest(
        messages=[llm_pb2.ChatMessage(role="user", content="Capital of France?")]
    )
    try:
        standin.register(backend.client.meta.events)
        # First the contrast: throttling is an outage of one model, so its fallback answers.
        text = "".join([e.delta async for e in backend.generate(request)])
        assert text == "Paris." and [c.model_id for c in standin.calls] == [HAIKU, TITAN]
        standin.calls.clear()
        # A TypeError while calling the first model is a bug: it surfaces as itself, untried fallback.
        bug = Bug(TypeError("unsupported operand type(s) for +: 'int' and 'str'"), only=HAIKU.split(":")[0])
        backend.client.meta.events.register_first("before-send.bedrock-runtime", bug)
        with pytest.raises(TypeError, match="unsupported operand"):
            async for _ in backend.generate(request):
                pass
        assert bug.calls == 1 and standin.calls == []  # neither model was answered: no fallback ran
    finally:
        await backend.close()


async def test_a_bug_in_polly_is_internal_over_grpc(aws_env):
    backend = PollyBackend(TTSSettings(backend="polly"))
    await backend.start()
    server = grpc.aio.server()
    tts_pb2_grpc.add_TextToSpeechServicer_to_server(TextToSpeechServicer(backend, 3000), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        backend.client.meta.events.register(
            "before-send.polly.SynthesizeSpeech", Bug(KeyError("AudioStream"))
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hello."), timeout=30):
                    pass
        # Not UNAVAILABLE: a caller (or a fallback chain) must not mistake a bug for an outage.
        assert err.value.code() == grpc.StatusCode.INTERNAL, err.value
        assert "KeyError" in (err.value.details() or "")
    finally:
        await server.stop(0)
        await backend.close()
