"""A server interceptor that records RPCs ended by their client (barge-in cancels LLM/TTS calls).

Every cancelled call is logged as ``rpc METHOD cancelled by the client after S s, N messages``, so
operators (and the tests) can see that an interruption really stopped the work downstream. Streams
that run to their end are logged at DEBUG as ``rpc METHOD completed after S s, N messages``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger("echo.rpc")

cancelled_calls: Counter[str] = Counter()


def _cancelled(method: str, started: float, messages: int) -> None:
    cancelled_calls[method] += 1
    log.info(
        "rpc %s cancelled by the client after %.2f s, %d messages",
        method,
        time.monotonic() - started,
        messages,
    )


class CancellationLogger(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        def streaming(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started, sent = time.monotonic(), 0
                try:
                    async for response in behavior(request, context):
                        sent += 1
                        yield response
                except asyncio.CancelledError:
                    _cancelled(method, started, sent)
                    raise
                log.debug(
                    "rpc %s completed after %.2f s, %d messages", method, time.monotonic() - started, sent
                )

            return wrapped

        def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.monotonic()
                try:
                    return await behavior(request, context)
                except asyncio.CancelledError:
                    _cancelled(method, started, 0)
                    raise

            return wrapped

        if handler.unary_stream is not None and not inspect.isasyncgenfunction(handler.unary_stream):
            # A stream written with context.write by a coroutine (grpc's own health Watch), not yielded.
            return grpc.unary_stream_rpc_method_handler(unary(handler.unary_stream), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codec)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codec)
