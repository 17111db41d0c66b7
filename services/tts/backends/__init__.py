"""TTS backend registry: name -> "module:Class", imported only when chosen."""

from __future__ import annotations

from services.common.registry import load_backend

BACKENDS = {
    "piper": "services.tts.backends.piper:PiperBackend",
    "polly": "services.tts.backends.polly:PollyBackend",
    # Scripted and deterministic, for tests (services/tts/backends/fake.py).
    "fake": "services.tts.backends.fake:FakeTTSBackend",
}


def create(settings):  # type: ignore[no-untyped-def]
    return load_backend(BACKENDS, settings.backend, "ECHO_TTS_SERVICE", settings)
