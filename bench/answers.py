"""Do Echo's answers stay right? 20 spoken factual questions through the whole local stack, scored.

    python bench/answers.py                              # spoken, default LLM: start the stack, ask, stop it
    python bench/answers.py --model qwen2.5-coder-1.5b   # the same with another LLM (ECHO_LLM_MODEL)
    python bench/answers.py --text                       # typed turns (input.text): no STT, a quick check
    python bench/answers.py --url ws://127.0.0.1:8080/v1/voice   # ask a running stack

Each question is synthesised with Piper (tests/speech.py, deterministic) and sent in real time as a voice
turn through /v1/voice, in a fresh session (no history from earlier questions), with reply audio not
played out (playback "none"). A reply is correct when it contains one of the question's accepted answers
as whole words, case-insensitively ("Canberra"; "366" or "three hundred sixty-six"); a reply that also
names wrong answers still counts, so the table also says whether the first sentence alone has it (a
rambling reply that lists guesses scores there less). One warm-up turn is not counted.

Prints a line per question as it goes, then a table (per question: the transcript, the reply truncated,
correct or not, and in the first sentence or not), the scores, how many transcripts matched the question
word for word (so STT errors are told apart from LLM errors), and the means of the LLM's first-token time,
its reply time (request to last token) and, for spoken turns, voice-to-voice at the client (end of the
voice to first reply audio).

Other ECHO_* variables in the environment reach the started stack as they are (e.g.
ECHO_GATEWAY_TEMPERATURE=0 for repeatable replies; the default 0.7 is what users hear).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.latency import LEAD_S, percentile, start_stack, voice_tail_s, wait_ready  # noqa: E402
from echo_voice.client import TurnResult, VoiceClient  # noqa: E402
from services.common import models  # noqa: E402
from tests.speech import speech_pcm, words  # noqa: E402

# (question, accepted answers): any one of them, as whole words, makes the reply correct.
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of Australia?", ("Canberra",)),
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    (
        "How many days are there in a leap year?",
        ("366", "three hundred sixty-six", "three hundred and sixty-six"),
    ),
    ("What is the largest planet in our solar system?", ("Jupiter",)),
    ("What is the boiling point of water in Celsius?", ("100", "one hundred", "a hundred")),
    ("How many continents are there?", ("seven", "7")),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci")),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("How many legs does a spider have?", ("eight", "8")),
    ("Which planet is known as the red planet?", ("Mars",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("How many minutes are there in an hour?", ("sixty", "60")),
    ("What is the tallest mountain in the world?", ("Everest",)),
    ("Who was the first person to walk on the moon?", ("Armstrong",)),
    ("In which country are the pyramids of Giza?", ("Egypt",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("How many sides does a hexagon have?", ("six", "6")),
    ("What gas do plants take in from the air?", ("carbon dioxide", "CO2")),
    ("What is the freezing point of water in Fahrenheit?", ("32", "thirty-two")),
]
WARMUP_QUESTION = "Hello, how are you today?"
REPLY_CHARS = 60  # of each reply in the table


def _normal(text: str) -> str:
    # "Sixty-six", "sixty six" and "sixty  six" are one answer; so are "1,000" and "1000".
    text = text.lower().replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return " ".join(text.split())


def is_correct(reply: str, accepted: tuple[str, ...]) -> bool:
    """Whether ``reply`` contains one of the ``accepted`` answers as whole words (case-insensitive)."""
    said = _normal(reply)
    return any(re.search(rf"(?<![a-z0-9]){re.escape(_normal(a))}(?![a-z0-9])", said) for a in accepted)


def first_sentence(reply: str) -> str:
    return re.split(r"(?<=[.!?])\s+", reply.strip(), maxsplit=1)[0]


@dataclass
class Answer:
    question: str
    transcript: str
    reply: str
    correct: bool
    correct_first: bool  # the first sentence alone has the answer: what a rambling reply says first
    heard_right: bool  # the transcript has the question's words, no more, no fewer
    llm_first_token_ms: float | None
    llm_total_ms: float | None
    client_voice_to_voice_ms: float | None  # spoken turns only
    error: str = ""


async def ask(url: str, question: str, spoken: bool) -> tuple[TurnResult, float | None]:
    """One question in a fresh session; the turn's result, and client voice-to-voice (spoken turns)."""
    async with VoiceClient(url) as client:
        await client.start(16000, output_audio={"playback": "none"})
        v2v = None
        if spoken:
            clip = speech_pcm(question, 16000, lead_s=LEAD_S)
            # A turn the VAD has not ended 4 s after the clip is committed by the client, not waited on.
            result = await client.talk(clip, 16000, realtime=True, silence_s=2.0, commit_grace_s=4.0)
            if result.first_audio_at is not None and result.speech_sent_at is not None:
                # From the end of the voice, not of the clip (Piper leaves a quiet tail after the words).
                tail = voice_tail_s(clip, 16000)
                v2v = 1000 * (result.first_audio_at - result.speech_sent_at + tail)
        else:
            await client.send({"type": "input.text", "text": question})
            result = await client.collect_turn()
            result.transcript = result.transcript or question
        await client.send({"type": "session.end"})
        await client.expect("session.ended")
    return result, v2v


