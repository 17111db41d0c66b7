"""End of turn: silence alone, or a turn model's verdict on how the turn sounds at a short pause.

With a turn model (Smart Turn), the VAD's own end-of-turn silence is the long maximum
(``max_end_silence_ms``): at each short pause (``turn_pause_ms``) the model hears the turn so far and
a "complete" ends it at once, while an "incomplete" keeps listening, so a question spoken with a pause
in the middle is not answered by halves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.turn.listener import Offload, Utterance
from services.common.audio import pcm16_to_float


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
        self.task: asyncio.Task[None] | None = None

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
