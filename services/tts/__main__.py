"""`python -m services.tts`: run the TTS service."""

from __future__ import annotations

from echo.v1 import tts_pb2, tts_pb2_grpc
from services.common.grpc_server import run_service
from services.tts import backends, config
from services.tts.server import TextToSpeechServicer


def main() -> None:
    settings = config.load()
    backend = backends.create(settings)
    run_service(
        "tts",
        tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
        tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        TextToSpeechServicer(backend, settings.max_chars),
        settings,
        backend,
    )


if __name__ == "__main__":
    main()
