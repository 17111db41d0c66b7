"""Spoken test audio, synthesised offline with Piper so no recordings need committing."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from services.common import models
from services.common.audio import float_to_pcm16, resample, wav_bytes


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    from piper import PiperVoice

    onnx = next(models.resolve("piper-joe").glob("*.onnx"))
    return PiperVoice.load(onnx)


def speech_pcm(text: str, sample_rate: int = 16000, lead_s: float = 0.3, tail_s: float = 0.0) -> bytes:
    """pcm_s16le mono speech of ``text`` with leading (and optional trailing) silence."""
    from piper import SynthesisConfig

    voice = _voice()
    # Zero noise makes Piper deterministic: the same text gives the same audio in every run.
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])
    audio = resample(audio, voice.config.sample_rate, sample_rate)
    lead = np.zeros(int(lead_s * sample_rate), dtype=np.float32)
    tail = np.zeros(int(tail_s * sample_rate), dtype=np.float32)
    return float_to_pcm16(np.concatenate([lead, audio, tail]))


def speech_wav(text: str, path: Path, sample_rate: int = 16000, tail_s: float = 0.0) -> Path:
    path.write_bytes(wav_bytes(speech_pcm(text, sample_rate, tail_s=tail_s), sample_rate))
    return path


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")}
