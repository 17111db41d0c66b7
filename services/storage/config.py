"""Storage service settings (ECHO_STORAGE_*): what every backend shares. Each backend's own settings live
in its module (services/storage/backends/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class StorageSettings:
    backend: str = field(
        default="local",
        metadata={
            "env": "ECHO_STORAGE_SERVICE",
            "help": "local, aws or fake (one: storage has no fallback)",
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50054, metadata={"help": "gRPC port"})
    max_audio_bytes: int = field(default=50 * 1024 * 1024, metadata={"help": "largest audio object"})
    # Minutes, not hours: a leaked link stops working soon; the web client asks again for each play.
    presign_seconds: int = field(default=300, metadata={"help": "lifetime of presigned audio URLs"})
    retention_days: int = field(
        default=30,
        metadata={
            "help": "records (sessions, turns, conversations, usage) expire this many days after they "
            "are written, by DynamoDB TTL or the local sweep; 0 keeps them forever"
        },
    )
    sweep_interval_s: float = field(
        default=3600.0, metadata={"help": "local backend: how often expired records and audio are swept"}
    )
    log_level: str = "INFO"


def load() -> StorageSettings:
    return load_settings(StorageSettings, prefix="ECHO_STORAGE_", section="storage")
