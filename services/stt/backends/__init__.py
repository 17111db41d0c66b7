"""STT backends by ECHO_STT_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.stt.backends.base import STTBackend
from services.stt.config import STTSettings

REGISTRY: Registry[STTBackend] = Registry(
    "ECHO_STT_SERVICE",
    STTBackend,
    {
        "whisper": "services.stt.backends.whisper:WhisperBackend",
        "transcribe": "services.stt.backends.transcribe:TranscribeBackend",
        # Scripted and deterministic, for tests.
        "fake": "services.stt.backends.fake:FakeSTTBackend",
    },
)


def create(settings: STTSettings) -> STTBackend:
    return REGISTRY.create_configured(settings.backend, settings)
