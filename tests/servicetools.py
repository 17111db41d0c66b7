"""Start Echo's services as real processes for tests, and stop them afterwards."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.service_auth import TOKEN_ENV, TOKEN_FILE_ENV, service_channel

ROOT = Path(__file__).resolve().parent.parent

# One service credential per test session: every process started here gets it, and test-side
# channels (``grpc_channel``) send it. A test that needs a process without one passes {TOKEN_ENV: ""}.
SERVICE_TOKEN = secrets.token_urlsafe(32)


def grpc_channel(address: str, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A channel to a service started here, sending the session's service credential."""
    return service_channel(address, options=options, token=SERVICE_TOKEN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(address: str) -> bool:
    """Synchronous health check, usable from sync and async tests alike (health needs no credential)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def _refusal(channel: grpc.aio.Channel, method: str) -> grpc.aio.AioRpcError:
    """Call ``method`` (e.g. "/echo.v1.Storage/SaveTurn") with an empty request, or a request stream
    that sends nothing: the credential is checked on the call's headers, before any message is read.
    (A client stream that is still writing when the server ends the call may see grpc's own INTERNAL
    "Internal error from Core" instead of the server's status, so it never writes here.)"""
    client_streaming, server_streaming = SHAPES[method]
    kind = f"{'stream' if client_streaming else 'unary'}_{'stream' if server_streaming else 'unary'}"

    async def nothing() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()  # ended with the channel
        yield b""

    call = getattr(channel, kind)(method)(nothing() if client_streaming else b"", timeout=30)
    code = await call.code()
    assert code == grpc.StatusCode.UNAUTHENTICATED, f"{method}: {code} {await call.details()}"
    return call


async def assert_credential_required(
    address: str, methods: list[str], call: Callable[[grpc.aio.Channel], Awaitable[object]]
) -> None:
    """Each of ``methods`` is refused UNAUTHENTICATED without the service credential and with a wrong
    one; ``call`` (a real request on the channel it is given) works with the right one; health
    answers without one."""
    async with grpc.aio.insecure_channel(address) as bare:
        for method in methods:
            refused = await _refusal(bare, method)
            assert "missing service credential" in await refused.details(), method
        reply = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with service_channel(address, token=SERVICE_TOKEN[::-1]) as wrong:
        for method in methods:
            refused = await _refusal(wrong, method)
            assert await refused.details() == "wrong service credential", method
    async with grpc_channel(address) as right:
        await call(right)


class ServiceProcess:
    """``python -m MODULE`` in its own process group, with its output kept in a log file."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, name: str | None = None) -> None:
        self.module = module
        self.name = name or module.rsplit(".", 1)[-1]
        inherited = {k: v for k, v in os.environ.items() if k != TOKEN_FILE_ENV}
        self.env = {**inherited, "PYTHONUNBUFFERED": "1", TOKEN_ENV: SERVICE_TOKEN, **env}
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_healthy(self, address: str, timeout: float = 180.0) -> None:
        """Block until the gRPC health service says SERVING (models loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if serving(address):
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def start_grpc_service(
    service: str, env: dict[str, str], log_dir: Path, timeout: float = 180.0
) -> tuple[ServiceProcess, str]:
    """Start ``services.<service>`` on a free port; returns the process and its address."""
    port = free_port()
    prefix = f"ECHO_{service.upper()}_"
    proc = ServiceProcess(
        f"services.{service}", {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), **env}, log_dir
    ).start()
    address = f"127.0.0.1:{port}"
    try:
        proc.wait_healthy(address, timeout)
    except Exception:
        proc.stop()
        raise
    return proc, address


def wait_http(url: str, proc: ServiceProcess, timeout: float = 60.0, status: int = 200) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer {status} within {timeout} s:\n{proc.log_tail()}")


def start_gateway(env: dict[str, str], log_dir: Path, name: str = "gateway") -> tuple[ServiceProcess, str]:
    """Start the gateway on a free port; returns the process and its http://host:port base URL."""
    port = free_port()
    proc = ServiceProcess(
        "gateway", {"ECHO_GATEWAY_HOST": "127.0.0.1", "ECHO_GATEWAY_PORT": str(port), **env}, log_dir, name
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
    except Exception:
        proc.stop()
        raise
    return proc, base


def _method_shapes() -> dict[str, tuple[bool, bool]]:
    """'/package.Service/Method' -> (client streaming, server streaming) for every RPC Echo's
    services serve, health and reflection included."""
    from grpc_health.v1 import health_pb2 as health_descriptors
    from grpc_reflection.v1alpha import reflection_pb2

    from echo.v1 import llm_pb2, storage_pb2, stt_pb2, tts_pb2

    shapes: dict[str, tuple[bool, bool]] = {}
    for module in (stt_pb2, llm_pb2, tts_pb2, storage_pb2, health_descriptors, reflection_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                shapes[f"/{service.full_name}/{method.name}"] = (
                    method.client_streaming,
                    method.server_streaming,
                )
    return shapes


class StallingProxy:
    """A real gRPC server in front of a real service: it forwards every call unchanged (bytes in,
    bytes out), except calls to the methods named in ``stalled`` (e.g. {"SaveTurn"}), which it accepts
    and never answers, like a service stuck mid-call. Only the caller's deadline ends those. The set
    can change while it runs, so a test can make a service hang and then recover."""

    def __init__(self, target: str, stalled: set[str] | None = None) -> None:
        self.target = target
        self.stalled = set(stalled or ())
        self.stalled_calls: dict[str, int] = {}  # method -> calls that were held
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self, port: int = 0) -> StallingProxy:
        proxy = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                shape = SHAPES.get(details.method)
                return None if shape is None else proxy._handler(details.method, *shape)

        self._channel = grpc_channel(
            self.target
        )  # the proxy checks nothing; what it forwards carries the credential
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((Handler(),))
        bound = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if bound == 0:
            raise OSError(f"cannot bind 127.0.0.1:{port}")
        self.address = f"127.0.0.1:{bound}"
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    async def _hold(self, method: str, context: grpc.aio.ServicerContext) -> None:
        name = method.rsplit("/", 1)[-1]
        if name in self.stalled:
            self.stalled_calls[name] = self.stalled_calls.get(name, 0) + 1
            await asyncio.Event().wait()  # until the caller gives up and the call is cancelled

    def _handler(self, method: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        assert self._channel is not None
        # e.g. "unary_stream": names both the channel's call factory and grpc's handler constructor.
        kind = f"{'stream' if client_streaming else 'unary'}_{'stream' if server_streaming else 'unary'}"
        forward = getattr(self._channel, kind)(method)  # bytes in, bytes out: no (de)serializers

        async def one_reply(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            await self._hold(method, context)
            try:
                return await forward(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as e:
                await context.abort(e.code(), e.details() or "")

        async def replies(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            await self._hold(method, context)
            try:
                async for reply in forward(request, timeout=context.time_remaining()):
                    yield reply
            except grpc.aio.AioRpcError as e:
                await context.abort(e.code(), e.details() or "")

        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(replies if server_streaming else one_reply)


SHAPES = _method_shapes()
