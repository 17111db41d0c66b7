"""Storage service settings (ECHO_STORAGE_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.common.config import load_settings


def _default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".local", "share", "echo")


@dataclass
class StorageSettings:
    backend: str = field(default="local", metadata={"env": "ECHO_STORAGE_SERVICE", "help": "local"})
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50054, metadata={"help": "gRPC port"})
    data_dir: str = field(
        default_factory=_default_data_dir, metadata={"env": "ECHO_DATA_DIR", "help": "SQLite + audio files"}
    )
    max_audio_bytes: int = field(default=50 * 1024 * 1024, metadata={"help": "largest audio object"})
    log_level: str = "INFO"


def load() -> StorageSettings:
    return load_settings(StorageSettings, prefix="ECHO_STORAGE_", section="storage")
