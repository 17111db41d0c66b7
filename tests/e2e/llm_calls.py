"""A gRPC relay in front of the real llm service that records every Generate call the gateway makes:
when it began (on this process's clock, the one VoiceClient stamps events with), the user message it
answers, the deltas the model produced, and how it ended. Tests see the gateway's work downstream, not
only what it chose to tell the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from echo.v1 import llm_pb2
from tests.servicetools import StallingProxy

GENERATE = "/echo.v1.LanguageModel/Generate"


@dataclass
class GenerateCall:
    started_at: float  # time.perf_counter() when the call reached the relay
    user_text: str  # the last user message: what this run answers
    deltas: list[str] = field(default_factory=list)  # as the model produced them
    finished: bool = False  # the model's stream ended (its done event went back to the gateway)
    cancelled: bool = False  # the gateway gave up on the call first

    @property
    def text(self) -> str:
        return "".join(self.deltas)


class RecordingLLMProxy(StallingProxy):
    """Forwards every call unchanged (StallingProxy with nothing stalled); records Generate calls."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.calls: list[GenerateCall] = []

    def _handler(self, method: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        if method != GENERATE:
            return super()._handler(method, client_streaming, server_streaming)
        assert self._channel is not None
        forward = self._channel.unary_stream(method)  # bytes in, bytes out

        async def replies(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            messages = llm_pb2.GenerateRequest.FromString(request).messages
            user = next((m.content for m in reversed(messages) if m.role == "user"), "")
            call = GenerateCall(time.perf_counter(), user)
            self.calls.append(call)
            try:
                async for reply in forward(request, timeout=context.time_remaining()):
                    event = llm_pb2.GenerateEvent.FromString(reply)
                    if event.delta:
                        call.deltas.append(event.delta)
                    yield reply
                call.finished = True
            except asyncio.CancelledError:
                call.cancelled = True
                raise
            except grpc.aio.AioRpcError as e:
                await context.abort(e.code(), e.details() or "")

        return grpc.unary_stream_rpc_method_handler(replies)


@asynccontextmanager
async def recording_llm(target: str) -> AsyncIterator[RecordingLLMProxy]:
    proxy = await RecordingLLMProxy(target).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def received_at(events: list[dict[str, Any]], kind: str) -> float:
    """When the client received the first event of ``kind`` (VoiceClient's perf_counter() stamp)."""
    return next(e["_received_at"] for e in events if e["type"] == kind)
