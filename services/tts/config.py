"""TTS service settings (ECHO_TTS_*): what every backend shares. Each backend's own settings live in its
module (services/tts/backends/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class TTSSettings:
    backend: str = field(
        default="piper",
        metadata={
            "env": "ECHO_TTS_SERVICE",
            "help": "piper, polly or fake; several comma-separated in fallback order",
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50053, metadata={"help": "gRPC port"})
    max_chars: int = field(default=4000, metadata={"help": "longest text one request may carry"})
    log_level: str = "INFO"


def load() -> TTSSettings:
    return load_settings(TTSSettings, prefix="ECHO_TTS_", section="tts")
