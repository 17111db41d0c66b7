"""PCM helpers: conversions, WAV containers, resampling. Pure numpy, cheap enough for the hot path."""

from __future__ import annotations

import io
import wave

import numpy as np

from services.common.errors import InvalidArgument

SAMPLE_WIDTH = 2  # bytes per pcm_s16le sample


class AudioFormatError(InvalidArgument):
    """Audio that is not what it claims to be."""


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    if len(pcm) % SAMPLE_WIDTH:
        pcm = pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    if channels <= 1:
        return samples
    usable = len(samples) - len(samples) % channels
    return samples[:usable].reshape(-1, channels).mean(axis=1)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling; adequate for speech going into ASR/VAD."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    duration = len(samples) / src_rate
    n_out = max(1, round(duration * dst_rate))
    src_t = np.arange(len(samples)) / src_rate
    dst_t = np.arange(n_out) / dst_rate
    return np.interp(dst_t, src_t, samples).astype(np.float32)


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int, int]:
    """(pcm_s16le, sample_rate, channels) of a 16-bit PCM WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != SAMPLE_WIDTH:
                raise AudioFormatError(f"WAV must be 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()
    except (wave.Error, EOFError) as e:
        raise AudioFormatError(f"not a valid WAV file: {e}") from e


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of pcm_s16le audio in dBFS (-inf for digital silence)."""
    samples = pcm16_to_float(pcm)
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples**2)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def decode_to_mono16k(data: bytes, encoding: str, sample_rate: int = 0, channels: int = 1) -> np.ndarray:
    """Any supported input encoding to float32 mono 16 kHz, the rate Whisper and Silero want."""
    if encoding == "pcm_s16le":
        if sample_rate <= 0:
            raise AudioFormatError("pcm_s16le needs a sample rate")
        return resample(to_mono(pcm16_to_float(data), channels), sample_rate, 16000)
    if encoding == "wav":
        pcm, rate, ch = read_wav(data)
        return resample(to_mono(pcm16_to_float(pcm), ch), rate, 16000)
    # Compressed formats (mp3, ogg, webm/opus) go through PyAV, which faster-whisper already needs.
    try:
        from faster_whisper.audio import decode_audio
    except ImportError as e:  # pragma: no cover - depends on the installed extra
        raise AudioFormatError(f"decoding {encoding} needs the 'stt' extra (PyAV)") from e
    try:
        return decode_audio(io.BytesIO(data), sampling_rate=16000)
    except Exception as e:
        raise AudioFormatError(f"cannot decode {encoding} audio: {e}") from e
