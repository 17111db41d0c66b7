"""Storage backend registry: name -> "module:Class", imported only when chosen."""

from __future__ import annotations

from services.common.registry import load_backend

BACKENDS = {
    "local": "services.storage.backends.local:LocalBackend",
    "aws": "services.storage.backends.aws:AwsBackend",
    # Scripted and deterministic, for tests (services/storage/backends/fake.py).
    "fake": "services.storage.backends.fake:FakeStorageBackend",
}


def create(settings):  # type: ignore[no-untyped-def]
    return load_backend(BACKENDS, settings.backend, "ECHO_STORAGE_SERVICE", settings)
