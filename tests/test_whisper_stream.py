"""The Whisper backend's stream in process, on the real model: when partials and the final decode run.

The audio is fed in lockstep with the decodes (after each 20 ms chunk, until every decode it started
has finished), as if the machine were infinitely fast, or held at chosen points with gated decodes: the
order of decodes is then deterministic, with no clock involved. Timings are bench/stt_stream.py's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from echo.v1 import audio_pb2, stt_pb2
from services.common.config import ConfigError
from services.stt.backends import decode_slot
from services.stt.backends.whisper import WhisperBackend, WhisperSettings
from services.stt.backends.whisper_decode import PARTIAL_WINDOW_S, Decoded, WhisperDecoder
from services.stt.config import STTSettings
from tests.conftest import require_model
from tests.speech import ESPEAK_VOICES, speech_pcm, words

CHUNK = 640  # 20 ms at 16 kHz, what the gateway forwards
PHRASE = "The weather in Paris is sunny today."
PARTIAL_KIND = stt_pb2.TranscriptEvent.PARTIAL
FINAL_KIND = stt_pb2.TranscriptEvent.FINAL
CONFIG = stt_pb2.RecognitionConfig(
    audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=16000, channels=1),
    language="en",
    interim_results=True,
)


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[WhisperBackend]:
    require_model("whisper-tiny.en")
    whisper = WhisperBackend(STTSettings(), WhisperSettings(model="whisper-tiny.en"))
    await whisper.start()
    yield whisper
    await whisper.close()


def loud_part(pcm: bytes) -> bytes:
    """Speech cut after its last loud sample: no quiet tail that would start the final decode."""
    samples = np.frombuffer(pcm, dtype="<i2")
    return samples[: int(np.nonzero(np.abs(samples) > 3000)[0][-1])].tobytes()


def chunks(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


async def lockstep(backend: WhisperBackend, pcm: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks(pcm):
        yield chunk
        await asyncio.sleep(0)  # let the stream start what this chunk calls for
        await backend.slot.idle()


async def transcribe(backend: WhisperBackend, audio: AsyncIterator[bytes]) -> list[stt_pb2.TranscriptEvent]:
    return [event async for event in backend.stream(CONFIG, audio)]


class GatedDecode:
    """Wraps a decode: it starts, tells the loop so, and runs only once released."""

    def __init__(self, decode: Callable[..., Decoded]) -> None:
        self.decode = decode
        self.release = threading.Event()
        self.started = asyncio.Event()
        self.calls = 0
        self.loop = asyncio.get_running_loop()

    def __call__(self, *args: Any) -> Decoded:
        self.calls += 1
        self.loop.call_soon_threadsafe(self.started.set)
        self.release.wait()
        return self.decode(*args)


async def test_partials_while_speaking_then_the_quiet_decode_is_the_final(backend):
    pcm = speech_pcm(PHRASE, 16000, tail_s=0.6)
    events = await transcribe(backend, lockstep(backend, pcm))
    partials = [e for e in events if e.kind == PARTIAL_KIND and not e.stable]
    stable = [e for e in events if e.stable]
    final = events[-1]
    assert final.kind == FINAL_KIND and [e.kind for e in events].count(FINAL_KIND) == 1
    assert {"weather", "paris", "sunny"} <= words(final.text), final.text
    # A partial for every partial_interval_s of new speech (audio time: the decodes kept up).
    covered = [0.0] + [e.audio_s for e in partials]
    voice_s = len(pcm) / 32000 - 0.6 - 0.3
    assert len(partials) >= int(voice_s / backend.settings.partial_interval_s) - 1, covered
    assert {"weather", "paris"} <= words(partials[-1].text), partials[-1].text
    # The full decode started as the audio turned quiet became the final: nothing left to decode.
    assert stable and stable[-1].text == final.text
    assert final.decode_ms == 0.0


async def test_a_waiting_partial_is_dropped_for_the_final(backend):
    # Another stream's decode holds the slot while this one's speech arrives: its partials queue, one at
    # a time; when its audio turns quiet the final decode takes the waiting partial's place.
    blocker = threading.Event()
    held = asyncio.create_task(backend.slot.run(decode_slot.PARTIAL, blocker.wait))
    await asyncio.sleep(0)
    granted_before = len(backend.slot.granted)
    waiting_seen: list[int] = []

    async def audio() -> AsyncIterator[bytes]:
        for chunk in chunks(speech_pcm(PHRASE, 16000, tail_s=0.4)):
            yield chunk
            await asyncio.sleep(0)
            waiting_seen.append(backend.slot.waiting)
        blocker.set()

    events = await transcribe(backend, audio())
    await held
    assert max(waiting_seen) == 1  # never more than one decode of this stream queued
    # Once the blocker finished, the final ran first; the partials that had waited never ran.
    assert backend.slot.granted[granted_before:] == [decode_slot.FINAL]
    assert [e.kind for e in events] == [FINAL_KIND]
    assert {"weather", "paris", "sunny"} <= words(events[-1].text), events[-1].text


async def test_a_running_partial_finishes_unseen_and_the_final_runs_next(backend, monkeypatch):
    decoder = backend.decoder
    gate = GatedDecode(decoder.partial)
    monkeypatch.setattr(decoder, "partial", gate)
    granted_before = len(backend.slot.granted)
    speech = chunks(loud_part(speech_pcm(PHRASE, 16000)))
    waiting_when_quiet: list[int] = []

    async def audio() -> AsyncIterator[bytes]:
        for chunk in speech:
            yield chunk
            await asyncio.sleep(0)
        # A partial is running (held) as the speech ends. (wait_for: fail, not hang, if none starts.)
        await asyncio.wait_for(gate.started.wait(), 60)
        for chunk in chunks(bytes(16000)):  # 0.5 s of silence: the tail turns quiet
            yield chunk
            await asyncio.sleep(0)
            waiting_when_quiet.append(backend.slot.waiting)
        gate.release.set()

    events = await transcribe(backend, audio())
    assert gate.calls == 1
    assert max(waiting_when_quiet) == 1  # the final, queued behind the partial it cannot interrupt
    assert backend.slot.granted[granted_before:] == [decode_slot.PARTIAL, decode_slot.FINAL]
    assert [e.kind for e in events] == [FINAL_KIND]  # the partial's result was dropped
    assert {"weather", "paris", "sunny"} <= words(events[-1].text), events[-1].text


async def test_speech_after_the_quiet_decode_is_decoded_again_for_the_final(backend):
    first, second = "Turn on the kitchen lights.", "And play some jazz music."
    pcm = speech_pcm(first, 16000, tail_s=0.6) + loud_part(speech_pcm(second, 16000, lead_s=0.0))
    events = await transcribe(backend, lockstep(backend, pcm))
    stable = [e for e in events if e.stable]
    assert stable and {"kitchen", "lights"} <= words(stable[0].text), stable[0].text
    assert "jazz" not in words(stable[0].text)
    final = events[-1]
    assert {"kitchen", "lights", "jazz", "music"} <= words(final.text), final.text
    assert final.decode_ms > 0  # the audio did not end quiet: decoded after the stream ended


async def test_a_long_utterance_keeps_partials_short_by_going_on_from_a_pause(backend):
    sentences = [
        "Tell me a fun fact about the moon.",
        "Then tell me one about the sun.",
        "And one about the planets.",
        "And finally one about the stars in the night sky.",
    ]
    pcm = b"".join(speech_pcm(s, 16000, lead_s=0.0, tail_s=0.6) for s in sentences)
    assert len(pcm) / 32000 > PARTIAL_WINDOW_S + 1
    events = await transcribe(backend, lockstep(backend, pcm))
    stable = [e for e in events if e.stable]
    late = [e for e in events if e.kind == PARTIAL_KIND and not e.stable and e.audio_s > PARTIAL_WINDOW_S]
    assert late, [(e.audio_s, e.text) for e in events]
    # Each late partial decodes only what followed the last full decode, stitched after its text.
    anchors = [e.text for e in stable if e.audio_s < late[0].audio_s]
    assert late[0].text.startswith(anchors[-1]), (anchors, late[0].text)
    assert {"stars", "night", "sky"} <= words(late[-1].text), late[-1].text
    assert {"moon", "sun", "stars"} <= words(events[-1].text), events[-1].text


@pytest.mark.parametrize("voice", ESPEAK_VOICES)
async def test_espeak_speakers_are_transcribed(backend, voice):
    pcm = speech_pcm("What should I cook for dinner tonight?", 16000, tail_s=0.6, voice=voice)
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 3000  # real speech, not silence
    events = await transcribe(backend, lockstep(backend, pcm))
    assert {"cook", "dinner", "tonight"} <= words(events[-1].text), events[-1].text


def test_a_final_window_too_short_to_transcribe_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ECHO_STT_FINAL_CONTEXT_S=5\.0: choose 10 to 30 seconds"):
        WhisperBackend(STTSettings(), WhisperSettings(final_context_s=5.0))


async def test_finals_over_a_shorter_window_and_the_full_one_when_it_goes_wrong(backend, monkeypatch):
    decoder = WhisperDecoder(backend.model, 5, final_context_s=20.0)
    samples = np.frombuffer(speech_pcm(PHRASE, 16000, tail_s=0.3), "<i2").astype(np.float32) / 32768
    windowed = decoder.final(samples, "en")
    assert {"weather", "paris", "sunny"} <= words(windowed.text), windowed.text
    full: list[str] = []
    transcribe = decoder._transcribe
    monkeypatch.setattr(decoder, "_transcribe", lambda *a, **k: full.append("full") or transcribe(*a, **k))
    decoder.final(samples, "en")
    assert full == []  # the 20 s window was enough
    monkeypatch.setattr(decoder, "_windowed", lambda *a: None)  # as when the output repeats itself
    fallback = decoder.final(samples, "en")
    assert full == ["full"] and {"weather", "paris", "sunny"} <= words(fallback.text), fallback.text
