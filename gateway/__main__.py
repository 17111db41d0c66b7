"""`python -m gateway`: run the gateway (HTTP + WebSocket)."""

from __future__ import annotations

import uvicorn

from gateway import config, redact
from gateway.app import create_app
from services.common.grpc_server import configure_logging


def main() -> None:
    settings = config.load()
    configure_logging(settings.log_level)
    server_config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ws_max_size=max(settings.max_frame_bytes, settings.max_message_bytes) * 4,
        # uvicorn annotates int but takes any number of seconds.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]
    )
    redact.install()  # after uvicorn's Config set up its loggers
    uvicorn.Server(server_config).run()


if __name__ == "__main__":
    main()