async def run_questions(url: str, spoken: bool, rounds: int, warmup: int) -> list[Answer]:
    for _ in range(warmup):
        await ask(url, WARMUP_QUESTION, spoken)
    answers: list[Answer] = []
    total = rounds * len(QUESTIONS)
    for i in range(total):
        question, accepted = QUESTIONS[i % len(QUESTIONS)]
        result, v2v = await ask(url, question, spoken)
        timings = result.done.get("timings_ms", {})
        error = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in result.errors)
        answer = Answer(
            question=question,
            transcript=result.transcript,
            reply=result.reply_text,
            correct=is_correct(result.reply_text, accepted),
            correct_first=is_correct(first_sentence(result.reply_text), accepted),
            heard_right=words(result.transcript) == words(question),
            llm_first_token_ms=timings.get("llm_first_token"),
            llm_total_ms=timings.get("llm_total"),
            client_voice_to_voice_ms=v2v,
            error=error,
        )
        answers.append(answer)
        mark = "right" if answer.correct else "WRONG"
        first = f"{answer.llm_first_token_ms:.0f} ms" if answer.llm_first_token_ms is not None else "-"
        print(
            f"  [{i + 1:2d}/{total}] {mark}  first token {first:>7}  '{answer.transcript}' -> "
            f"'{answer.reply[:REPLY_CHARS]}'" + (f"  ({error})" if error else ""),
            flush=True,
        )
    return answers


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= width else text[: width - 1] + "…"


def _mean(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    return f"{statistics.mean(present):.0f} ms (p50 {percentile(present, 0.5):.0f})"


def report(answers: list[Answer], model: str, spoken: bool) -> None:
    kind = "spoken (Piper voice, real time)" if spoken else "typed (input.text)"
    print(f"\nmodel: {model}; {kind} turns\n")
    print(f"| {'#':>2} | {'transcript':<50} | {'reply':<{REPLY_CHARS}} | correct | in 1st sentence |")
    print(f"|{'-' * 4}|{'-' * 52}|{'-' * (REPLY_CHARS + 2)}|---------|-----------------|")
    for i, a in enumerate(answers, 1):
        reply = a.reply or (f"(error: {a.error})" if a.error else "(no reply)")
        print(
            f"| {i:>2} | {_cell(a.transcript, 50):<50} | {_cell(reply, REPLY_CHARS):<{REPLY_CHARS}} | "
            f"{'yes' if a.correct else 'no':<7} | {'yes' if a.correct_first else 'no':<15} |"
        )
    right = sum(a.correct for a in answers)
    first = sum(a.correct_first for a in answers)
    n = max(1, len(answers))
    print(f"\nscore: {right}/{len(answers)} ({100 * right / n:.0f} %)")
    print(f"answered in the first sentence: {first}/{len(answers)} ({100 * first / n:.0f} %)")
    if spoken:
        heard = sum(a.heard_right for a in answers)
        print(f"transcripts with the question's words exactly: {heard}/{len(answers)}")
    print(f"mean LLM first token: {_mean([a.llm_first_token_ms for a in answers])}")
    print(f"mean LLM reply time (request to last token): {_mean([a.llm_total_ms for a in answers])}")
    if spoken:
        print(f"mean voice-to-voice (client): {_mean([a.client_voice_to_voice_ms for a in answers])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway's WebSocket URL (default: start the stack)")
    parser.add_argument(
        "--model", help="LLM for the started stack: a model name or .gguf path (sets ECHO_LLM_MODEL)"
    )
    parser.add_argument("--text", action="store_true", help="typed turns (input.text): skip speech and STT")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the 20 questions")
    parser.add_argument("--warmup", type=int, default=1, help="turns not counted")
    args = parser.parse_args()
    if args.url and args.model:
        parser.error("--model applies to the stack this script starts; a running stack keeps its own LLM")

    if args.model:
        os.environ["ECHO_LLM_MODEL"] = args.model
    model = args.model or os.environ.get("ECHO_LLM_MODEL") or f"{models.DEFAULTS['llm']} (the default)"
    if args.url:
        model = "the running stack's LLM"
    url = args.url or "ws://127.0.0.1:8080/v1/voice"
    http_base = url.replace("ws://", "http://").removesuffix("/v1/voice")
    proc = None
    if not args.url:
        print(f"starting the stack with LLM {model} (echo-voice run; log in bench/stack.log)...", flush=True)
        proc = start_stack()
    try:
        wait_ready(http_base, proc)
        answers = asyncio.run(run_questions(url, not args.text, args.rounds, args.warmup))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    report(answers, model, not args.text)


if __name__ == "__main__":
    main()
