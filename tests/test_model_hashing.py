"""Model files are sha256-hashed off the event loop: a service that re-verifies hundreds of MB at start
keeps its loop (health checks, other starts) running meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
from pathlib import Path

import pytest

from services.common import models
from tests.conftest import require_model

# Only reached when the hashing blocks the loop (the defect): the test then fails instead of hanging.
HANDSHAKE_TIMEOUT_S = 20.0


class LoopProbe:
    """Replaces models.sha256_file. Each hash first waits for a task on the event loop to run, after
    the hash has begun: that task can only run if the hashing is not holding the loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = models.sha256_file
        self.hashing_started = threading.Event()
        self.loop_ran = threading.Event()
        self.hashed: list[tuple[Path, bool]] = []  # (file, whether the loop ran while it was hashed)
        monkeypatch.setattr(models, "sha256_file", self._sha256_file)

    def _sha256_file(self, path: Path, *args: object) -> str:
        self.hashing_started.set()
        ran = self.loop_ran.wait(0 if self.hashed else HANDSHAKE_TIMEOUT_S)
        digest = self.real(path, *args)  # type: ignore[arg-type]
        self.hashed.append((path, ran))
        return digest

    async def run_on_the_loop(self) -> None:
        await asyncio.to_thread(self.hashing_started.wait, HANDSHAKE_TIMEOUT_S)
        self.loop_ran.set()  # back on the loop, while the hash is still in progress


async def test_resolve_async_hashes_a_large_model_off_the_loop(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_MODELS_DIR", str(tmp_path))
    data = hashlib.sha256(b"echo").digest() * (64 << 20 >> 5)  # 64 MiB
    spec = models.ModelSpec(
        name="big-test-model",
        role="llm",
        packages=(),
        members=(),
        kind="file",
        output="big.gguf",
        description="a large file for the hashing test",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    path = models.model_path(spec.name)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    probe = LoopProbe(monkeypatch)
    ticker = asyncio.create_task(probe.run_on_the_loop())
    assert await models.resolve_async(spec.name) == path
    await ticker
    assert probe.hashed == [(path, True)]
    # A damaged copy is still refused, from the worker thread, with the same error.
    path.write_bytes(data[:-1] + b"x")
    with pytest.raises(models.ModelError, match="corrupted"):
        await models.resolve_async(spec.name)


def piper() -> object:
    from services.tts import config
    from services.tts.backends.piper import PiperBackend

    return PiperBackend(config.load())


def whisper() -> object:
    from services.stt import config
    from services.stt.backends.whisper import WhisperBackend

    return WhisperBackend(config.load())


def llamacpp() -> object:
    from services.llm import config
    from services.llm.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(config.load())


@pytest.mark.parametrize(
    ("make", "variable", "model"),
    [
        (piper, "ECHO_TTS_VOICE", "piper-joe"),
        (whisper, "ECHO_STT_MODEL", "whisper-tiny.en"),
        (llamacpp, "ECHO_LLM_MODEL", "smollm2-135m"),
    ],
)
async def test_backends_verify_their_model_off_the_loop(make, variable, model, tmp_path, monkeypatch):
    require_model(model)
    # A private cache with no verification stamp: the start must re-hash every file of the model.
    real = models.model_path(model)
    monkeypatch.setenv("ECHO_MODELS_DIR", str(tmp_path))
    copy = models.model_path(model)
    copy.parent.mkdir(parents=True)
    (shutil.copytree if real.is_dir() else shutil.copy2)(real, copy)
    monkeypatch.setenv(variable, model)  # the backend's own settings read it, as at a service's start
    probe = LoopProbe(monkeypatch)
    ticker = asyncio.create_task(probe.run_on_the_loop())
    backend = make()
    try:
        await backend.start()  # type: ignore[attr-defined]
    finally:
        await backend.close()  # type: ignore[attr-defined]
    await ticker
    assert probe.hashed and all(ran for _, ran in probe.hashed), probe.hashed
