"""End of turn: how often Echo cuts a user off mid-turn, and how long it makes a finished one wait.

    python bench/endpointing.py                      # VAD only: split rate per end-of-turn silence
    python bench/endpointing.py --live               # the whole stack, silence then smart end of turn
    python bench/endpointing.py --live --modes smart --pauses 0.5,1.0 --pairs 3 --questions 5

Without --live (the baseline, exact, no timing): multi-sentence turns are synthesised (Piper,
deterministic) with a pause between sentences drawn from the range people leave inside one turn
(0.1-0.7 s, plus the voice's own ~0.25 s of tail). For each end-of-turn silence the streaming VAD (the
gateway's, Silero) runs over every turn and we count turns it split in two. The endpointing delay is the
silence itself.

With --live, for each mode (ECHO_GATEWAY_TURN_DETECTION=silence, then smart) the local stack is started
as bench/latency.py does (default models, ECHO_GATEWAY_MAX_TOKENS=20 so replies do not load the CPU;
other ECHO_* variables reach it as they are) on ports of its own, and voice turns go through
/v1/voice in real time, each in a new session:
- two-part questions with a pause (0.5, 0.7, 0.85, 1.0 s of silence between the voice of the two
  halves), of three kinds: an incomplete first half spoken alone by Piper ("Can you tell me" / "how tall
  the Eiffel tower is?"), the same sentence spoken whole and cut after the first half (Piper gives a
  fragment spoken alone a falling, finished-sounding voice; the cut is where Whisper hears the word
  end), and a complete first half followed by more ("Set a timer for ten minutes." / "No, make that
  fifteen."). The client plays replies in real time (playback "realtime", the default). A turn is
  split when its first half was answered on its own: the gateway ended it (speech.stopped's at_ms)
  before the second half's voice began, and did not take that reply back when the voice came back
  (response.done with interrupt_reason "continued": see continue_window_ms in docs/architecture.md).
  The table also counts the turns ended at the pause, and those taken back before the user heard any
  of the reply, or after ("false start": the user heard the reply begin, then Echo stopped and
  answered the whole turn; with how much of it was heard);
- complete single questions followed by silence: the end-of-turn delay is the server's
  timings_ms.endpointing (end of voice to the turn's end), and at the client the arrival of
  speech.stopped after the end of the voice was sent.
Tables per mode: splits per kind and pause, per first half (Smart Turn's probability for it, computed
here offline on the same audio plus 0.2 s of silence; whether gateway/turn/endpointing.py's words rule
calls its words unfinished; the transcript the gateway had when it ended the turn), and the delays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import endpointing_live as live
from bench.latency import percentile, start_stack, wait_ready
from gateway.vad import RATE, SileroModel, StreamingVAD
from services.common.audio import pcm16_to_float
from tests.speech import speech_pcm

SENTENCE_PAIRS = [
    ("I need to book a table.", "Somewhere quiet near the river."),
    ("Set a timer for ten minutes.", "No, make that fifteen."),
    ("What's the weather tomorrow?", "I mean in Berlin."),
    ("Play some music.", "Something relaxing, maybe jazz."),
    ("Remind me to call my mother.", "Tonight, after dinner."),
    ("How far is the moon?", "In kilometres, please."),
]
PAUSES_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SILENCES_MS = (300, 400, 500, 600, 700, 800, 1000)
GATEWAY_PORT, FIRST_SERVICE_PORT = 8091, 50161  # not the defaults: another stack may be running


def vad_table() -> None:
    model = SileroModel()
    first = {a: pcm16_to_float(speech_pcm(a, lead_s=0.3)) for a, _ in SENTENCE_PAIRS}
    second = {b: pcm16_to_float(speech_pcm(b, lead_s=0.0, tail_s=1.5)) for _, b in SENTENCE_PAIRS}
    pauses = ", ".join(map(str, PAUSES_S))
    print(f"{len(SENTENCE_PAIRS)} two-sentence turns x {len(PAUSES_S)} pauses ({pauses} s)\n")
    header = "| end silence | " + " | ".join(f"pause {p:.1f}s" for p in PAUSES_S) + " | turns split |"
    print(header)
    print("|" + "---|" * (len(PAUSES_S) + 2))
    for silence in SILENCES_MS:
        cells, split_total = [], 0
        for pause in PAUSES_S:
            splits = 0
            for a, b in SENTENCE_PAIRS:
                vad = StreamingVAD(model, 0.5, 150, silence)
                audio = np.concatenate([first[a], np.zeros(int(pause * RATE), np.float32), second[b]])
                ends = [e for e in vad.process(audio) if e.kind == "end"]
                splits += len(ends) > 1
            cells.append(f"{splits}/{len(SENTENCE_PAIRS)}")
            split_total += splits
        rate = split_total / (len(SENTENCE_PAIRS) * len(PAUSES_S))
        print(f"| {silence} ms | " + " | ".join(cells) + f" | {100 * rate:.0f}% |")


def prepare(args: argparse.Namespace) -> tuple[list[live.TwoPart], list[str]]:
    """Synthesise and cut every clip, and score the first halves with Smart Turn, before any stack
    runs (the models are unloaded again: they would take the CPU from the stack)."""
    from faster_whisper import WhisperModel

    from gateway import smart_turn
    from services.common import models

    print("synthesising the turns (Piper), cutting sentences (Whisper word times)...", flush=True)
    whisper = WhisperModel(str(models.resolve("whisper-tiny.en")), device="cpu", compute_type="int8")
    parts = live.build_two_parts(
        live.INCOMPLETE_PAIRS[: args.pairs], SENTENCE_PAIRS[: args.pairs], whisper, smart_turn.load()
    )
    return parts, live.COMPLETE_QUESTIONS[: args.questions]


def run_mode(
    mode: str, args: argparse.Namespace, parts: list[live.TwoPart], questions: list[str]
) -> tuple[list[live.TwoPartResult], list[live.SingleResult], str]:
    url = args.url or f"ws://127.0.0.1:{GATEWAY_PORT}/v1/voice"
    proc = None
    if not args.url:
        os.environ.update(
            {
                "ECHO_GATEWAY_TURN_DETECTION": mode,
                "ECHO_GATEWAY_MAX_TOKENS": os.environ.get("ECHO_GATEWAY_MAX_TOKENS", "20"),
                "ECHO_GATEWAY_PORT": str(GATEWAY_PORT),
                **{
                    f"ECHO_{s}_PORT": str(FIRST_SERVICE_PORT + i) for i, s in enumerate(("STT", "LLM", "TTS"))
                },
                "ECHO_STORAGE_PORT": str(FIRST_SERVICE_PORT + 3),
            }
        )
        print(f"\n== {mode}: starting the stack (echo-voice run; log in bench/stack.log)...", flush=True)
        proc = start_stack()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        wait_ready(url.replace("ws://", "http://").removesuffix("/v1/voice"), proc)
        print(f"== {mode}: warm-up turn", flush=True)
        asyncio.run(live.run_singles(url, questions[:1]))
        print(f"== {mode}: {len(parts)} two-part turns x {len(args.pauses)} pauses", flush=True)
        two = asyncio.run(live.run_two_parts(url, parts, args.pauses))
        print(f"== {mode}: {len(questions)} complete questions", flush=True)
        singles = asyncio.run(live.run_singles(url, questions))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    note = (
        f"{time.monotonic() - started:.0f} s, {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    return two, singles, note


def report(mode: str, two: list[live.TwoPartResult], singles: list[live.SingleResult], note: str) -> None:
    print(f"\n### {mode} ({note})\n")
    print("\n".join(live.split_table(two, tuple(sorted({r.pause_s for r in two})))))
    print()
    print("\n".join(live.pair_table(two, float(os.environ.get("ECHO_GATEWAY_TURN_THRESHOLD", "0.5")))))
    print()
    print("\n".join(live.delay_table(mode, singles, 300)))


def parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live", action="store_true", help="measure the whole stack, not the VAD alone")
    parser.add_argument(
        "--modes", default="silence,smart", help="ECHO_GATEWAY_TURN_DETECTION values, one stack each"
    )
    parser.add_argument("--pauses", type=parse_floats, default=live.PAUSES_S, help="seconds, comma-separated")
    parser.add_argument(
        "--pairs", type=int, default=len(live.INCOMPLETE_PAIRS), help="pairs per kind at most"
    )
    parser.add_argument(
        "--questions", type=int, default=len(live.COMPLETE_QUESTIONS), help="single questions"
    )
    parser.add_argument("--url", help="a running gateway's WebSocket URL (one mode: whatever it runs)")
    args = parser.parse_args()
    if not args.live:
        vad_table()
        return
    modes = [m.strip() for m in args.modes.split(",")]
    if args.url and len(modes) > 1:
        parser.error("--url measures the gateway as it runs: give one --modes label")
    parts, questions = prepare(args)
    done = [(mode, *run_mode(mode, args, parts, questions)) for mode in modes]
    for mode, two, singles, note in done:
        report(mode, two, singles, note)
    print(
        "\n| mode | false splits, all | incomplete halves | complete halves | false starts | "
        "end-of-turn p50 ms |"
    )
    print("|---|---|---|---|---|---|")
    for mode, two, singles, _ in done:
        inc = [r for r in two if r.part.kind != live.KINDS[2]]
        com = [r for r in two if r.part.kind == live.KINDS[2]]

        def rate(rows: list[live.TwoPartResult]) -> str:
            splits = sum(r.split for r in rows)
            return f"{100 * splits / max(1, len(rows)):.0f}% ({splits}/{len(rows)})"

        p50 = percentile([r.endpointing_ms for r in singles if r.endpointing_ms is not None], 0.5)
        starts = sum(r.false_start for r in two)
        print(f"| {mode} | {rate(two)} | {rate(inc)} | {rate(com)} | {starts}/{len(two)} | {p50:.0f} |")


if __name__ == "__main__":
    main()
