"""The Whisper backend's streaming in process, as the gateway drives it: replay spoken utterances in real
time through the gateway's own Silero VAD and pre-roll, stream each utterance into
``WhisperBackend.stream`` and end it when the VAD's end silence has passed.

    python bench/stt_stream.py                      # every voice, default settings
    python bench/stt_stream.py --preroll-s 1.0      # keep more audio from before the VAD fired
    python bench/stt_stream.py --end-silence-ms 250 # a shorter end of turn (as Smart Turn gives)

Prints, per voice and overall: the final transcript's delay after the turn ended, the gap between
partials while the user speaks, the first partial after the voice began, and the word error rate of
each final against the text spoken (bench/wer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "protos"))

from bench.latency import LEAD_S, UTTERANCES, VOICES, percentile, voice_tail_s  # noqa: E402
from bench.wer import wer  # noqa: E402
from echo.v1 import audio_pb2, stt_pb2  # noqa: E402
from gateway.turn.listener import PREROLL_S  # noqa: E402
from gateway.vad import RATE, SileroModel, StreamingVAD  # noqa: E402
from services.common.audio import pcm16_to_float  # noqa: E402
from services.stt.backends.whisper import WhisperBackend, load_whisper_settings  # noqa: E402
from services.stt.config import STTSettings  # noqa: E402
from tests.speech import speech_pcm  # noqa: E402

CHUNK_S = 0.02  # what the voice client sends per message


@dataclass
class Turn:
    voice: str
    text: str
    final: str = ""
    final_ms: float = float("nan")  # FINAL after the turn ended
    decode_ms: float = 0.0  # the FINAL's own decode time after the turn ended (0: reused)
    partial_gaps: list[float] = field(default_factory=list)  # ms, while the voice lasted
    first_partial_ms: float = float("nan")  # after the voice began
    wer: float = float("nan")


async def replay(
    backend: WhisperBackend, vad: StreamingVAD, pcm: bytes, preroll_s: float, voice_start_s: float
) -> tuple[list[tuple[float, stt_pb2.TranscriptEvent]], float, float]:
    """Stream ``pcm`` in real time; returns the events with their clock times, when the voice began and
    when the turn ended (clock times)."""
    config = stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1),
        language="en",
        interim_results=True,
    )
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    events: list[tuple[float, stt_pb2.TranscriptEvent]] = []

    async def audio() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    async def consume() -> None:
        async for event in backend.stream(config, audio()):
            events.append((time.perf_counter(), event))

    vad.reset()
    step = int(RATE * CHUNK_S) * 2
    recent = bytearray()
    consumer: asyncio.Task[None] | None = None
    ended_at = float("nan")
    t0 = time.perf_counter()
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        recent = (recent + chunk)[-int(preroll_s * RATE) * 2 :]
        if consumer is not None and np.isnan(ended_at):
            queue.put_nowait(chunk)
        for event in vad.process(pcm16_to_float(chunk)):
            if event.kind == "start" and consumer is None:
                queue.put_nowait(bytes(recent))  # the gateway's pre-roll, this chunk included
                consumer = asyncio.create_task(consume())
            elif event.kind == "end" and consumer is not None and np.isnan(ended_at):
                queue.put_nowait(None)
                ended_at = time.perf_counter()
        ahead = t0 + (i + step) / 2 / RATE - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    if consumer is None:
        raise RuntimeError("the VAD heard no speech")
    if np.isnan(ended_at):
        queue.put_nowait(None)
        ended_at = time.perf_counter()
    await consumer
    return events, t0 + voice_start_s, ended_at


async def run(args: argparse.Namespace) -> list[Turn]:
    settings = load_whisper_settings()
    backend = WhisperBackend(STTSettings(), settings)
    await backend.start()
    vad = StreamingVAD(SileroModel(), 0.5, 150, args.end_silence_ms)
    turns: list[Turn] = []
    for voice in args.voices:
        for text in UTTERANCES[: args.utterances]:
            clip = speech_pcm(text, RATE, lead_s=LEAD_S, tail_s=args.silence_s, voice=voice)
            voice_end_s = len(clip) / 2 / RATE - voice_tail_s(clip, RATE)
            events, voice_at, ended_at = await replay(backend, vad, clip, args.preroll_s, LEAD_S)
            voice_end_at = voice_at - LEAD_S + voice_end_s
            final = events[-1][1]
            turn = Turn(voice, text, final.text, 1000 * (events[-1][0] - ended_at), final.decode_ms)
            turn.wer = wer(text, final.text)
            partials = [t for t, e in events if e.kind == stt_pb2.TranscriptEvent.PARTIAL and e.text]
            speaking = [t for t in partials if t <= voice_end_at]
            turn.partial_gaps = [1000 * float(g) for g in np.diff(speaking)]
            if partials:
                turn.first_partial_ms = 1000 * (partials[0] - voice_at)
            turns.append(turn)
            print(
                f"  {voice:18s} final {turn.final_ms:6.0f} ms (decode {turn.decode_ms:4.0f})  "
                f"partials {len(partials):2d} max gap {max(turn.partial_gaps, default=0):5.0f} ms  "
                f"WER {turn.wer:.2f}  {final.text!r}",
                flush=True,
            )
    await backend.close()
    return turns


def report(turns: list[Turn]) -> None:
    def row(label: str, values: list[float]) -> str:
        values = [v for v in values if not np.isnan(v)]
        return f"| {label:<40} | {percentile(values, 0.5):7.1f} | {percentile(values, 0.95):7.1f} |"

    print(f"\n| {'stage':<40} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 9}|")
    print(row("final transcript after the turn ended", [t.final_ms for t in turns]))
    print(row("  of which decode after the turn ended", [t.decode_ms for t in turns]))
    print(row("first partial after the voice began", [t.first_partial_ms for t in turns]))
    print(row("gap between partials while speaking", [g for t in turns for g in t.partial_gaps]))
    print(
        f"\nlongest gap between partials: {max((g for t in turns for g in t.partial_gaps), default=0):.0f} ms"
    )
    print(f"\n| {'voice':<18} | {'mean WER':>8} |")
    print(f"|{'-' * 20}|{'-' * 10}|")
    for voice in dict.fromkeys(t.voice for t in turns):
        print(f"| {voice:<18} | {statistics.mean(t.wer for t in turns if t.voice == voice):8.3f} |")
    print(f"| {'all':<18} | {statistics.mean(t.wer for t in turns):8.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--voices", nargs="+", default=list(VOICES), help="test voices (tests/speech.py)")
    parser.add_argument("--utterances", type=int, default=len(UTTERANCES), help="the first N utterances")
    parser.add_argument(
        "--preroll-s", type=float, default=PREROLL_S, help="audio kept from before the VAD fired"
    )
    parser.add_argument("--end-silence-ms", type=int, default=500, help="VAD silence that ends the turn")
    parser.add_argument("--silence-s", type=float, default=1.2, help="silence sent after each utterance")
    report(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
