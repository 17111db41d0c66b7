"""Bedrock Runtime stand-in: a botocore ``before-send`` handler that answers Converse/ConverseStream.

moto does not implement ConverseStream. This handler runs after the real client has built and signed
the request and returns an HTTP response whose body is real AWS event-stream frames, so botocore's own
parser produces the ``EventStream`` (and its errors) exactly as with AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiobotocore.awsrequest import AioAWSResponse
from botocore.awsrequest import HTTPHeaders

from tests.aws.eventstream import event_frame, exception_frame


@dataclass
class ModelScript:
    """What one model id does: answer ``reply``, fail before streaming, or fail mid-stream."""

    reply: str = "Hello from the stand-in."
    # "ThrottlingException", "AccessDeniedException", "ValidationException", ... before any frame.
    error: str = ""
    # Exception frame type (e.g. "throttlingException", "modelStreamErrorException") after a few deltas.
    midstream_error: str = ""
    input_tokens: int = 0  # 0: count the request's words


@dataclass
class Call:
    model_id: str
    operation: str
    body: dict[str, Any]
    authorization: str


_STATUS = {
    "ThrottlingException": 429,
    "AccessDeniedException": 403,
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 408,
    "UnrecognizedClientException": 403,
}
_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ValidationException": "The provided model identifier is invalid.",
}


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        for chunk in self._chunks:
            yield chunk, True


class _Raw:
    """The little of aiohttp's response that aiobotocore reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)
        self._body = b"".join(chunks)

    async def read(self) -> bytes:
        return self._body

    def close(self) -> None:  # closing the stream early closes the response, as with aiohttp
        pass


@dataclass(eq=False)  # registered as an event handler: hashed by identity
class BedrockStandIn:
    models: dict[str, ModelScript] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def register(self, events: Any) -> None:
        events.register("before-send.bedrock-runtime", self)

    def __call__(self, request: Any, **_: Any) -> AioAWSResponse | None:
        path = unquote(request.url.split("://", 1)[-1].split("/", 1)[-1])
        if not path.startswith("model/"):
            return None  # not Converse: let it go (and fail to connect)
        model_id, _, operation = path.removeprefix("model/").rpartition("/")
        body = json.loads(request.body or b"{}")
        auth = request.headers.get("Authorization", b"")
        self.calls.append(Call(model_id, operation, body, auth.decode() if isinstance(auth, bytes) else auth))
        script = self.models.get(model_id)
        if script is None:
            return self._error(request.url, "ValidationException", _MESSAGES["ValidationException"])
        if script.error:
            return self._error(request.url, script.error, _MESSAGES.get(script.error, script.error))
        prompt_words = sum(
            len(str(part.get("text", "")).split())
            for message in body.get("messages", [])
            for part in message.get("content", [])
        ) + sum(len(str(s.get("text", "")).split()) for s in body.get("system", []))
        input_tokens = script.input_tokens or prompt_words
        output_tokens = len(script.reply.split())
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        if operation == "converse":
            payload = {
                "output": {"message": {"role": "assistant", "content": [{"text": script.reply}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 5},
            }
            return self._response(
                request.url, 200, {"content-type": "application/json"}, [json.dumps(payload).encode()]
            )
        frames = [event_frame("messageStart", {"role": "assistant"})]
        words = script.reply.split(" ")
        for i, word in enumerate(words):
            if script.midstream_error and i == 2:
                frames.append(exception_frame(script.midstream_error, "The model stream failed mid-way."))
                break
            text = word if i == 0 else " " + word
            frames.append(event_frame("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": 0}))
        else:
            frames += [
                event_frame("contentBlockStop", {"contentBlockIndex": 0}),
                event_frame("messageStop", {"stopReason": "end_turn"}),
                event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}),
            ]
        headers = {
            "content-type": "application/vnd.amazon.eventstream",
            "x-amzn-requestid": str(time.time_ns()),
        }
        return self._response(request.url, 200, headers, frames)

    def _error(self, url: str, code: str, message: str) -> AioAWSResponse:
        headers = {
            "content-type": "application/json",
            "x-amzn-errortype": f"{code}:http://internal.amazon.com/",
        }
        body = json.dumps({"message": message}).encode()
        return self._response(url, _STATUS.get(code, 400), headers, [body])

    @staticmethod
    def _response(url: str, status: int, headers: dict[str, str], chunks: list[bytes]) -> AioAWSResponse:
        return AioAWSResponse(url, status, HTTPHeaders(headers), _Raw(chunks))
