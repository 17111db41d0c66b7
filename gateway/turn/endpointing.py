"""End of turn: silence alone, or a turn model's verdict on how the turn sounds at a short pause.

With a turn model (Smart Turn), the VAD's own end-of-turn silence is the long maximum
(``max_end_silence_ms``): at each short pause (``turn_pause_ms``) the model hears the turn so far and
a "complete" ends it at once, while an "incomplete" keeps listening, so a question spoken with a pause
in the middle is not answered by halves.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.turn.listener import Offload, Utterance
from services.common.audio import pcm16_to_float

# Smart Turn hears a fragment spoken with a falling voice ("Can you tell me.") as complete; a transcript
# that stops on one of these words is a turn still going, whatever it sounds like.
DANGLING_WORDS = frozenset(
    "a an the of to for from with about at in on by and or but because if than whose my your our their"
    " his her its".split()
)
DANGLING_PAIRS = frozenset(
    {("tell", "me"), ("show", "me"), ("let", "me"), ("know", "if"), ("wondering", "if")}
)


def sounds_unfinished(transcript: str) -> bool:
    """Whether the words so far stop mid-phrase (punctuation aside: Whisper ends fragments with '.')."""
    words = re.findall(r"[a-z']+", transcript.lower())
    return bool(words) and (words[-1] in DANGLING_WORDS or tuple(words[-2:]) in DANGLING_PAIRS)


class TurnModel(Protocol):
    def probability(self, audio: np.ndarray) -> float:
        """How likely the turn is complete, from 16 kHz float mono audio of it (blocking: offloaded)."""
        ...


@dataclass
class Verdict:
    utterance_id: str
    voice_frame: int  # the VAD's last voiced frame the model heard: newer voice makes it stale
    probability: float
    complete: bool


class Endpointer:
    def __init__(
        self, model: TurnModel | None, threshold: float, signal: Callable[[Any], None], offload: Offload
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.signal = signal
        self.offload = offload
        self.asked: tuple[str, int] | None = None  # (utterance, voice frame) last sent to the model
        self.verdict: Verdict | None = None  # the model's latest answer
        self.task: asyncio.Task[None] | None = None

    def complete(self, utterance: Utterance | None, voice_frame: int, transcript: str) -> bool:
        """The turn is over: the model heard this very pause as complete, and the words agree."""
        v = self.verdict
        if (
            v is None
            or utterance is None
            or (v.utterance_id, v.voice_frame) != (utterance.turn_id, voice_frame)
        ):
            return False
        return v.complete and not sounds_unfinished(transcript)

    def ask(self, utterance: Utterance, voice_frame: int) -> None:
        """Once per pause: does the turn sound finished?"""
        if self.model is None or self.asked == (utterance.turn_id, voice_frame):
            return
        self.asked = (utterance.turn_id, voice_frame)
        self.task = asyncio.create_task(self._judge(utterance.turn_id, bytes(utterance.audio), voice_frame))

    async def _judge(self, utterance_id: str, pcm: bytes, voice_frame: int) -> None:
        assert self.model is not None
        probability = float(await self.offload(self.model.probability, pcm16_to_float(pcm)))
        self.signal(Verdict(utterance_id, voice_frame, probability, probability >= self.threshold))

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
