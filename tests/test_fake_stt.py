"""The fake STT backend through the real servicer, in process, on a virtual clock."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

import grpc
import numpy as np
import pytest

from echo.v1 import audio_pb2, stt_pb2
from services.common.audio import float_to_pcm16
from services.stt.backends.fake import FakeSTTBackend, FakeSTTSettings
from services.stt.config import STTSettings
from services.stt.server import SpeechToTextServicer
from tests.test_fakes import Context, timed
from tests.virtual_clock import run_virtual

RATE = 16000
PARTIAL = stt_pb2.TranscriptEvent.PARTIAL
FINAL = stt_pb2.TranscriptEvent.FINAL


def tone_pcm(seconds: float, amplitude: float = 0.3) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return float_to_pcm16(amplitude * np.sin(2 * np.pi * 220 * t))


async def utterance(
    config: stt_pb2.RecognitionConfig, pieces: list[tuple[float, bool]], pace: bool = False
) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    """The config, then 0.1 s chunks: ``pieces`` are (seconds, voiced) runs; ``pace`` sends in real time."""
    yield stt_pb2.StreamingRecognizeRequest(config=config)
    for seconds, voiced in pieces:
        for _ in range(round(seconds / 0.1)):
            if pace:
                await asyncio.sleep(0.1)
            yield stt_pb2.StreamingRecognizeRequest(audio=tone_pcm(0.1, 0.3 if voiced else 0.0))


def stt_config(interim: bool = True, **audio: Any) -> stt_pb2.RecognitionConfig:
    fmt = {"encoding": audio_pb2.PCM_S16LE, "sample_rate": RATE, "channels": 1} | audio
    return stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(**fmt), interim_results=interim)


def stt(**fake: Any) -> FakeSTTBackend:
    return FakeSTTBackend(STTSettings(), FakeSTTSettings(**fake))


# --- STT ---------------------------------------------------------------------------------------------


def test_stt_partials_grow_with_voiced_audio_then_stable_then_final() -> None:
    backend = stt()
    backend.script("one two three four five six")
    servicer = SpeechToTextServicer(backend)
    requests = utterance(stt_config(), [(1.0, True), (0.3, False)])
    events = run_virtual(timed(servicer.StreamingRecognize(requests, Context())))
    shapes = [(e.kind, e.text, e.stable, round(e.audio_s, 3)) for _, e in events]
    assert shapes == [
        (PARTIAL, "one two", False, 0.5),  # 0.5 s voiced x 3 words/s = 1.5 -> 2 words
        (PARTIAL, "one two three", False, 1.0),
        (PARTIAL, "one two three four five six", True, 1.2),  # 0.2 s of quiet after speech
        (FINAL, "one two three four five six", False, 1.3),
    ]
    final = events[-1][1]
    assert (final.start_s, final.end_s, final.decode_ms, final.language) == (0.0, 1.0, 0.0, "en")
    assert [(w.text, round(w.start_s, 4), round(w.end_s, 4)) for w in final.words][:2] == [
        ("one", 0.0, 0.1667),
        ("two", 0.1667, 0.3333),
    ]
    assert final.words[-1].end_s == pytest.approx(1.0)
    assert backend.streams == ["one two three four five six"]


def test_stt_final_waits_decode_delay_after_the_audio_ends() -> None:
    backend = stt(decode_delay_s=0.25, decode_ms=40.0)
    servicer = SpeechToTextServicer(backend)
    requests = utterance(stt_config(), [(0.6, True)], pace=True)
    events = run_virtual(timed(servicer.StreamingRecognize(requests, Context())))
    # Partials arrive as the audio does; the final 0.25 s after the last chunk. Nothing is scripted,
    # so the default text is used.
    assert [(t, e.kind, e.text) for t, e in events] == [(0.5, PARTIAL, "hello"), (0.85, FINAL, "hello")]
    assert events[-1][1].decode_ms == 40.0


def test_stt_stable_partial_once_per_quiet_spell_and_none_without_interim_results() -> None:
    text = "a b c d e f g h i j"
    spells = [(0.3, True), (0.4, False), (0.3, True), (0.3, False)]
    backend = stt(partial_every_s=10.0)
    backend.script(text, text)
    events = run_virtual(
        timed(SpeechToTextServicer(backend).StreamingRecognize(utterance(stt_config(), spells), Context()))
    )
    assert [(e.stable, round(e.audio_s, 3)) for _, e in events if e.kind == PARTIAL] == [
        (True, 0.5),
        (True, 1.2),
    ]
    quiet = run_virtual(
        timed(
            SpeechToTextServicer(backend).StreamingRecognize(
                utterance(stt_config(interim=False), spells), Context()
            )
        )
    )
    assert [e.kind for _, e in quiet] == [FINAL]


def test_stt_too_little_audio_gives_an_empty_final_and_uses_up_the_script() -> None:
    backend = stt()
    backend.script("first", "second")
    events = run_virtual(
        timed(
            SpeechToTextServicer(backend).StreamingRecognize(
                utterance(stt_config(), [(0.0, True)]), Context()
            )
        )
    )
    assert [(e.kind, e.text, e.audio_s) for _, e in events] == [(FINAL, "", 0.0)]
    assert backend.streams == ["first"]


def test_stt_counts_stereo_audio_by_frames() -> None:
    stereo = stt_config(channels=2)
    backend = stt()
    backend.script("left right")

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stereo)
        mono = np.frombuffer(tone_pcm(0.5), dtype="<i2")
        pcm = np.repeat(mono, 2).tobytes()
        # Odd-sized pieces: a frame split across messages still counts once.
        for i in range(0, len(pcm), 999):
            yield stt_pb2.StreamingRecognizeRequest(audio=pcm[i : i + 999])

    events = run_virtual(timed(SpeechToTextServicer(backend).StreamingRecognize(requests(), Context())))
    assert events[-1][1].audio_s == pytest.approx(0.5)
    assert events[0][1].text == "left right"


def test_stt_refuses_what_whisper_refuses() -> None:
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        run_virtual(
            timed(
                SpeechToTextServicer(stt()).StreamingRecognize(
                    utterance(stt_config(encoding=audio_pb2.MP3), [(0.2, True)]), context
                )
            )
        )
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT


def test_stt_transcripts_from_the_environment_then_recognize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_STT_FAKE_TRANSCRIPTS", "good morning | see you")
    backend = FakeSTTBackend(STTSettings())
    buf = BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(tone_pcm(1.5))
    request = stt_pb2.RecognizeRequest(config=stt_config(encoding=audio_pb2.WAV), audio=buf.getvalue())
    reply = run_virtual(SpeechToTextServicer(backend).Recognize(request, Context()))
    assert (reply.text, reply.duration_s) == ("good morning", 1.5)
    events = run_virtual(
        timed(
            SpeechToTextServicer(backend).StreamingRecognize(
                utterance(stt_config(), [(0.3, True)]), Context()
            )
        )
    )
    assert events[-1][1].text == "see you"
    assert (backend.recognized, backend.streams) == (["good morning"], ["see you"])
