"""`python -m services.common.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC health service
says SERVING. Used by container HEALTHCHECKs and the launcher. It sends no service credential: the
health service is the one the services answer without it (services.common.service_auth)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check(address: str, service: str = "", timeout: float = 2.0) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address", help="host:port of an Echo service")
    parser.add_argument("service", nargs="?", default="", help="service name (default: whole server)")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    ok = asyncio.run(check(args.address, args.service, args.timeout))
    print("SERVING" if ok else "NOT SERVING")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
