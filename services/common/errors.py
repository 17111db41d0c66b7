"""Errors a backend raises on purpose, each mapped to one gRPC status code by the servers."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

log = logging.getLogger("echo.service")


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class AlreadyExists(ServiceError):
    """A different record already holds this key."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(ServiceError):
    """Throttled or over a quota."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, ServiceError):
        await context.abort(error.code, str(error))
    log.exception("unexpected error in RPC")
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


def unary_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ServiceErrors raised by a unary handler into gRPC statuses."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except (grpc.aio.AbortError, AssertionError):
            raise
        except Exception as e:
            await _abort(context, e)

    return wrapper


def stream_errors(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """The same for server-streaming handlers (async generators)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in fn(self, request, context):
                yield item
        except (grpc.aio.AbortError, AssertionError):
            raise
        except Exception as e:
            await _abort(context, e)

    return wrapper
