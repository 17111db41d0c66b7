"""`python -m services.storage`: run the storage service."""

from __future__ import annotations

from echo.v1 import storage_pb2, storage_pb2_grpc
from services.common.grpc_server import run_service
from services.storage import backends, config
from services.storage.server import StorageServicer


def main() -> None:
    settings = config.load()
    backend = backends.create(settings)
    run_service(
        "storage",
        storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name,
        storage_pb2_grpc.add_StorageServicer_to_server,
        StorageServicer(backend, settings.max_audio_bytes, settings.presign_seconds),
        settings,
        backend,
    )


if __name__ == "__main__":
    main()
