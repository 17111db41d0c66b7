"""End of turn through the whole local stack: does the gateway wait for the user to finish, and how
fast does it end a finished question? `bench/endpointing.py --live` runs it (see its --help).

Every turn is its own session: session.start, the clip streamed in real time (20 ms frames) and then
silence until the gateway ends the turn, session.end. Where a turn was ended is read from
`speech.stopped`'s `at_ms` (where the voice last was, as an offset in the session's input audio), so it
is exact: it does not depend on when the event reached the client.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.latency import LEAD_S, percentile, voice_tail_s
from echo_voice.client import VoiceClient
from gateway.turn.endpointing import sounds_unfinished
from services.common.audio import float_to_pcm16, pcm16_to_float
from tests.speech import speech_pcm, split_after

RATE = 16000
# (first half, second half): the first half stops mid-phrase. The last two end on no dangling word, so
# the gateway's words rule cannot save them: only the turn model's ear can.
INCOMPLETE_PAIRS = [
    ("Can you tell me", "how tall the Eiffel tower is?"),
    ("I would like to know the capital of", "Canada."),
    ("What's the weather like in", "Berlin tomorrow?"),
    ("Could you remind me to", "call my mother tonight?"),
    ("How many people live in", "Tokyo?"),
    ("Who was the first person to", "walk on the moon?"),
    ("What is the best way", "to learn French?"),
    ("How long does it take", "to boil an egg?"),
]
COMPLETE_QUESTIONS = [
    "What is the capital of France?",
    "How tall is the Eiffel tower?",
    "Who wrote Romeo and Juliet?",
    "How many days are there in a leap year?",
    "What is two plus two?",
    "Why is the sky blue?",
    "Can you tell me a joke?",
    "Set a timer for ten minutes.",
    "What's the weather like in Berlin tomorrow?",
    "Who was the first person to walk on the moon?",
    "I would like to know the capital of Canada.",
    "Play some relaxing music.",
]
PAUSES_S = (0.5, 0.7, 0.85, 1.0)
KINDS = ("incomplete, spoken alone", "incomplete, cut from the sentence", "complete first half")
TRIGGER_SILENCE_S = 0.2  # the pause at which the gateway asks Smart Turn (ECHO_GATEWAY_TURN_PAUSE_MS)
CUT_BACK_OFF_S = 0.15  # how far split_after may move a cut back off the next word's first sound
END_MARGIN_MS = 350  # a speech.stopped this close to the end of the voice ends the turn where it should
MAX_TAIL_S = 2.5  # silence after the clip: longer than ECHO_GATEWAY_MAX_END_SILENCE_MS (1800)


def _voice_head_s(audio: np.ndarray) -> float:
    """Seconds of near-silence before the first voiced window (voice_tail_s of the reversed clip)."""
    return voice_tail_s(float_to_pcm16(audio[::-1]), RATE)


@dataclass
class TwoPart:
    kind: str
    first: str
    second: str
    head: np.ndarray  # 16 kHz float: LEAD_S of silence, then the first half
    rest: np.ndarray  # the second half
    p_complete: float = float("nan")  # Smart Turn on the first half plus the trigger silence, offline

    def clip(self, pause_s: float) -> tuple[bytes, float, float]:
        """The turn with ``pause_s`` of silence between the voice of the two halves: (pcm, where the
        second half's voice starts, where the voice ends), offsets in seconds."""
        tail, lead = voice_tail_s(float_to_pcm16(self.head), RATE), _voice_head_s(self.rest)
        gap = np.zeros(max(0, int((pause_s - tail - lead) * RATE)), np.float32)
        audio = np.concatenate([self.head, gap, self.rest])
        second_at = (len(self.head) + len(gap)) / RATE + lead
        return float_to_pcm16(audio), second_at, len(audio) / RATE - voice_tail_s(float_to_pcm16(audio), RATE)


def build_two_parts(
    incomplete: list[tuple[str, str]], complete: list[tuple[str, str]], whisper: Any, turn_model: Any
) -> list[TwoPart]:
    """The three kinds of two-part turn; a sentence Whisper cannot cut cleanly is left out, said so."""
    parts: list[TwoPart] = []
    for a, b in incomplete:
        head = pcm16_to_float(speech_pcm(a, lead_s=LEAD_S))
        parts.append(TwoPart(KINDS[0], a, b, head, pcm16_to_float(speech_pcm(b, lead_s=0.0))))
        try:
            head, rest = split_after(whisper, f"{a} {b}", a, back_off_s=CUT_BACK_OFF_S)
        except ValueError as e:
            print(f"  left out of '{KINDS[1]}': {e}", flush=True)
            continue
        parts.append(TwoPart(KINDS[1], a, b, head, rest))
    for a, b in complete:
        head = pcm16_to_float(speech_pcm(a, lead_s=LEAD_S))
        parts.append(TwoPart(KINDS[2], a, b, head, pcm16_to_float(speech_pcm(b, lead_s=0.0))))
    trigger = np.zeros(int(TRIGGER_SILENCE_S * RATE), np.float32)
    for part in parts:
        part.p_complete = turn_model.probability(np.concatenate([part.head, trigger]))
    return parts


@dataclass
class Turn:
    sent_at: float  # perf_counter() when the clip's first byte was sent
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def stops_ms(self) -> list[float]:
        return [float(e["at_ms"]) for e in self.of("speech.stopped")]

    def partial_before_first_stop(self) -> str:
        """The last transcript.partial before the first speech.stopped: the words the gateway had."""
        text = ""
        for e in self.events:
            if e["type"] == "speech.stopped":
                break
            if e["type"] == "transcript.partial":
                text = e["text"]
        return text


async def _read(client: VoiceClient, turn: Turn) -> None:
    while True:
        item = await client.receive(timeout=600)
        if not isinstance(item, bytes):
            turn.events.append(item.raw)
            if item.raw["type"] == "connection.closed":
                return


async def _until(turn: Turn, done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            got = [e["type"] for e in turn.events]
            raise TimeoutError(f"no {what} within {timeout:g} s; events: {got}")
        await asyncio.sleep(0.02)


async def drive(url: str, pcm: bytes, voice_end_s: float) -> Turn:
    """One turn in its own session: the clip in real time, then silence until the gateway ends the
    turn at the end of the voice (at most MAX_TAIL_S), its finals, and session.end (which stops the
    reply: only the end of the turn is measured here)."""
    async with VoiceClient(url) as client:
        await client.start(RATE)  # playback realtime: a reply lasts while a real client plays it
        turn = Turn(sent_at=time.perf_counter())
        reader = asyncio.create_task(_read(client, turn))
        try:
            await client.stream_audio(pcm, RATE)
            silence, tail_s = b"\0" * int(RATE * 0.1) * 2, 0.0
            while tail_s < MAX_TAIL_S and not any(
                at >= 1000 * voice_end_s - END_MARGIN_MS for at in turn.stops_ms()
            ):
                await client.stream_audio(silence, RATE)
                tail_s += 0.1

            def finals_in() -> bool:  # every ended utterance gets a final, or an STT error
                return len(turn.of("transcript.final")) + len(turn.of("error")) >= len(turn.stops_ms())

            await _until(turn, finals_in, 60, "final transcript")
            await client.send({"type": "session.end"})
            await _until(turn, lambda: bool(turn.of("session.ended")), 60, "session.ended")
        finally:
            reader.cancel()
    return turn


@dataclass
class TwoPartResult:
    part: TwoPart
    pause_s: float
    ended_at_pause: bool  # the gateway ended the turn (speech.stopped) before the second half began
    taken_back_ms: float | None  # that turn's reply was taken back ("continued"): ms of it heard
    cut_in_second: bool  # the gateway ended the turn inside the second half, before its end
    partial: str  # what the gateway's transcript said when it ended the turn first
    stops_ms: list[float]
    second_at_ms: float

    @property
    def split(self) -> bool:
        """Half the question was answered on its own: the turn ended at the pause and its reply was
        not taken back when the user went on."""
        return self.ended_at_pause and self.taken_back_ms is None

    @property
    def false_start(self) -> bool:
        """Taken back, but only after the user had heard the start of the reply to the first half."""
        return bool(self.taken_back_ms)


async def run_two_parts(url: str, parts: list[TwoPart], pauses: tuple[float, ...]) -> list[TwoPartResult]:
    results = []
    total = len(parts) * len(pauses)
    for pause in pauses:
        for part in parts:
            pcm, second_at, voice_end = part.clip(pause)
            turn = await drive(url, pcm, voice_end)
            stops = turn.stops_ms()
            ended = any(at < 1000 * second_at for at in stops)
            inner = any(1000 * second_at <= at < 1000 * voice_end - END_MARGIN_MS for at in stops)
            done = turn.of("response.done")
            back = [float(e["audio_ms"]["heard"]) for e in done if e.get("interrupt_reason") == "continued"]
            r = TwoPartResult(
                part, pause, ended, back[0] if back else None, inner,
                turn.partial_before_first_stop(), stops, 1000 * second_at,
            )  # fmt: skip
            results.append(r)
            if r.split:
                verdict = "SPLIT"
            elif r.false_start:
                verdict = f"taken back, heard {r.taken_back_ms:.0f}ms"
            elif ended:
                verdict = "taken back"
            else:
                verdict = "cut in 2nd half" if inner else "whole"
            print(
                f"  [{len(results):3d}/{total}] pause {pause:.2f}s  {verdict:<22} {part.kind:<34} "
                f"'{part.first}' | stopped at {[round(s) for s in stops]} ms, 2nd half at "
                f"{r.second_at_ms:.0f} ms, partial '{r.partial}'",
                flush=True,
            )
    return results


@dataclass
class SingleResult:
    text: str
    endpointing_ms: float | None  # the server's timings_ms.endpointing
    client_ms: float | None  # speech.stopped received, from the moment the voice's end was sent
    early: bool  # the turn was ended before the end of the voice
    transcript: str


async def run_singles(url: str, questions: list[str]) -> list[SingleResult]:
    results = []
    for i, text in enumerate(questions):
        pcm = speech_pcm(text, lead_s=LEAD_S)
        voice_end = len(pcm) / 2 / RATE - voice_tail_s(pcm, RATE)
        turn = await drive(url, pcm, voice_end)
        stops = turn.stops_ms()
        early = any(at < 1000 * voice_end - END_MARGIN_MS for at in stops)
        done = [e for e in turn.of("response.done") if "endpointing" in e.get("timings_ms", {})]
        endpointing = float(done[-1]["timings_ms"]["endpointing"]) if done else None
        received = [e["_received_at"] for e in turn.of("speech.stopped")]
        client = 1000 * (received[-1] - turn.sent_at - voice_end) if received else None
        finals = [e["text"] for e in turn.of("transcript.final")]
        results.append(SingleResult(text, endpointing, client, early, " / ".join(finals)))
        print(
            f"  [{i + 1:2d}/{len(questions)}] endpointing {endpointing} ms, "
            f"client {client and round(client)} ms{'  ENDED EARLY' if early else ''}  "
            f"'{text}' -> '{results[-1].transcript}'",
            flush=True,
        )
    return results


def split_table(results: list[TwoPartResult], pauses: tuple[float, ...]) -> list[str]:
    lines = [
        "| first half | "
        + " | ".join(f"pause {p:g} s" for p in pauses)
        + " | split | ended at the pause | taken back, nothing heard | false start (taken back, "
        "heard ms p50) |",
        "|---|" + "---|" * (len(pauses) + 4),
    ]
    for kind in [*KINDS, "all"]:
        rows = [r for r in results if kind in ("all", r.part.kind)]
        if not rows:
            continue
        cells = []
        for p in pauses:
            at = [r for r in rows if r.pause_s == p]
            cells.append(f"{sum(r.split for r in at)}/{len(at)}")
        splits, ended = sum(r.split for r in rows), sum(r.ended_at_pause for r in rows)
        silent = sum(r.taken_back_ms == 0.0 for r in rows)
        heard = [r.taken_back_ms for r in rows if r.false_start and r.taken_back_ms is not None]
        p50 = f" ({percentile(heard, 0.5):.0f})" if heard else ""
        label = f"**{kind}**" if kind == "all" else kind
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {100 * splits / len(rows):.0f}% | {ended}/{len(rows)} | {silent} | {len(heard)}{p50} |"
        )
    return lines


def pair_table(results: list[TwoPartResult], threshold: float) -> list[str]:
    """Per first half: what the turn model and the words rule make of it, whether smart mode would
    end the turn at the pause if the verdict came at once (p >= threshold and the words do not stop
    mid-phrase), and where it was split."""
    lines = [
        "| first half | kind | Smart Turn p | words rule | smart ends it, instant verdict | "
        "split at pauses (s) | transcript when ended |",
        "|---|---|---|---|---|---|---|",
    ]
    seen: dict[tuple[str, str], list[TwoPartResult]] = {}
    for r in results:
        seen.setdefault((r.part.kind, r.part.first), []).append(r)
    for (kind, first), rows in seen.items():
        at = ", ".join(f"{r.pause_s:g}" for r in rows if r.split) or "none"
        heard = sorted({r.partial for r in rows if r.ended_at_pause})
        rule = "unfinished" if sounds_unfinished(first) else "-"
        ends = "yes" if rows[0].part.p_complete >= threshold and not sounds_unfinished(first) else "no"
        lines.append(
            f"| {first} | {kind} | {rows[0].part.p_complete:.2f} | {rule} | {ends} | {at} | "
            + " / ".join(f"'{h}'" + (" (unfinished)" if sounds_unfinished(h) else "") for h in heard)
            + " |"
        )
    return lines


def delay_table(label: str, results: list[SingleResult], threshold_ms: float) -> list[str]:
    server = [r.endpointing_ms for r in results if r.endpointing_ms is not None]
    client = [r.client_ms for r in results if r.client_ms is not None]
    late = sum(v > threshold_ms for v in server)

    def pct(values: list[float], q: float) -> str:
        return f"{percentile(values, q):.0f}"

    return [
        "| mode | questions | endpointing p50 ms | p90 ms | client p50 ms | p90 ms | ended early | "
        f"over {threshold_ms:g} ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| {label} | {len(server)}/{len(results)} | {pct(server, 0.5)} | {pct(server, 0.9)} | "
        f"{pct(client, 0.5)} | {pct(client, 0.9)} | {sum(r.early for r in results)} | {late} |",
    ]
