"""The service credential: a shared secret every gRPC call between Echo's processes carries.

Being on the same host or network is not enough to call a service: each call sends
``authorization: Bearer <ECHO_SERVICE_TOKEN>`` and the services refuse any other call with
UNAUTHENTICATED (``ServiceCredentialCheck``). Locally `echo-voice run` generates the token once and
keeps it in ``$XDG_CONFIG_HOME/echo/service-token`` (mode 0600), so other CLI commands find it; on
ECS it comes from Secrets Manager as an environment variable.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from services.common.config import ConfigError

TOKEN_ENV = "ECHO_SERVICE_TOKEN"
TOKEN_FILE_ENV = "ECHO_SERVICE_TOKEN_FILE"
HEADER = "authorization"
# Only the health service answers without the credential: container HEALTHCHECKs, ECS and the
# launcher probe it, and it reveals nothing but SERVING/NOT_SERVING.
EXEMPT_PREFIX = f"/{health.SERVICE_NAME}/"


def token_path() -> Path:
    """Where `echo-voice run` keeps the generated token: the user's config directory."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "echo" / "service-token"


def _read_file(path: Path, origin: str) -> str:
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"{origin}: cannot read the service token file {path}: {e.strerror}") from None
    if not token:
        raise ConfigError(f"{origin}: the service token file {path} is empty")
    return token


def service_token() -> str:
    """The configured token: ECHO_SERVICE_TOKEN, else the file ECHO_SERVICE_TOKEN_FILE names, else
    the one `echo-voice run` keeps in the user's config directory. ConfigError when there is none."""
    if token := os.environ.get(TOKEN_ENV, "").strip():
        return token
    if named := os.environ.get(TOKEN_FILE_ENV, "").strip():
        return _read_file(Path(named), TOKEN_FILE_ENV)
    path = token_path()
    if path.is_file():
        return _read_file(path, "echo-voice run's token")
    raise ConfigError(
        f"{TOKEN_ENV} is not set: every gRPC call between Echo's processes needs the shared service "
        f"credential. Set {TOKEN_ENV} (or {TOKEN_FILE_ENV}), or start the stack with `echo-voice run`, "
        f"which generates one in {path}"
    )


def configured_token() -> str:
    """The token a service requires: only ECHO_SERVICE_TOKEN or ECHO_SERVICE_TOKEN_FILE. A service
    never falls back to the user's file, so one started by hand without a token refuses to start."""
    if token := os.environ.get(TOKEN_ENV, "").strip():
        return token
    if named := os.environ.get(TOKEN_FILE_ENV, "").strip():
        return _read_file(Path(named), TOKEN_FILE_ENV)
    raise ConfigError(
        f"{TOKEN_ENV} is not set: a service refuses to start without the shared service credential "
        f"(there is no unauthenticated mode). Set {TOKEN_ENV}, or {TOKEN_FILE_ENV}={token_path()} "
        "to use the one `echo-voice run` keeps (it sets the token for every process it starts)"
    )


def ensure_local_token() -> str:
    """For `echo-voice run`: ECHO_SERVICE_TOKEN (or its file) when set, else the token kept in the
    user's config directory, created (random, mode 0600) on the first run and reused afterwards."""
    if os.environ.get(TOKEN_ENV, "").strip() or os.environ.get(TOKEN_FILE_ENV, "").strip():
        return configured_token()
    path = token_path()
    if path.is_file():
        return _read_file(path, "echo-voice run's token")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    # O_EXCL with mode 0600: the token is never readable by others, not even for an instant.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `echo-voice run` created it first: use that one
        return _read_file(path, "echo-voice run's token")
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


# ---------------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------------
class ServiceCredentialCheck(grpc.aio.ServerInterceptor):
    """Refuse every call without ``authorization: Bearer <token>`` (health excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)  # only looks the method up; nothing runs yet
        if handler is None or details.method.startswith(EXEMPT_PREFIX):
            return handler
        sent = [value for key, value in details.invocation_metadata or () if key == HEADER]
        if not sent:
            return _refusal(
                handler, "missing service credential (authorization: Bearer <ECHO_SERVICE_TOKEN>)"
            )
        value = sent[0].encode() if isinstance(sent[0], str) else sent[0]
        if len(sent) != 1 or not hmac.compare_digest(value, self._expected):
            return _refusal(handler, "wrong service credential")
        return handler


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts UNAUTHENTICATED before reading anything."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


# ---------------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------------
def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata[header[0]] = header[1]
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _Attach:
    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def _intercept(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


# One interceptor per call kind: grpc.aio files an interceptor under the first kind it implements only,
# so a single class implementing all four would leave the streaming calls bare.
class _UnaryUnary(_Attach, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _Attach._intercept


class _UnaryStream(_Attach, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _Attach._intercept


class _StreamUnary(_Attach, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _Attach._intercept


class _StreamStream(_Attach, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _Attach._intercept


def service_channel(
    address: str, options: Sequence[tuple[str, Any]] | None = None, token: str | None = None
) -> grpc.aio.Channel:
    """A channel to an Echo service whose every call carries the service credential (``token``, by
    default ``service_token()``). Plain TCP: call credentials would need TLS, the token is the check."""
    header = (HEADER, f"Bearer {token or service_token()}")
    kinds = (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    return grpc.aio.insecure_channel(address, options=options, interceptors=[k(header) for k in kinds])


class _BlockingUnary(grpc.UnaryUnaryClientInterceptor):
    """The same header on a blocking channel's unary calls (the CLI's few storage calls)."""

    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return continuation(details._replace(metadata=metadata), request)


def blocking_service_channel(address: str, token: str | None = None) -> grpc.Channel:
    """``service_channel`` for blocking code: unary calls only."""
    header = (HEADER, f"Bearer {token or service_token()}")
    return grpc.intercept_channel(grpc.insecure_channel(address), _BlockingUnary(header))
