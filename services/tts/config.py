"""TTS service settings (ECHO_TTS_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class TTSSettings:
    backend: str = field(default="piper", metadata={"env": "ECHO_TTS_SERVICE", "help": "piper"})
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50053, metadata={"help": "gRPC port"})
    voice: str = field(default="piper-joe", metadata={"help": "default voice: model name or .onnx path"})
    max_chars: int = field(default=4000, metadata={"help": "longest text one request may carry"})
    # ECHO_TTS_SERVICE=polly (roadmap names). Endpoints come from the SDK's own variables.
    region: str = field(default="", metadata={"env": "AWS_REGION", "help": "AWS region"})
    polly_voice_id: str = field(
        default="", metadata={"env": "POLLY_VOICE_ID", "help": "voice (default: by language)"}
    )
    polly_engine: str = field(
        default="neural",
        metadata={"env": "POLLY_ENGINE", "help": "standard, neural, generative or long-form"},
    )
    polly_cache_entries: int = field(default=256, metadata={"help": "repeated phrases kept in memory"})
    polly_cache_bytes: int = field(default=32 * 1024 * 1024, metadata={"help": "cache size limit"})
    log_level: str = "INFO"


def load() -> TTSSettings:
    return load_settings(TTSSettings, prefix="ECHO_TTS_", section="tts")
