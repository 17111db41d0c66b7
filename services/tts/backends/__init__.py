"""TTS backends by ECHO_TTS_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.tts.backends.base import TTSBackend
from services.tts.config import TTSSettings


def _chain(backends: list[TTSBackend]) -> TTSBackend:
    from services.common.fallback import load_fallback_settings
    from services.tts.fallback import FallbackTTS

    return FallbackTTS(backends, load_fallback_settings("tts"))


REGISTRY: Registry[TTSBackend] = Registry(
    "ECHO_TTS_SERVICE",
    TTSBackend,
    {
        "piper": "services.tts.backends.piper:PiperBackend",
        "polly": "services.tts.backends.polly:PollyBackend",
        # A tone as long as the text, for deterministic tests.
        "fake": "services.tts.backends.fake:FakeTTSBackend",
    },
    chain=_chain,
)


def create(settings: TTSSettings) -> TTSBackend:
    return REGISTRY.create_configured(settings.backend, settings)
