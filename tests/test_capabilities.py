"""GetCapabilities on every service, over real gRPC, and declarations that match what backends do."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest

from echo.v1 import (
    audio_pb2,
    llm_pb2_grpc,
    storage_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2_grpc,
)
from services.common.audio import float_to_pcm16
from services.common.capabilities import BackendCapabilities
from services.llm import backends as llm_backends
from services.llm.backends.fake import FakeLLMBackend, FakeLLMSettings
from services.llm.config import LLMSettings
from services.llm.server import LanguageModelServicer
from services.storage import backends as storage_backends
from services.storage.backends.fake import FakeStorageBackend, FakeStorageSettings
from services.storage.config import StorageSettings
from services.storage.server import StorageServicer
from services.stt import backends as stt_backends
from services.stt.backends.fake import FakeSTTBackend, FakeSTTSettings
from services.stt.config import STTSettings
from services.stt.server import SpeechToTextServicer
from services.tts import backends as tts_backends
from services.tts.backends.fake import FakeTTSBackend, FakeTTSSettings
from services.tts.config import TTSSettings
from services.tts.server import TextToSpeechServicer


@asynccontextmanager
async def served(
    add: Callable[[Any, grpc.aio.Server], None], servicer: Any
) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


SERVICES = {
    "stt": (
        stt_pb2_grpc.add_SpeechToTextServicer_to_server,
        stt_pb2_grpc.SpeechToTextStub,
        lambda: SpeechToTextServicer(FakeSTTBackend(STTSettings(), FakeSTTSettings())),
    ),
    "llm": (
        llm_pb2_grpc.add_LanguageModelServicer_to_server,
        llm_pb2_grpc.LanguageModelStub,
        lambda: LanguageModelServicer(FakeLLMBackend(LLMSettings(), FakeLLMSettings()), LLMSettings()),
    ),
    "tts": (
        tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        tts_pb2_grpc.TextToSpeechStub,
        lambda: TextToSpeechServicer(FakeTTSBackend(TTSSettings(), FakeTTSSettings()), 1000),
    ),
    "storage": (
        storage_pb2_grpc.add_StorageServicer_to_server,
        storage_pb2_grpc.StorageStub,
        lambda: StorageServicer(FakeStorageBackend(StorageSettings(), FakeStorageSettings()), 1 << 20),
    ),
}
EXPECTED = {
    "stt": audio_pb2.Capabilities(
        backend="fake", streaming=True, stable_partials=True, word_timings=True, backends=["fake"]
    ),
    "llm": audio_pb2.Capabilities(backend="fake", streaming=True, backends=["fake"]),
    "tts": audio_pb2.Capabilities(backend="fake", streaming=True, backends=["fake"]),
    "storage": audio_pb2.Capabilities(backend="fake", streaming=True, backends=["fake"]),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_get_capabilities_over_grpc(service: str) -> None:
    add, stub_class, make_servicer = SERVICES[service]
    async with served(add, make_servicer()) as channel:
        reply = await stub_class(channel).GetCapabilities(audio_pb2.CapabilitiesRequest(), timeout=10)
    assert reply == EXPECTED[service]


@pytest.mark.parametrize(
    "registry",
    [b.REGISTRY.providers for b in (stt_backends, llm_backends, tts_backends, storage_backends)],
)
def test_every_registered_backend_declares_its_capabilities(registry: dict[str, str]) -> None:
    for name, target in registry.items():
        module, _, cls = target.partition(":")
        declared = getattr(importlib.import_module(module), cls).capabilities
        assert isinstance(declared, BackendCapabilities), name


def test_declarations_of_the_real_stt_backends() -> None:
    from services.stt.backends.transcribe import TranscribeBackend
    from services.stt.backends.whisper import WhisperBackend

    # Whisper: stable partials from its quiet-tail decode; segments but no word timings.
    assert WhisperBackend.capabilities == BackendCapabilities(True, stable_partials=True, word_timings=False)
    # Transcribe: words with times on every event, but partials that can still change.
    assert TranscribeBackend.capabilities == BackendCapabilities(
        True, stable_partials=False, word_timings=True
    )


async def test_fake_stt_does_what_it_declares() -> None:
    # A stable partial once speech goes quiet, and a FINAL with timed words.
    backend = FakeSTTBackend(STTSettings(), FakeSTTSettings(transcripts="turn the lights on"))
    rate = 16000
    speech = float_to_pcm16(0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate))
    silence = bytes(2 * rate // 2)

    async def audio() -> AsyncIterator[bytes]:
        for pcm in (speech, silence):
            for i in range(0, len(pcm), 3200):
                yield pcm[i : i + 3200]

    config = stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=rate, channels=1),
        interim_results=True,
    )
    events = [e async for e in backend.stream(config, audio())]
    assert any(e.stable for e in events if e.kind == stt_pb2.TranscriptEvent.PARTIAL)
    final = events[-1]
    assert final.kind == stt_pb2.TranscriptEvent.FINAL
    assert [w.text for w in final.words] == ["turn", "the", "lights", "on"]
    assert all(w.end_s > w.start_s for w in final.words)


def test_a_backend_without_declared_capabilities_is_refused_at_start() -> None:
    from services.common.registry import attribute_problems
    from services.stt.backends.base import STTBackend

    class Undeclared:
        name = "undeclared"

    assert attribute_problems(Undeclared(), STTBackend) == ["attribute 'capabilities' is missing"]
