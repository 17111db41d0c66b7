"""STT service settings (ECHO_STT_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class STTSettings:
    backend: str = field(default="whisper", metadata={"env": "ECHO_STT_SERVICE", "help": "whisper"})
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50051, metadata={"help": "gRPC port"})
    model: str = field(default="whisper-tiny.en", metadata={"help": "model name or path"})
    language: str = field(default="en", metadata={"help": "default language"})
    beam_size: int = field(default=5, metadata={"help": "beam size for final transcripts"})
    threads: int = field(default=2, metadata={"help": "CPU threads for decoding"})
    partial_interval_s: float = field(default=0.5, metadata={"help": "new audio between partials"})
    log_level: str = "INFO"


def load() -> STTSettings:
    return load_settings(STTSettings, prefix="ECHO_STT_", section="stt")
