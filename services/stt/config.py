"""STT service settings (ECHO_STT_*): what every backend shares. Each backend's own settings live in its
module (services/stt/backends/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class STTSettings:
    backend: str = field(
        default="whisper",
        metadata={
            "env": "ECHO_STT_SERVICE",
            "help": "whisper, transcribe or fake; several comma-separated in fallback order",
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50051, metadata={"help": "gRPC port"})
    language: str = field(default="en", metadata={"help": "default language"})
    log_level: str = "INFO"
    fallback: str = field(
        default="",
        metadata={"help": "older spelling of a fallback: 'whisper' adds whisper to ECHO_STT_SERVICE's list"},
    )


def load() -> STTSettings:
    return load_settings(STTSettings, prefix="ECHO_STT_", section="stt")
