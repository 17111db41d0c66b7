"""`python -m services.stt`: run the STT service."""

from __future__ import annotations

from echo.v1 import stt_pb2, stt_pb2_grpc
from services.common.grpc_server import run_service
from services.stt import backends, config
from services.stt.server import SpeechToTextServicer


def main() -> None:
    settings = config.load()
    backend = backends.create(settings)
    run_service(
        "stt",
        stt_pb2.DESCRIPTOR.services_by_name["SpeechToText"].full_name,
        stt_pb2_grpc.add_SpeechToTextServicer_to_server,
        SpeechToTextServicer(backend),
        settings,
        backend,
    )


if __name__ == "__main__":
    main()
