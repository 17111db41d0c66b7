"""Voice-to-voice latency benchmark: replay spoken utterances in real time through /v1/voice.

    python bench/latency.py                 # start the local stack (default models), measure, stop it
    python bench/latency.py --url ws://127.0.0.1:8080/v1/voice   # measure a running stack

Prints one table: per stage p50/p95 (endpointing, final transcript after speech end, LLM first token,
TTS first audio), voice-to-voice at the client (end of user speech to first reply audio byte received)
and at the server, the orchestration overhead (server voice-to-voice minus the time spent waiting for
silence and inside the models), and the gateway's memory per open idle session. Then the word error
rate of each final transcript against the text spoken (bench/wer.py), mean per voice and overall: each
utterance is spoken by Piper's voice and by eSpeak NG's (``--voices``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wer import wer  # noqa: E402
from echo_voice.client import VoiceClient  # noqa: E402
from tests.speech import ESPEAK_VOICES, PIPER_VOICE, speech_pcm  # noqa: E402

UTTERANCES = [
    "What is the capital of France?",
    "Tell me a fun fact about the moon.",
    "How many days are there in a leap year?",
    "Can you suggest a name for my new dog?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "Give me one tip for sleeping better.",
    "What is two plus two?",
]
# Piper's voice answers the turns; eSpeak NG's speakers measure the transcripts' accuracy beside it.
VOICES = (PIPER_VOICE, *ESPEAK_VOICES)


LEAD_S = 0.3  # silence before the voice in each clip
VOICED_DBFS = -45.0  # a 20 ms window louder than this is voice, not the voice's quiet tail


def voice_tail_s(pcm: bytes, rate: int) -> float:
    """Seconds of near-silence after the last voiced 20 ms window of a clip: the end of speech is that
    much before the clip's last byte."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    window = int(rate * 0.02)
    for end in range(len(samples), 0, -window):
        chunk = samples[max(0, end - window) : end]
        if 20 * np.log10(np.sqrt(np.mean(chunk**2)) + 1e-12) > VOICED_DBFS:
            return (len(samples) - end) / rate
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gateway_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1/0.0.0.0 ``port`` on this machine (Linux /proc, no extra
    packages); None for a gateway elsewhere."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


async def measure_turns(
    url: str, rounds: int, warmup: int, voices: list[str]
) -> tuple[list[dict[str, float]], dict[str, list[float]], dict[str, int], list[tuple[str, str, str, float]]]:
    rows: list[dict[str, float]] = []
    # Between consecutive transcript.partials of one utterance: all of them ("partial_gap"), and those
    # received while the voice still lasted ("partial_gap_speaking": not the last one's wait for the
    # quiet-tail decode after the voice ended).
    partial_gaps: dict[str, list[float]] = {"partial_gap": [], "partial_gap_speaking": []}
    accuracy: list[tuple[str, str, str, float]] = []  # voice, text spoken, final transcript, WER
    async with VoiceClient(url) as client:
        await client.start(16000)
        spoken = [(voice, text) for voice in voices for text in UTTERANCES]
        clips = [speech_pcm(text, 16000, lead_s=LEAD_S, voice=voice) for voice, text in spoken]
        tails = [voice_tail_s(clip, 16000) for clip in clips]
        for i in range(warmup + rounds * len(clips)):
            clip, tail_s = clips[i % len(clips)], tails[i % len(clips)]
            voice, text = spoken[i % len(clips)]
            result = await client.talk(clip, 16000, realtime=True, silence_s=2.0)
            if not result.done or result.errors:
                print(f"turn {i}: errors {result.errors}", file=sys.stderr)
                continue
            if i < warmup:
                continue
            t = dict(result.done["timings_ms"])
            t["speculative"] = 1.0 if result.done.get("speculative") else 0.0
            assert result.first_audio_at is not None and result.speech_sent_at is not None
            # From the end of the voice, not of the clip (Piper leaves a quiet tail after the words).
            t["client_voice_to_voice"] = 1000 * (result.first_audio_at - result.speech_sent_at + tail_s)
            # What is left after waiting for silence, the transcript, the first sentence and its audio:
            # the gateway's own hand-offs. Only meaningful when the stages ran one after another (a
            # speculative reply overlaps them with the silence).
            if not t["speculative"]:
                t["overhead"] = t["voice_to_voice"] - (
                    t["endpointing"] + t["stt"] + t["llm_first_sentence"] + t["tts_first_audio"]
                )
            partials = [e["_received_at"] for e in result.events if e["type"] == "transcript.partial"]
            voice_end = result.speech_sent_at - tail_s
            speaking = [p for p in partials if p <= voice_end]
            partial_gaps["partial_gap"] += [1000 * float(g) for g in np.diff(partials)] if partials else []
            partial_gaps["partial_gap_speaking"] += (
                [1000 * float(g) for g in np.diff(speaking)] if speaking else []
            )
            if partials and result.audio_started_at is not None:
                # The clips start with LEAD_S of silence before the voice.
                t["first_partial"] = 1000 * (min(partials) - result.audio_started_at - LEAD_S)
            t["llm_transport"] = t["llm_first_token"] - t.get("llm_first_token_service", t["llm_first_token"])
            rows.append(t)
            accuracy.append((voice, text, result.transcript, wer(text, result.transcript)))
            print(
                f"  turn {len(rows):2d}: v2v {t['client_voice_to_voice']:6.0f} ms  "
                f"WER {accuracy[-1][3]:.2f}  {voice}: '{result.transcript}' -> '{result.reply_text[:60]}'",
                flush=True,
            )
        await client.send({"type": "session.end"})
        ended = await client.expect("session.ended")
    return rows, partial_gaps, ended.get("speculation", {}), accuracy


