"""STT backends by ECHO_STT_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.config import ConfigError
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


def configured(settings: STTSettings) -> str:
    """ECHO_STT_SERVICE, with the older ECHO_STT_FALLBACK=whisper read as a last ",whisper"."""
    if settings.fallback not in ("", "whisper"):
        raise ConfigError(
            f"ECHO_STT_FALLBACK={settings.fallback!r}: only 'whisper' is a fallback; "
            "or list backends in fallback order, e.g. ECHO_STT_SERVICE=transcribe,whisper"
        )
    names = REGISTRY.parse(settings.backend)
    if settings.fallback and settings.fallback not in names:
        names.append(settings.fallback)
    return ",".join(names)


def create(settings: STTSettings) -> STTBackend:
    return REGISTRY.create_configured(configured(settings), settings)
