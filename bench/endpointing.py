"""Choose the end-of-turn silence: how often each setting cuts a user off mid-turn, and what it costs.

    python bench/endpointing.py

Multi-sentence turns are synthesised (Piper, deterministic) with a pause between sentences drawn
from the range people leave inside one turn (0.1-0.7 s, plus the voice's own ~0.25 s of tail).
For each end-of-turn silence the streaming VAD (the gateway's, Silero) runs over every turn and we
count turns it split in two. The endpointing delay is the silence itself: each setting adds exactly
that to voice-to-voice latency, so the best setting is the shortest one that rarely splits a turn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def main() -> None:
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


if __name__ == "__main__":
    main()
