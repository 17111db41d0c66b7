"""A scripted LLM backend for deterministic tests: known replies, streamed word by word at a set pace.

Pacing uses asyncio.sleep only, and timings come from the event loop's clock, so under a virtual
clock every run produces the same events at the same (virtual) times.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from echo.v1 import audio_pb2, llm_pb2
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import NotFound
from services.llm.backends.base import done_event
from services.llm.config import LLMSettings
from services.llm.prices import Price, PriceTable

MODEL = "fake"
# A word and the whitespace after it: the tokens joined give back the reply exactly.
_TOKEN = re.compile(r"\s*\S+\s*")


@dataclass
class FakeLLMSettings:
    replies: str = field(default="", metadata={"help": "'|'-separated replies, one per Generate call"})
    first_token_delay_s: float = field(default=0.1, metadata={"help": "asyncio sleep before the first token"})
    token_interval_s: float = field(default=0.05, metadata={"help": "asyncio sleep before each later token"})
    price_per_1k: float = field(default=0.0, metadata={"help": "USD per 1K tokens, in and out"})


def load_fake_settings() -> FakeLLMSettings:
    return load_settings(FakeLLMSettings, prefix="ECHO_LLM_FAKE_", section="llm_fake")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _words(messages: list[llm_pb2.ChatMessage]) -> int:
    return sum(len(m.content.split()) for m in messages)


def default_reply(request: llm_pb2.GenerateRequest) -> str:
    last_user = next((m.content.strip() for m in reversed(request.messages) if m.role == "user"), "")
    return f"You said: {last_user}."


class FakeLLMBackend:
    name = "fake"
    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, service: LLMSettings, settings: FakeLLMSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_fake_settings()
        self._script: deque[str] = deque(r for r in self.settings.replies.split("|") if r.strip())
        price = self.settings.price_per_1k
        self.prices = PriceTable({MODEL: Price(price, price)})
        self.requests: list[llm_pb2.GenerateRequest] = []  # every Generate request, as received
        self.prefills: list[llm_pb2.PrefillRequest] = []  # every Prefill request, as received
        self.cancelled = 0  # generations whose consumer stopped before the last event

    def script(self, *replies: str) -> None:
        """Queue replies: each later Generate call streams the next one."""
        self._script.extend(replies)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _check_model(self, requested: str) -> None:
        if requested not in ("", MODEL):
            raise NotFound(f"model {requested!r} is not loaded; this service runs {MODEL!r}")

    def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        # The reply is taken when the call is made, so the script order is the call order.
        self._check_model(request.model)
        recorded = llm_pb2.GenerateRequest()
        recorded.CopyFrom(request)
        self.requests.append(recorded)
        reply = self._script.popleft() if self._script else default_reply(request)
        return self._generate(request, reply)

    async def _generate(
        self, request: llm_pb2.GenerateRequest, reply: str
    ) -> AsyncIterator[llm_pb2.GenerateEvent]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop_reason = "stop"
        for stop in request.sampling.stop:
            if stop and stop in reply:
                reply = reply[: reply.index(stop)]
        pieces = tokens(reply)
        limit = request.sampling.max_tokens or self.service.max_tokens
        if len(pieces) > limit:
            pieces, stop_reason = pieces[:limit], "length"
        first_token_ms = 0.0
        sent = 0
        finished = False
        try:
            for piece in pieces:
                delay = self.settings.first_token_delay_s if not sent else self.settings.token_interval_s
                await asyncio.sleep(delay)
                if not sent:
                    first_token_ms = (loop.time() - started) * 1000
                sent += 1
                yield llm_pb2.GenerateEvent(delta=piece)
            finished = True
        finally:
            if not finished:
                self.cancelled += 1
        event = done_event(
            self.prices, MODEL, _words(list(request.messages)), sent, first_token_ms, 0.0, stop_reason
        )
        # done_event times with perf_counter; the loop's clock keeps this deterministic under a virtual one.
        event.timing.total_ms = (loop.time() - started) * 1000
        yield event

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        """Recorded, so tests can see what the gateway prefilled; there is no context to fill."""
        self._check_model(request.model)
        recorded = llm_pb2.PrefillRequest()
        recorded.CopyFrom(request)
        self.prefills.append(recorded)
        return llm_pb2.PrefillResponse()

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        """The first sentence of each user message: deterministic, and recognisably from the input."""
        firsts = [re.split(r"(?<=[.!?])\s", m.content.strip(), maxsplit=1)[0] for m in request.messages]
        users = [f for m, f in zip(request.messages, firsts, strict=True) if m.role == "user" and f]
        summary = " ".join(users)
        if request.max_tokens:
            summary = "".join(tokens(summary)[: request.max_tokens]).strip()
        return llm_pb2.SummarizeResponse(
            summary=summary,
            usage=audio_pb2.Usage(
                input_tokens=_words(list(request.messages)), output_tokens=len(tokens(summary)), cost_usd=0.0
            ),
            model=MODEL,
        )

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        return [
            llm_pb2.ModelInfo(
                name=MODEL, backend=self.name, is_default=True, description="scripted replies for tests"
            )
        ]
