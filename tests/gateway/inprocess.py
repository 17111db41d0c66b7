"""gRPC stubs that call a servicer in this process: the engine's calls reach the real servicers and
their fake backends without sockets or threads, so a whole session runs on the virtual clock.

Each call behaves as grpc.aio's does where the engine can tell: messages are copied through their
wire form, a servicer's abort is an AioRpcError with its status, a deadline is DEADLINE_EXCEEDED
(and cancels the handler, as a real deadline does), and a cancelled caller cancels the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message


class _Context:
    """The part of grpc.aio.ServicerContext the servicers use."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.UNKNOWN
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError(details)

    def cancelled(self) -> bool:
        return False

    def invocation_metadata(self) -> tuple[()]:
        return ()


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def _wire(message: Message) -> Message:
    return type(message).FromString(message.SerializeToString())


async def _wire_stream(requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
    async for request in requests:
        yield _wire(request)


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self.at = None if timeout is None else loop.time() + timeout

    async def run(self, awaitable: Any) -> Any:
        if self.at is None:
            return await awaitable
        try:
            # Not wait_for: on Python 3.11 it can swallow a cancellation that races a result.
            async with asyncio.timeout_at(self.at):
                return await awaitable
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None


class StreamCall:
    """A server-streaming call: iterate it; cancel() as grpc.aio's call object."""

    def __init__(self, handler: Callable[..., AsyncIterator[Message]], request: Any, timeout: float | None):
        self.context = _Context()
        self.responses = handler(request, self.context)
        self.deadline = _Deadline(timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                response = await self.deadline.run(anext(self.responses))
            except StopAsyncIteration:
                return
            except grpc.aio.AbortError:
                raise rpc_error(self.context.code, self.context.details) from None
            yield _wire(response)

    def cancel(self) -> bool:
        # A handler suspended between messages is closed as grpc closes a cancelled one.
        task = asyncio.ensure_future(self.responses.aclose())
        task.add_done_callback(lambda t: t.exception())
        return True


class InProcessStub:
    """Every method of ``service`` as grpc.aio's stub offers it, served by ``servicer``."""

    def __init__(self, servicer: Any, service: ServiceDescriptor) -> None:
        self.servicer = servicer
        for method in service.methods:
            setattr(
                self, method.name, self._method(method.name, method.client_streaming, method.server_streaming)
            )

    def _method(self, name: str, client_streaming: bool, server_streaming: bool) -> Callable[..., Any]:
        handler = getattr(self.servicer, name)

        def call(request: Any, timeout: float | None = None) -> Any:
            request = _wire_stream(request) if client_streaming else _wire(request)
            if server_streaming:
                return StreamCall(handler, request, timeout)
            return self._unary(handler, request, timeout)

        return call

    @staticmethod
    async def _unary(handler: Callable[..., Any], request: Any, timeout: float | None) -> Message:
        context = _Context()
        try:
            response = await _Deadline(timeout).run(handler(request, context))
        except grpc.aio.AbortError:
            raise rpc_error(context.code, context.details) from None
        return _wire(response)
