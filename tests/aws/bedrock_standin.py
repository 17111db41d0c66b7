"""Amazon Bedrock stand-in: ConverseStream and Converse (bedrock-runtime) and ListFoundationModels
(bedrock), answered the way AWS answers them. moto implements none of these.

Replies are built here once and reach the real SDK in one of two ways:
- ``serve()``: a local HTTP server; point ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (and
  ``AWS_ENDPOINT_URL_BEDROCK``) at its URL, from this process or from a service process. The SDK's own
  HTTP stack then reads a chunked ``application/vnd.amazon.eventstream`` body frame by frame.
- ``register(client.meta.events)``: a botocore ``before-send`` handler that returns the same reply
  after the real client has built and signed the request.
Either way botocore's own parser turns the frames into the ``EventStream`` (and its errors).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiobotocore.awsrequest import AioAWSResponse

from tests.aws.eventstream import event_frame, exception_frame
from tests.aws.standins import HttpStandIn, Reply, Request, sdk_response


@dataclass
class ModelScript:
    """What one model id does: answer ``reply``, fail before streaming, or fail mid-stream."""

    # "{user}" is replaced by the last user message, so a test can see its words reach the model.
    reply: str = "Hello from the stand-in."
    # "ThrottlingException", "ModelErrorException", "AccessDeniedException", ... before any frame.
    error: str = ""
    # Exception frame type (e.g. "throttlingException", "modelStreamErrorException") sent in place of
    # the delta numbered ``midstream_after`` (0: right after messageStart, before any text).
    midstream_error: str = ""
    midstream_after: int = 2
    input_tokens: int = 0  # 0: count the request's words


@dataclass
class Call:
    model_id: str
    operation: str
    body: dict[str, Any]
    authorization: str


# HTTP statuses Bedrock answers its errors with (424 for a failed model is Bedrock's own choice).
_STATUS = {
    "ThrottlingException": 429,
    "AccessDeniedException": 403,
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ServiceQuotaExceededException": 400,
    "UnrecognizedClientException": 403,
}
_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ValidationException": "The provided model identifier is invalid.",
    "ModelErrorException": "The system encountered an unexpected error during processing.",
}
# What ListFoundationModels knows, beyond the scripted models: (model id, provider, name).
CATALOGUE = [
    ("anthropic.claude-3-haiku-20240307-v1:0", "Anthropic", "Claude 3 Haiku"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "Anthropic", "Claude 3.5 Sonnet"),
    ("amazon.titan-text-express-v1", "Amazon", "Titan Text G1 - Express"),
    ("amazon.titan-text-lite-v1", "Amazon", "Titan Text G1 - Lite"),
    ("meta.llama3-8b-instruct-v1:0", "Meta", "Llama 3 8B Instruct"),
    ("amazon.titan-embed-text-v2:0", "Amazon", "Titan Text Embeddings V2"),  # not a text generator
]


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return " ".join(str(p.get("text", "")) for p in message.get("content", [])).strip()
    return ""


@dataclass(eq=False)  # registered as an event handler: hashed by identity
class BedrockStandIn:
    models: dict[str, ModelScript] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    catalogue: list[tuple[str, str, str]] = field(default_factory=lambda: list(CATALOGUE))
    catalogue_error: str = ""  # e.g. "AccessDeniedException": ListFoundationModels fails
    _server: HttpStandIn | None = None

    # -- transports

    def serve(self) -> str:
        """Start the HTTP server (once); returns its URL for the SDK's endpoint variables."""
        if self._server is None:
            self._server = HttpStandIn(self.handle)
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def register(self, events: Any) -> None:
        events.register("before-send.bedrock-runtime", self)

    def __call__(self, request: Any, **_: Any) -> AioAWSResponse:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        split = urlsplit(request.url)
        path = split.path + (f"?{split.query}" if split.query else "")
        reply = self.handle(Request(request.method, path, headers, request.body or b""))
        return sdk_response(request.url, reply)

    # -- the service

    def handle(self, request: Request) -> Reply:
        split = urlsplit(request.path)
        path = unquote(split.path).lstrip("/")
        if request.method == "GET" and path == "foundation-models":
            return self._list_models(parse_qs(split.query), request.headers.get("authorization", ""))
        if request.method != "POST" or not path.startswith("model/"):
            return self._error("UnknownOperationException", f"no operation at {request.method} /{path}", 404)
        model_id, _, operation = path.removeprefix("model/").rpartition("/")
        body = json.loads(request.body or b"{}")
        self.calls.append(Call(model_id, operation, body, request.headers.get("authorization", "")))
        script = self.models.get(model_id)
        if script is None:
            return self._error("ValidationException")
        if script.error:
            return self._error(script.error)
        return self._answer(script, operation, body)

    def _answer(self, script: ModelScript, operation: str, body: dict[str, Any]) -> Reply:
        prompt_words = sum(
            len(str(part.get("text", "")).split())
            for message in body.get("messages", [])
            for part in message.get("content", [])
        ) + sum(len(str(s.get("text", "")).split()) for s in body.get("system", []))
        reply = script.reply.replace("{user}", last_user_text(body))
        input_tokens = script.input_tokens or prompt_words
        output_tokens = len(reply.split())
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        if operation == "converse":
            payload = {
                "output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 5},
            }
            return Reply(200, {"content-type": "application/json"}, [json.dumps(payload).encode()])
        frames = [event_frame("messageStart", {"role": "assistant"})]
        for i, word in enumerate(reply.split(" ")):
            if script.midstream_error and i == script.midstream_after:
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
        return Reply(200, headers, frames, stream=True)

    def _list_models(self, query: dict[str, list[str]], authorization: str) -> Reply:
        self.calls.append(Call("", "foundation-models", {k: v[0] for k, v in query.items()}, authorization))
        if self.catalogue_error:
            return self._error(self.catalogue_error)
        wanted = query.get("byOutputModality", [""])[0]
        summaries = []
        for model_id, provider, name in self.catalogue:
            output = ["EMBEDDING"] if "embed" in model_id else ["TEXT"]
            if wanted and wanted not in output:
                continue
            summaries.append(
                {
                    "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model_id}",
                    "modelId": model_id,
                    "modelName": name,
                    "providerName": provider,
                    "inputModalities": ["TEXT"],
                    "outputModalities": output,
                    "responseStreamingSupported": output == ["TEXT"],
                    "customizationsSupported": [],
                    "inferenceTypesSupported": ["ON_DEMAND"],
                    "modelLifecycle": {"status": "ACTIVE"},
                }
            )
        return Reply(
            200, {"content-type": "application/json"}, [json.dumps({"modelSummaries": summaries}).encode()]
        )

    @staticmethod
    def _error(code: str, message: str = "", status: int = 0) -> Reply:
        headers = {
            "content-type": "application/json",
            "x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": str(time.time_ns()),
        }
        body = json.dumps({"message": message or _MESSAGES.get(code, code)}).encode()
        return Reply(status or _STATUS.get(code, 400), headers, [body])
