"""Storage backends by ECHO_STORAGE_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.storage.backends.base import StorageBackend
from services.storage.config import StorageSettings

REGISTRY: Registry[StorageBackend] = Registry(
    "ECHO_STORAGE_SERVICE",
    StorageBackend,
    {
        "local": "services.storage.backends.local:LocalBackend",
        "aws": "services.storage.backends.aws:AwsBackend",
        # In memory, with fault injection, for deterministic tests.
        "fake": "services.storage.backends.fake:FakeStorageBackend",
    },
)


def create(settings: StorageSettings) -> StorageBackend:
    return REGISTRY.create_configured(settings.backend, settings)
