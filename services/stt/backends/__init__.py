"""STT backends by ECHO_STT_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.stt.backends.base import STTBackend
from services.stt.config import STTSettings


def _chain(backends: list[STTBackend]) -> STTBackend:
    from services.common.fallback import load_fallback_settings
    from services.stt.fallback import FallbackSTT

    return FallbackSTT(backends, load_fallback_settings("stt"))


REGISTRY: Registry[STTBackend] = Registry(
    "ECHO_STT_SERVICE",
    STTBackend,
    {
        "whisper": "services.stt.backends.whisper:WhisperBackend",
        "transcribe": "services.stt.backends.transcribe:TranscribeBackend",
        # Scripted and deterministic, for tests.
        "fake": "services.stt.backends.fake:FakeSTTBackend",
    },
    chain=_chain,
)


def create(settings: STTSettings) -> STTBackend:
    return REGISTRY.create_configured(settings.backend, settings)
