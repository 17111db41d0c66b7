"""Streaming Silero VAD on real synthesized speech."""

from __future__ import annotations

import numpy as np

from gateway.vad import SileroModel, StreamingVAD
from services.common.audio import pcm16_to_float
from tests.speech import speech_pcm


def run(vad: StreamingVAD, samples: np.ndarray, chunk: int) -> list[tuple[str, float]]:
    events = []
    for i in range(0, len(samples), chunk):
        events += [(e.kind, e.at_s) for e in vad.process(samples[i : i + chunk])]
    return events


def test_detects_speech_start_and_end_in_any_chunking() -> None:
    model = SileroModel()
    lead = 1.0
    speech = pcm16_to_float(speech_pcm("Turn on the kitchen lights please.", lead_s=lead, tail_s=1.0))
    results = []
    for chunk in (320, 512, 1600, 7777):
        events = run(StreamingVAD(model, 0.5, 150, 500), speech, chunk)
        assert [k for k, _ in events] == ["start", "end"], events
        results.append(events)
        start, end = events[0][1], events[1][1]
        assert lead - 0.2 < start < lead + 0.3
        assert end > start + 1.0 and end < len(speech) / 16000 - 0.5
    # Chunking changes nothing: the model sees the same 512-sample frames.
    assert all(r == results[0] for r in results)


def test_silence_and_a_short_click_are_not_speech() -> None:
    vad = StreamingVAD(SileroModel(), 0.5, 150, 500)
    silence = np.zeros(16000 * 2, dtype=np.float32)
    click = silence.copy()
    click[8000:8080] = 0.9
    assert run(vad, silence, 1600) == []
    assert run(vad, click, 1600) == []


def test_a_short_pause_does_not_end_the_turn_but_a_long_one_does() -> None:
    first = pcm16_to_float(speech_pcm("Hello there.", lead_s=0.5))
    second = pcm16_to_float(speech_pcm("How are you?", lead_s=0.0, tail_s=1.0))
    pause = np.zeros(int(0.1 * 16000), dtype=np.float32)  # ~0.35 s of silence with the voice's own tail
    events = run(StreamingVAD(SileroModel(), 0.5, 150, 500), np.concatenate([first, pause, second]), 1600)
    assert [k for k, _ in events] == ["start", "end"]
    events = run(
        StreamingVAD(SileroModel(), 0.5, 150, 500),
        np.concatenate([first, np.zeros(16000, dtype=np.float32), second]),
        1600,
    )
    assert [k for k, _ in events] == ["start", "end", "start", "end"]
