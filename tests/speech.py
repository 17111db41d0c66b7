"""Spoken test audio, synthesised offline (Piper, or eSpeak NG for other speakers) so no recordings
need committing."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from services.common import models
from services.common.audio import float_to_pcm16, pcm16_to_float, resample, wav_bytes

PIPER_VOICE = "piper-joe"
# eSpeak NG voices (the Debian package espeak-ng): other speakers than Piper's, so accuracy is not
# measured on one voice only. Named "espeak:<espeak-ng -v name>".
ESPEAK_VOICES = ("espeak:en-us+f2", "espeak:en-gb", "espeak:en-us+m3")


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    from piper import PiperVoice

    onnx = next(models.resolve(PIPER_VOICE).glob("*.onnx"))
    return PiperVoice.load(onnx)


def _piper(text: str) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _voice()
    # Zero noise makes Piper deterministic: the same text gives the same audio in every run.
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])
    return audio, voice.config.sample_rate


def _espeak(text: str, name: str) -> tuple[np.ndarray, int]:
    """eSpeak NG is deterministic: the same text and voice give the same samples."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; make test does it)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        # A file, not --stdout: a piped WAV header carries no data length.
        subprocess.run([exe, "-v", name, "-w", str(out), text], check=True, capture_output=True)
        with wave.open(str(out)) as w:
            return pcm16_to_float(w.readframes(w.getnframes())), w.getframerate()


def speech_pcm(
    text: str, sample_rate: int = 16000, lead_s: float = 0.3, tail_s: float = 0.0, voice: str = PIPER_VOICE
) -> bytes:
    """pcm_s16le mono speech of ``text`` with leading (and optional trailing) silence, spoken by
    ``voice``: Piper's (default) or one of ESPEAK_VOICES."""
    if voice == PIPER_VOICE:
        audio, rate = _piper(text)
    elif voice.startswith("espeak:"):
        audio, rate = _espeak(text, voice.removeprefix("espeak:"))
    else:
        raise ValueError(f"unknown test voice {voice!r}: {PIPER_VOICE} or espeak:<name>")
    audio = resample(audio, rate, sample_rate)
    lead = np.zeros(int(lead_s * sample_rate), dtype=np.float32)
    tail = np.zeros(int(tail_s * sample_rate), dtype=np.float32)
    return float_to_pcm16(np.concatenate([lead, audio, tail]))


def speech_wav(text: str, path: Path, sample_rate: int = 16000, tail_s: float = 0.0) -> Path:
    path.write_bytes(wav_bytes(speech_pcm(text, sample_rate, tail_s=tail_s), sample_rate))
    return path


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")}


def _norm(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())


def split_after(
    whisper: Any, text: str, prefix: str, back_off_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``text`` spoken whole (16 kHz float, speech_pcm's lead silence) and split after the words of
    ``prefix``: (the audio up to the cut, the rest). The cut is where ``whisper`` (a faster-whisper
    WhisperModel, word timestamps) hears the prefix's last word end: a person who stops mid-sentence,
    which Piper cannot say (a fragment it speaks alone ends with a falling voice). Whisper's word ends
    fall late, often on the next word's first sound; with ``back_off_s`` the cut moves back, 10 ms at a
    time up to that far, to the latest point where Whisper hears the first part as ``prefix`` and no more."""
    audio = pcm16_to_float(speech_pcm(text))
    segments, _ = whisper.transcribe(audio, word_timestamps=True, beam_size=1, language="en")
    heard = [w for s in segments for w in s.words]
    wanted = [_norm(w) for w in prefix.split()]
    # A mis-heard word would put the cut somewhere else: refuse rather than measure the wrong audio.
    if [_norm(w.word) for w in heard[: len(wanted)]] != wanted:
        raise ValueError(f"Whisper heard {[w.word for w in heard]}, which does not start with {prefix!r}")
    cut = int(heard[len(wanted) - 1].end * 16000)
    if back_off_s <= 0:
        return audio[:cut], audio[cut:]
    for back in range(0, int(back_off_s * 16000) + 1, 160):
        segments, _ = whisper.transcribe(audio[: cut - back], beam_size=5, language="en")
        if [_norm(w) for s in segments for w in s.text.split() if _norm(w)] == wanted:
            return audio[: cut - back], audio[cut - back :]
    raise ValueError(f"no cut within {back_off_s} s before Whisper's end of {prefix!r} is heard as just it")


def cut_after(whisper: Any, text: str, prefix: str, silence_s: float = 0.2) -> np.ndarray:
    """``text`` spoken whole and stopped after ``prefix``, then ``silence_s`` of silence: a mid-sentence
    pause, as the turn model hears it."""
    head, _ = split_after(whisper, text, prefix)
    return np.concatenate([head, np.zeros(int(silence_s * 16000), np.float32)])
