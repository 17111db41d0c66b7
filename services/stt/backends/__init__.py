"""STT backend registry: name -> "module:Class", imported only when chosen."""

from __future__ import annotations

from services.common.registry import load_backend

BACKENDS = {
    "whisper": "services.stt.backends.whisper:WhisperBackend",
    "transcribe": "services.stt.backends.transcribe:TranscribeBackend",
    # Scripted and deterministic, for tests (services/stt/backends/fake.py).
    "fake": "services.stt.backends.fake:FakeSTTBackend",
}


def create(settings):  # type: ignore[no-untyped-def]
    return load_backend(BACKENDS, settings.backend, "ECHO_STT_SERVICE", settings)
