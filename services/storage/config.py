"""Storage service settings (ECHO_STORAGE_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.common.config import ConfigError, load_settings

S3_ENCRYPTIONS = ("AES256", "aws:kms")


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
    # ECHO_STORAGE_SERVICE=aws: DynamoDB + S3, named as in the roadmap. Endpoints come from the SDK's own
    # variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3).
    region: str = field(default="", metadata={"env": "AWS_REGION", "help": "AWS region"})
    table_conversations: str = field(
        default="echo-conversations", metadata={"env": "DYNAMODB_TABLE_CONVERSATIONS", "help": "turns table"}
    )
    table_sessions: str = field(
        default="echo-sessions", metadata={"env": "DYNAMODB_TABLE_SESSIONS", "help": "sessions table"}
    )
    session_index: str = field(
        default="session_id-timestamp-index", metadata={"help": "GSI for a session's turns"}
    )
    bucket: str = field(default="echo-audio", metadata={"env": "S3_BUCKET_AUDIO", "help": "audio bucket"})
    s3_encryption: str = field(default="AES256", metadata={"help": "AES256 (SSE-S3) or aws:kms (SSE-KMS)"})
    kms_key_id: str = field(default="", metadata={"help": "KMS key for aws:kms (empty: the AWS managed key)"})
    presign_seconds: int = field(default=900, metadata={"help": "lifetime of presigned audio URLs"})
    log_level: str = "INFO"


def check_s3_encryption(settings: StorageSettings) -> None:
    """Audio is always encrypted at rest: SSE-S3 or SSE-KMS, spelled as S3 spells them."""
    if settings.s3_encryption not in S3_ENCRYPTIONS:
        raise ConfigError(
            f"ECHO_STORAGE_S3_ENCRYPTION={settings.s3_encryption!r}: use AES256 (SSE-S3) or aws:kms (SSE-KMS)"
        )
    if settings.kms_key_id and settings.s3_encryption != "aws:kms":
        raise ConfigError(
            "ECHO_STORAGE_KMS_KEY_ID is set but ECHO_STORAGE_S3_ENCRYPTION is "
            f"{settings.s3_encryption!r}; set it to aws:kms to encrypt with that key"
        )


def load() -> StorageSettings:
    return load_settings(StorageSettings, prefix="ECHO_STORAGE_", section="storage")