def print_accuracy(accuracy: list[tuple[str, str, str, float]]) -> None:
    """Mean WER of the final transcripts, per voice and overall."""
    print(f"\n| {'final transcript WER':<24} | {'turns':>5} | {'mean WER':>8} |")
    print(f"|{'-' * 26}|{'-' * 7}|{'-' * 10}|")
    for voice in dict.fromkeys(v for v, *_ in accuracy):
        rates = [w for v, *_, w in accuracy if v == voice]
        print(f"| {voice:<24} | {len(rates):5d} | {statistics.mean(rates):8.3f} |")
    print(f"| {'all':<24} | {len(accuracy):5d} | {statistics.mean(w for *_, w in accuracy):8.3f} |")


async def measure_idle_memory(url: str, pid: int | None, sessions: int) -> float | None:
    if pid is None:
        return None
    before = rss_kib(pid)
    clients = [VoiceClient(url) for _ in range(sessions)]
    for c in clients:
        await c.__aenter__()
        await c.start(16000)
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    for c in clients:
        await c.__aexit__(None, None, None)
    return (after - before) / sessions


def start_stack() -> subprocess.Popen[bytes]:
    log = open(ROOT / "bench" / "stack.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "echo_voice.cli", "run"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_ready(http_base: str, proc: subprocess.Popen[bytes] | None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the stack exited ({proc.returncode}); see bench/stack.log")
        try:
            if httpx.get(f"{http_base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the stack did not become ready; see bench/stack.log")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway's WebSocket URL (default: start the stack)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the utterance set")
    parser.add_argument("--warmup", type=int, default=1, help="turns not counted")
    parser.add_argument("--idle-sessions", type=int, default=50, help="sessions for the memory figure")
    parser.add_argument(
        "--voices",
        nargs="+",
        default=list(VOICES),
        help=f"speakers of the utterances (default: {' '.join(VOICES)})",
    )
    args = parser.parse_args()

    proc = None
    # The stack it starts listens where ECHO_GATEWAY_PORT says (beside another stack on the default ports).
    url = args.url or f"ws://127.0.0.1:{os.environ.get('ECHO_GATEWAY_PORT', '8080')}/v1/voice"
    http_base = url.replace("ws://", "http://").removesuffix("/v1/voice")
    if not args.url:
        print("starting the stack (echo-voice run; log in bench/stack.log)...", flush=True)
        proc = start_stack()
    try:
        wait_ready(http_base, proc)
        rows, partial_gaps, speculation, accuracy = asyncio.run(
            measure_turns(url, args.rounds, args.warmup, args.voices)
        )
        port = int(http_base.rsplit(":", 1)[1])
        per_session = asyncio.run(measure_idle_memory(url, gateway_pid(port), args.idle_sessions))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    stages = [
        ("first transcript.partial after speech start", "first_partial"),
        ("gap between transcript.partials", "partial_gap"),
        ("  of which while the user speaks", "partial_gap_speaking"),
        ("endpointing delay (VAD silence)", "endpointing"),
        ("final transcript after speech end", "stt"),
        ("  of which STT decode after the turn ended", "stt_decode"),
        ("LLM first token", "llm_first_token"),
        ("LLM first sentence", "llm_first_sentence"),
        ("TTS first audio", "tts_first_audio"),
        ("voice-to-voice (server)", "voice_to_voice"),
        ("voice-to-voice (client)", "client_voice_to_voice"),
        ("orchestration overhead (sequential turns)", "overhead"),
        ("gRPC + queueing on the LLM call", "llm_transport"),
    ]
    speculative = sum(int(r["speculative"]) for r in rows)
    print(
        f"\n{len(rows)} turns ({speculative} answered speculatively), utterances replayed in real time, "
        f"{os.cpu_count()} CPUs"
    )
    if speculation:
        print(
            f"speculative replies (warm-up included): {speculation.get('started', 0)} started, "
            f"{speculation.get('used', 0)} used, "
            f"{speculation.get('discarded', 0)} discarded (work thrown away)"
        )
    print()
    print(f"| {'stage':<44} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|")
    for label, key in stages:
        values = partial_gaps[key] if key in partial_gaps else [r[key] for r in rows if key in r]
        print(f"| {label:<44} | {percentile(values, 0.5):7.1f} | {percentile(values, 0.95):7.1f} |")
    if per_session is not None:
        print(
            f"\ngateway memory per open idle session: {per_session:.0f} KiB ({args.idle_sessions} sessions)"
        )
    if rows:
        print(
            f"mean client voice-to-voice: {statistics.mean(r['client_voice_to_voice'] for r in rows):.0f} ms"
        )
        print_accuracy(accuracy)


if __name__ == "__main__":
    main()
