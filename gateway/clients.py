"""gRPC channels to the four services, and the mapping of their failures to protocol error codes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import llm_pb2_grpc, storage_pb2_grpc, stt_pb2_grpc, tts_pb2_grpc
from gateway.config import GatewaySettings
from gateway.events import ErrorCode, ProtocolError
from services.common.service_auth import service_channel, service_token

_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
    # Reconnect quickly after a service restarts instead of backing off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass
class Services:
    stt: stt_pb2_grpc.SpeechToTextStub
    llm: llm_pb2_grpc.LanguageModelStub
    tts: tts_pb2_grpc.TextToSpeechStub
    storage: storage_pb2_grpc.StorageStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Services:
        addresses = {
            "stt": settings.stt_addr,
            "llm": settings.llm_addr,
            "tts": settings.tts_addr,
            "storage": settings.storage_addr,
        }
        token = service_token()  # ConfigError at startup, not UNAUTHENTICATED on the first turn
        channels = {
            name: service_channel(addr, options=_OPTIONS, token=token) for name, addr in addresses.items()
        }
        return cls(
            stt=stt_pb2_grpc.SpeechToTextStub(channels["stt"]),
            llm=llm_pb2_grpc.LanguageModelStub(channels["llm"]),
            tts=tts_pb2_grpc.TextToSpeechStub(channels["tts"]),
            storage=storage_pb2_grpc.StorageStub(channels["storage"]),
            channels=channels,
        )

    async def health(self, timeout: float = 1.0) -> dict[str, str]:
        """Each service's health status name ("SERVING", "NOT_SERVING", "UNREACHABLE")."""

        async def one(channel: grpc.aio.Channel) -> str:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                )
            except grpc.aio.AioRpcError:
                return "UNREACHABLE"
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        names = list(self.channels)
        statuses = await asyncio.gather(*(one(self.channels[n]) for n in names))
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels.values()))


def rpc_error(service: str, error: grpc.aio.AioRpcError) -> ProtocolError:
    """A downstream failure as the error the client sees."""
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return ProtocolError(
            ErrorCode.unavailable(service), f"the {service} service is unavailable: {details}"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ProtocolError(ErrorCode.timeout(service), f"the {service} service did not answer in time")
    if service == "tts" and code == grpc.StatusCode.NOT_FOUND:
        return ProtocolError(ErrorCode.UNKNOWN_VOICE, details)
    return ProtocolError(ErrorCode.failed(service), f"the {service} service failed ({code.name}): {details}")
