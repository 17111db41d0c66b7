"""Any OpenAI-compatible chat server over HTTP: Ollama, llama.cpp's server, vLLM, OpenAI itself.

Streams ``POST {base_url}/v1/chat/completions`` (server-sent events) and maps HTTP failures to
specific gRPC statuses. Cancelling the stream closes the HTTP response, which tells the server to stop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from echo.v1 import llm_pb2
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from services.llm import summary
from services.llm.backends.base import done_event, no_prefill, sampling_value
from services.llm.config import LLMSettings
from services.llm.prices import PriceTable

log = logging.getLogger("echo.llm.http")


@dataclass
class OpenAICompatSettings:
    model: str = field(default="qwen2.5-coder-0.5b", metadata={"help": "the server's model name"})
    base_url: str = field(
        default="http://127.0.0.1:11434", metadata={"help": "Ollama / OpenAI-compatible server URL"}
    )
    api_key: str = field(default="", metadata={"help": "bearer token for the server, if it needs one"})
    request_timeout_s: float = field(default=60.0, metadata={"help": "read timeout per call"})


def load_openai_compat_settings() -> OpenAICompatSettings:
    return load_settings(OpenAICompatSettings, prefix="ECHO_LLM_", section="llm")


def _server_message(response: httpx.Response) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, Ollama's {"error": "..."}."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:500]


def error_for_response(response: httpx.Response, url: str) -> ServiceError:
    status, message = response.status_code, _server_message(response)
    text = f"{url} answered {status}: {message}"
    if status == 404 or ("model" in message.lower() and "not found" in message.lower()):
        return NotFound(text)
    if status == 401:
        return Unauthenticated(text)
    if status == 403:
        return PermissionDenied(text)
    if status == 429:
        return ResourceExhausted(text)
    if 400 <= status < 500:
        return InvalidArgument(text)
    return Unavailable(text)


class OpenAICompatBackend:
    name = "openai"
    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, service: LLMSettings, settings: OpenAICompatSettings | None = None) -> None:
        self.service = service
        self.settings = settings = settings or load_openai_compat_settings()
        self.base_url = settings.base_url.rstrip("/")
        self.prices = PriceTable.load(service.prices_file)
        self.client: httpx.AsyncClient | None = None
        # Observable for tests: HTTP responses currently open (a cancelled call must close its own).
        self.open_streams = 0

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.settings.request_timeout_s, connect=5.0),
        )
        # The server may come up after us; say so in the log rather than refusing to start.
        try:
            await self.list_models()
        except ServiceError as e:
            log.warning("the model server is not answering yet: %s", e)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            raise Unavailable("the HTTP backend is not started")
        return self.client

    async def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        # Timings run from the request's arrival, queueing included: what the caller waits.
        started = time.perf_counter()
        model = request.model or self.settings.model
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": sampling.max_tokens or self.service.max_tokens,
            "temperature": sampling_value(sampling, "temperature", self.service.temperature),
            "top_p": sampling_value(sampling, "top_p", self.service.top_p),
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed:
            body["seed"] = sampling.seed
        url = f"{self.base_url}/v1/chat/completions"
        usage: dict[str, Any] = {}
        stop_reason, reported_model, finished = "", model, False
        deltas, first_token_ms = 0, 0.0
        try:
            async with self._client().stream("POST", url, json=body) as response:
                self.open_streams += 1
                try:
                    if response.status_code != 200:
                        await response.aread()
                        raise error_for_response(response, url)
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue  # blank separators, comments, "event:" lines
                        data = line[5:].strip()
                        if data == "[DONE]":
                            finished = True
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            raise Unavailable(f"{url} failed mid-stream: {chunk['error']}")
                        reported_model = chunk.get("model") or reported_model
                        usage = chunk.get("usage") or usage
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content") or ""
                            if text:
                                deltas += 1
                                if not first_token_ms:
                                    first_token_ms = (time.perf_counter() - started) * 1000
                                yield llm_pb2.GenerateEvent(delta=text)
                            stop_reason = choice.get("finish_reason") or stop_reason
                finally:
                    self.open_streams -= 1
        except httpx.TimeoutException as e:
            raise Unavailable(f"{url} did not answer within {self.settings.request_timeout_s} s ({e})") from e
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach the model server at {url}: {e}") from e
        except json.JSONDecodeError as e:
            raise Unavailable(f"{url} sent a malformed stream event: {e}") from e
        if not (finished or stop_reason):
            # Some servers (llama.cpp's) fail inside an already-started 200 stream and just end it.
            raise Unavailable(f"{url} ended the stream without finishing the reply; see the server's log")
        # Servers without stream_options (llama.cpp's own server) send no usage: one streamed delta
        # is one token there, and the prompt is estimated at ~4 characters per token.
        prompt_chars = sum(len(m.content) for m in request.messages)
        input_tokens = int(usage.get("prompt_tokens") or prompt_chars // 4 + 1)
        output_tokens = int(usage.get("completion_tokens") or deltas)
        # OpenAI (and vLLM) say how much of the prompt their prefix cache served; others say nothing.
        cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        yield done_event(
            self.prices,
            model,
            input_tokens,
            output_tokens,
            first_token_ms,
            started,
            stop_reason,
            reported_model,
            prompt_cached_tokens=min(cached_tokens, input_tokens),
        )

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        # The chat-completions API has no prefill; servers that cache prompts (OpenAI, vLLM, llama.cpp's
        # server) reuse the prefix of the previous request, which Echo keeps stable.
        return no_prefill()

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        return await summary.summarize(self, request, self.service.summary_max_tokens)

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        url = f"{self.base_url}/v1/models"
        try:
            response = await self._client().get(url)
        except httpx.TimeoutException as e:
            raise Unavailable(f"{url} did not answer within {self.settings.request_timeout_s} s ({e})") from e
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach the model server at {url}: {e}") from e
        if response.status_code != 200:
            raise error_for_response(response, url)
        try:
            ids = [str(m["id"]) for m in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise Unavailable(f"{url} sent an unexpected model list: {e}") from e
        return [
            llm_pb2.ModelInfo(
                name=model_id,
                backend=self.name,
                is_default=model_id == self.settings.model,
                description=f"served by {self.base_url}",
            )
            for model_id in ids
        ]


class OllamaBackend(OpenAICompatBackend):
    """The same client for Ollama's OpenAI-compatible API; only the name ListModels reports differs."""

    name = "ollama"
