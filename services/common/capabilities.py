"""What a backend can do, declared on its class and reported over GetCapabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from echo.v1 import audio_pb2


@dataclass(frozen=True)
class BackendCapabilities:
    # Output streams while input still arrives or is still being produced (partials, tokens, audio).
    streaming: bool
    # STT: a PARTIAL marked stable is the full-quality decode the FINAL repeats when only silence follows.
    stable_partials: bool = False
    # STT: FINAL events carry per-word timings. TTS: speech marks (word timings) can be asked for.
    word_timings: bool = False


class DeclaresCapabilities(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...


def capabilities_message(backend: DeclaresCapabilities) -> audio_pb2.Capabilities:
    """The GetCapabilities reply for the backend a servicer holds: one backend, or a fallback list
    (services.common.fallback), whose ``name`` and ``capabilities`` are those of the one serving now
    and whose ``names`` are the configured order."""
    caps = backend.capabilities
    names: Sequence[str] = getattr(backend, "names", None) or [backend.name]
    return audio_pb2.Capabilities(
        backend=backend.name,
        streaming=caps.streaming,
        stable_partials=caps.stable_partials,
        word_timings=caps.word_timings,
        backends=list(names),
    )
