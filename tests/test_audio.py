"""PcmConverter: a stream converted chunk by chunk is the stream converted whole."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.audio import (
    AudioFormatError,
    PcmConverter,
    StreamResampler,
    float_to_pcm16,
    pcm16_to_float,
    resample,
    to_mono,
)

RATES = (8000, 22050, 44100, 48000)


def _speechlike(rate: int, seconds: float, channels: int, seed: int = 0) -> bytes:
    """Tones plus noise, different per channel, as interleaved pcm_s16le."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    columns = [
        0.3 * np.sin(2 * np.pi * (180 + 60 * c) * t)
        + 0.2 * np.sin(2 * np.pi * 1100 * t + c)
        + 0.05 * rng.standard_normal(len(t))
        for c in range(channels)
    ]
    return float_to_pcm16(np.stack(columns, axis=1).reshape(-1))


def _random_splits(data: bytes, seed: int, largest: int = 3000) -> list[bytes]:
    """Chunks of random sizes, odd ones (splitting a sample or a stereo frame) and empty ones included."""
    rng = np.random.default_rng(seed)
    chunks, at = [], 0
    while at < len(data):
        size = int(rng.choice([0, 1, 3, int(rng.integers(1, largest))]))
        chunks.append(data[at : at + size])
        at += size
    return chunks


def _convert(converter: PcmConverter, chunks: list[bytes]) -> np.ndarray:
    return np.concatenate([*(converter.convert(c) for c in chunks), converter.flush()])


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
def test_chunked_conversion_equals_whole_conversion(rate: int, channels: int) -> None:
    pcm = _speechlike(rate, 1.3, channels, seed=rate + channels)
    whole = _convert(PcmConverter(rate, channels), [pcm])
    chunks = _random_splits(pcm, seed=rate * channels)
    assert any(len(c) % 2 for c in chunks), "the splits must cut samples in half"
    chunked = _convert(PcmConverter(rate, channels), chunks)
    assert len(chunked) == len(whole)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # And whole conversion is plain linear interpolation of the mono signal at the target instants.
    mono = to_mono(pcm16_to_float(pcm), channels)
    expected = np.interp(np.arange(len(whole)) * rate / 16000, np.arange(len(mono)), mono)
    np.testing.assert_allclose(whole, expected, atol=1e-5)


def test_chunk_boundaries_leave_no_clicks() -> None:
    # A smooth 100 Hz tone fed in 37-byte pieces: no sample-to-sample jump bigger than the tone's own slope.
    rate = 44100
    tone = 0.5 * np.sin(2 * np.pi * 100 * np.arange(rate) / rate)
    pcm = float_to_pcm16(tone)
    out = _convert(PcmConverter(rate, 1), [pcm[i : i + 37] for i in range(0, len(pcm), 37)])
    max_step = 0.5 * 2 * np.pi * 100 / 16000
    assert np.abs(np.diff(out)).max() <= max_step * 1.05


@pytest.mark.parametrize("rate", RATES)
def test_silence_stays_silence(rate: int) -> None:
    converter = PcmConverter(rate, 2)
    out = _convert(converter, _random_splits(bytes(rate * 4), seed=1))
    assert len(out) > 0 and not out.any()


@pytest.mark.parametrize("rate", [*RATES, 16000, 11025])
def test_length_has_no_cumulative_drift_over_1000_chunks(rate: int) -> None:
    converter = PcmConverter(rate, 1)
    chunk = bytes(2 * 333)  # 333 samples: not a whole number of output samples at any rate here
    produced = sum(len(converter.convert(chunk)) for _ in range(1000))
    produced += len(converter.flush())
    n_in = 333 * 1000
    assert produced == -(-n_in * 16000 // rate)  # ceil(n_in * dst / src), exactly
    assert abs(produced - n_in * 16000 / rate) < 1


def test_output_trails_input_by_at_most_one_output_sample() -> None:
    # The converter holds back nothing it could already emit (only what needs the next input sample).
    converter = PcmConverter(8000, 1)
    emitted = 0
    for i in range(1, 200):
        emitted += len(converter.convert(bytes(2)))
        assert i * 2 - emitted in (0, 1)


def test_passthrough_is_bit_exact_and_frame_aligned() -> None:
    pcm = _speechlike(16000, 0.2, 1)
    converter = PcmConverter(16000, 1)
    assert converter.passthrough
    out = b"".join(converter.convert_pcm16(c) for c in _random_splits(pcm, seed=3))
    assert out == pcm


def test_stereo_to_mono_averages_the_frame() -> None:
    left, right = float_to_pcm16(np.array([0.5])), float_to_pcm16(np.array([-0.25]))
    converter = PcmConverter(16000, 2)
    # The first chunk ends mid-frame (left sample and half the right one).
    first = converter.convert(left + right[:1])
    second = converter.convert(right[1:])
    assert len(first) == 0
    assert second == pytest.approx([0.125], abs=1e-4)


def test_flush_drops_an_incomplete_frame_and_starts_a_new_stream() -> None:
    converter = PcmConverter(8000, 1)
    converter.convert(float_to_pcm16(np.full(10, 0.5)) + b"\x01")
    assert converter.flush() == pytest.approx([0.5], abs=1e-4)  # the held last sample, not the odd byte
    # A fresh stream: the stale half sample does not pair with the first byte of the next one.
    again = converter.convert(float_to_pcm16(np.full(4, -0.5)))
    assert again == pytest.approx(np.full(7, -0.5), abs=1e-4)


def test_resample_of_a_whole_signal_matches_the_stream() -> None:
    samples = pcm16_to_float(_speechlike(22050, 0.5, 1))
    resampler = StreamResampler(22050, 16000)
    pieces = np.array_split(samples, 17)
    streamed = np.concatenate([*(resampler.process(p) for p in pieces), resampler.flush()])
    np.testing.assert_allclose(streamed, resample(samples, 22050, 16000), atol=1e-6)


def test_bad_rates_and_channels_are_audio_format_errors() -> None:
    with pytest.raises(AudioFormatError):
        PcmConverter(0, 1)
    with pytest.raises(AudioFormatError):
        PcmConverter(16000, 0)
