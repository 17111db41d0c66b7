"""The model manager: every model is pinned by sha256, and a damaged cache is caught and repaired."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys

import pytest

from services.common import models
from tests.conftest import require_model
from tests.servicetools import ROOT

pytestmark = pytest.mark.models

# What `make test` pulls, so they are in the cache.
TEST_MODELS = ("whisper-tiny.en", "smollm2-135m", "qwen2.5-coder-0.5b", "piper-joe", "smart-turn-v3.2")


@pytest.fixture
def cache_copy(tmp_path, monkeypatch):
    """A private ECHO_MODELS_DIR holding a copy of the cached piper-joe voice, safe to damage."""
    require_model("piper-joe")
    real = models.model_path("piper-joe").parent
    monkeypatch.setenv("ECHO_MODELS_DIR", str(tmp_path / "models"))
    shutil.copytree(real, tmp_path / "models" / "piper-joe")
    return models.model_path("piper-joe")


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_has_pins(name):
    spec = models.MODELS[name]
    pinned = spec.pinned()
    assert pinned and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pinned.values()), pinned
    if spec.kind == "dir":
        assert "" not in pinned  # each file of a folder has its own hash


@pytest.mark.parametrize("name", TEST_MODELS)
def test_the_pulled_models_match_their_pins(name):
    require_model(name)
    assert models.verify(name) == []
    assert models.resolve(name) == models.model_path(name)


def test_a_damaged_cache_is_reported_then_fetched_again(cache_copy):
    voice = cache_copy / "en_US-joe-medium.onnx"
    assert models.resolve("piper-joe") == cache_copy
    # A stray file in the folder would be loaded as a voice: it is not part of the model.
    (cache_copy / "other.onnx").write_bytes(b"not a voice")
    with pytest.raises(models.ModelError, match=r"other\.onnx is not part of the model"):
        models.resolve("piper-joe")
    (cache_copy / "other.onnx").unlink()
    assert models.resolve("piper-joe") == cache_copy

    # One flipped byte, size unchanged: what a service start would load is refused, clearly.
    with voice.open("r+b") as f:
        f.seek(voice.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(models.ModelError) as error:
        models.resolve("piper-joe")
    message = str(error.value)
    assert "corrupted" in message and "en_US-joe-medium.onnx has sha256" in message
    assert "echo-voice models pull piper-joe" in message

    # `models pull` re-hashes the cached copy, notices, and fetches the voice again.
    result = subprocess.run(
        [sys.executable, "-m", "echo_voice.cli", "models", "pull", "piper-joe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "the cached copy is corrupted (en_US-joe-medium.onnx has sha256" in result.stderr
    assert "fetching it again" in result.stderr
    assert models.verify("piper-joe") == []
    assert models.resolve("piper-joe") == cache_copy


def test_pull_rechecks_a_cached_copy_even_when_size_and_mtime_look_unchanged(cache_copy):
    """resolve trusts an unchanged size and mtime (cheap at every start); pull always re-hashes."""
    voice = cache_copy / "en_US-joe-medium.onnx"
    stat = voice.stat()
    with voice.open("r+b") as f:
        f.write(b"\0" * 16)
    os.utime(voice, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    said: list[str] = []
    models.pull("piper-joe", say=said.append)
    assert any("the cached copy is corrupted" in line for line in said), said
    assert models.verify("piper-joe") == []


def test_downloads_that_do_not_match_the_pins_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_MODELS_DIR", str(tmp_path / "models"))
    real = models.MODELS["piper-joe"]
    wrong = (("en_US-joe-medium.onnx", "0" * 64), *real.files_sha256[1:])
    monkeypatch.setitem(models.MODELS, "piper-joe", dataclasses.replace(real, files_sha256=wrong))
    with pytest.raises(
        models.ModelError, match=r"do not match their pins: en_US-joe-medium\.onnx has sha256"
    ):
        models.pull("piper-joe", say=lambda _: None)
    assert not models.is_pulled("piper-joe")
    assert not list((tmp_path / "models").glob(".pull-*"))  # no half-finished pull left behind
