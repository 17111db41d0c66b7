"""The skeleton every Echo service runs: grpc.aio server, health, reflection, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol, runtime_checkable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.config import ConfigError
from services.common.interceptors import CancellationLogger
from services.common.service_auth import ServiceCredentialCheck, configured_token

log = logging.getLogger("echo.service")

# Big enough for a few seconds of 16 kHz audio in one message, small enough to reject abuse.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
GRACE_SECONDS = 5.0


@runtime_checkable
class AvailabilitySource(Protocol):
    """A backend that can be out of service while the process is fine (services.common.fallback)."""

    def availability_changes(self) -> AsyncIterator[bool]:
        """True or False now, then each change."""
        ...


async def follow_availability(
    source: AvailabilitySource, health_servicer: health.aio.HealthServicer, services: Iterable[str]
) -> None:
    """Health says SERVING while ``source`` is available and NOT_SERVING while it is not."""
    services = list(services)
    async for available in source.availability_changes():
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if available
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in services:
            await health_servicer.set(service, status)
        log.log(logging.INFO if available else logging.WARNING, "health: %s", status_name(status))


def status_name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve(
    name: str,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    host: str,
    port: int,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    availability: AvailabilitySource | None = None,
    token: str | None = None,
) -> None:
    """Run a service until SIGTERM/SIGINT, then drain in-flight calls for GRACE_SECONDS.

    ``on_start`` runs before the health status turns SERVING (load models there), so a client that
    waits for health never talks to a half-ready service. With ``availability`` (a fallback chain),
    health then follows it: NOT_SERVING while every backend is down. Every call but health's must
    carry the service credential ``token`` (default: ECHO_SERVICE_TOKEN; none is a ConfigError).
    """
    token = configured_token() if token is None else token
    if not token:
        raise ConfigError("the service credential is empty: set ECHO_SERVICE_TOKEN")
    server = grpc.aio.server(
        # The credential check first: a refused call never reaches the service or its logging.
        interceptors=[ServiceCredentialCheck(token), CancellationLogger()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"{name}: cannot bind {address}")
    for service in ["", *names]:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("%s listening on %s (loading)", name, address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    follower: asyncio.Task[None] | None = None
    try:
        if on_start is not None:
            await on_start()
        if availability is None:
            for service in ["", *names]:
                await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        else:
            follower = asyncio.create_task(follow_availability(availability, health_servicer, ["", *names]))
        log.info("%s ready on %s", name, address)
        await stop.wait()
    finally:
        log.info("%s shutting down", name)
        if follower is not None:
            follower.cancel()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(GRACE_SECONDS)
        if on_stop is not None:
            await on_stop()
        log.info("%s stopped", name)


def run_service(
    name: str,
    service_full_name: str,
    add_to_server: Callable[[object, grpc.aio.Server], None],
    servicer: object,
    settings: object,
    backend: object,
) -> None:
    """Entry point body shared by every service's ``__main__``."""
    configure_logging(getattr(settings, "log_level", "INFO"))
    token = configured_token()  # before any model loads: a service without one refuses to start
    asyncio.run(
        serve(
            name,
            [service_full_name],
            lambda server: add_to_server(servicer, server),
            settings.host,  # type: ignore[attr-defined]
            settings.port,  # type: ignore[attr-defined]
            on_start=backend.start,  # type: ignore[attr-defined]
            on_stop=backend.close,  # type: ignore[attr-defined]
            availability=backend if isinstance(backend, AvailabilitySource) else None,
            token=token,
        )
    )
