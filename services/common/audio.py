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
    """Linear-interpolation resampling of a whole signal; adequate for speech going into ASR/VAD."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    resampler = StreamResampler(src_rate, dst_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()])


class StreamResampler:
    """Linear-interpolation resampling of a signal that arrives in pieces.

    Output sample k sits at input position k * src / dst, kept as an exact integer fraction, so
    there is no drift however many pieces arrive, and the last input sample is carried over so the
    sample between two pieces is interpolated as if the signal were whole. A signal of n input
    samples gives ceil(n * dst / src) output samples in all (the output instants inside its duration).
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise AudioFormatError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._reset()

    def _reset(self) -> None:
        self._inputs = 0  # input samples seen
        self._outputs = 0  # output samples produced
        self._last = np.zeros(0, dtype=np.float32)  # input sample _inputs - 1, once there is one

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The output samples that ``samples`` completes (those not past the newest input sample)."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.src_rate == self.dst_rate:
            return samples
        if not len(samples):
            return samples
        src, dst = self.src_rate, self.dst_rate
        window = np.concatenate([self._last, samples])
        first = self._inputs - len(self._last)  # input index of window[0]
        self._inputs += len(samples)
        # Outputs whose position k * src / dst is at or before the newest input sample.
        end = (self._inputs - 1) * dst // src + 1
        out = self._interpolate(window, first, np.arange(self._outputs, end, dtype=np.int64))
        self._outputs = max(self._outputs, end)
        self._last = window[-1:]
        return out

    def flush(self) -> np.ndarray:
        """The outputs between the last input sample and the signal's end (the last sample held, as
        ``np.interp`` does), then a fresh start for the next signal."""
        if self.src_rate == self.dst_rate or not self._inputs:
            self._reset()
            return np.zeros(0, dtype=np.float32)
        total = -(-self._inputs * self.dst_rate // self.src_rate)  # ceil
        out = np.full(max(0, total - self._outputs), self._last[0], dtype=np.float32)
        self._reset()
        return out

    def _interpolate(self, window: np.ndarray, first: int, ks: np.ndarray) -> np.ndarray:
        if not len(ks):
            return np.zeros(0, dtype=np.float32)
        position = ks * self.src_rate
        index = position // self.dst_rate - first
        frac = (position % self.dst_rate).astype(np.float64) / self.dst_rate
        nxt = np.minimum(index + 1, len(window) - 1)
        left = window[index].astype(np.float64)
        return (left + frac * (window[nxt] - left)).astype(np.float32)


class PcmConverter:
    """pcm_s16le at any rate, mono or interleaved, to float32 mono at ``dst_rate``, chunk by chunk.

    Chunks may split a sample or a stereo frame anywhere: the incomplete frame waits for the next
    chunk, and the resampler carries its position and last sample, so converting a stream in pieces
    gives the same samples as converting it whole. ``flush`` ends the stream (an incomplete final
    frame is dropped: it is not a sample) and readies the converter for the next one.
    """

    def __init__(self, src_rate: int, channels: int = 1, dst_rate: int = 16000) -> None:
        if channels < 1:
            raise AudioFormatError(f"{channels} channels: need at least one")
        self.src_rate, self.channels, self.dst_rate = src_rate, channels, dst_rate
        self._frame_bytes = SAMPLE_WIDTH * channels
        self._partial = b""  # bytes of an incomplete frame from the previous chunk
        self._resampler = StreamResampler(src_rate, dst_rate)

    @property
    def passthrough(self) -> bool:
        """Mono at the target rate already: only frame alignment to do."""
        return self.channels == 1 and self.src_rate == self.dst_rate

    def _frames(self, pcm: bytes) -> bytes:
        data = self._partial + pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._partial = data[usable:]
        return data[:usable]

    def convert(self, pcm: bytes) -> np.ndarray:
        frames = self._frames(pcm)
        return self._resampler.process(to_mono(pcm16_to_float(frames), self.channels))

    def convert_pcm16(self, pcm: bytes) -> bytes:
        """The same as pcm_s16le bytes; bit-exact when there is nothing to convert."""
        if self.passthrough:
            return self._frames(pcm)
        return float_to_pcm16(self.convert(pcm))

    def flush(self) -> np.ndarray:
        self._partial = b""
        return self._resampler.flush()


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


def _convert_whole(pcm: bytes, rate: int, channels: int) -> np.ndarray:
    converter = PcmConverter(rate, max(1, channels), 16000)
    return np.concatenate([converter.convert(pcm), converter.flush()])


def decode_to_mono16k(data: bytes, encoding: str, sample_rate: int = 0, channels: int = 1) -> np.ndarray:
    """Any supported input encoding to float32 mono 16 kHz, the rate Whisper and Silero want."""
    if encoding == "pcm_s16le":
        if sample_rate <= 0:
            raise AudioFormatError("pcm_s16le needs a sample rate")
        return _convert_whole(data, sample_rate, channels)
    if encoding == "wav":
        pcm, rate, ch = read_wav(data)
        return _convert_whole(pcm, rate, ch)
    # Compressed formats (mp3, ogg, webm/opus) go through PyAV, which faster-whisper already needs.
    try:
        from faster_whisper.audio import decode_audio
    except ImportError as e:  # pragma: no cover - depends on the installed extra
        raise AudioFormatError(f"decoding {encoding} needs the 'stt' extra (PyAV)") from e
    try:
        return decode_audio(io.BytesIO(data), sampling_rate=16000)
    except Exception as e:
        raise AudioFormatError(f"cannot decode {encoding} audio: {e}") from e
