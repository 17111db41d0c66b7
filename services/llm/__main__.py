"""`python -m services.llm`: run the LLM service."""

from __future__ import annotations

from echo.v1 import llm_pb2, llm_pb2_grpc
from services.common.grpc_server import run_service
from services.llm import backends, config
from services.llm.server import LanguageModelServicer


def main() -> None:
    settings = config.load()
    backend = backends.create(settings)
    run_service(
        "llm",
        llm_pb2.DESCRIPTOR.services_by_name["LanguageModel"].full_name,
        llm_pb2_grpc.add_LanguageModelServicer_to_server,
        LanguageModelServicer(backend, settings),
        settings,
        backend,
    )


if __name__ == "__main__":
    main()
