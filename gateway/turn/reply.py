"""One reply's data, and the signals the collaborators send the engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway import events as ev
from gateway.turn.playout import Playout

if TYPE_CHECKING:
    from gateway.turn.listener import Utterance
    from gateway.turn.output import ReplyChannel


# interrupt_reason of a reply taken back because the user went on with its turn (not stored: its
# words open the turn still being spoken).
CONTINUED = "continued"


@dataclass
class Reply:
    turn_id: str
    user_text: str
    input_audio: bytes  # 16 kHz mono pcm_s16le; empty for input.text
    speech_end: float  # loop time the user stopped speaking (or the text arrived)
    playout: Playout
    # Where the user's voice ended, as an offset in the session's input audio; None for input.text.
    voice_ended_at_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The VAD's last voiced frame when a speculative reply began; None for a reply to a finished turn.
    speculated_at_frame: int | None = None
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    tts_characters: int = 0
    tts_cost_usd: float = 0.0
    audio: bytearray = field(default_factory=bytearray)
    # (sentence, start_ms, end_ms) on the reply's audio timeline, for finding what was heard.
    segments: list[tuple[str, float, float]] = field(default_factory=list)
    interrupt_reason: str = ""  # set when the reply is interrupted
    error: str = ""  # the error code that ended it
    in_flight: set[str] = field(default_factory=set)  # downstream calls running now: "llm", "tts"
    cancelled_calls: list[str] = field(default_factory=list)
    spoken: str = ""  # fixed when the reply ends: the text of what the user heard
    heard_ms: float = 0.0  # fixed when the reply ends
    task: asyncio.Task[None] | None = None
    channel: ReplyChannel | None = None  # where its output goes (gateway.turn.output)
    # Fixed at creation: a retried save reuses it, and storage dedupes on (conversation, timestamp).
    stamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def interrupted(self) -> bool:
        return bool(self.interrupt_reason)

    @property
    def taken_back(self) -> bool:
        return self.interrupt_reason == CONTINUED

    @property
    def speculative(self) -> bool:
        return self.speculated_at_frame is not None

    def continued_by(self, speech_at_s: float, window_s: float) -> bool:
        """Voice starting at ``speech_at_s`` (input-audio offset) is more of this spoken turn."""
        return self.voice_ended_at_s is not None and speech_at_s - self.voice_ended_at_s <= window_s

    def spoken_text(self, heard_ms: float) -> str:
        """What the user heard: everything when the reply completed, else the words of the sentences
        played up to ``heard_ms`` (a sentence cut mid-way keeps the share of its words played)."""
        if not self.interrupted:
            return self.text.strip()
        parts: list[str] = []
        for sentence, start, end in self.segments:
            if heard_ms >= end:
                parts.append(sentence)
            elif heard_ms > start:
                words = sentence.split()
                parts.append(" ".join(words[: int(len(words) * (heard_ms - start) / (end - start))]))
        return " ".join(p for p in parts if p).strip()

    def done_event(self) -> ev.ResponseDone:
        """response.done: what the user heard of it (fixed now), usage, timings."""
        sent = self.playout.sent_ms
        self.heard_ms = self.playout.heard_ms() if self.interrupted else sent
        self.spoken = self.spoken_text(self.heard_ms)
        return ev.ResponseDone(
            turn_id=self.turn_id,
            text=self.spoken,
            interrupted=self.interrupted,
            interrupt_reason=self.interrupt_reason or None,
            cancelled_calls=self.cancelled_calls if self.interrupted else None,
            usage=self.usage_summary(),
            timings_ms=self.timings,
            audio_ms=ev.AudioMs(sent=round(sent, 1), heard=round(self.heard_ms, 1)),
            error=self.error or None,
            speculative=True if self.speculative else None,
        )

    def usage_summary(self) -> dict[str, Any]:
        """The LLM's tokens and cost, the TTS's characters and cost, and their sum."""
        llm_cost = float(self.usage.get("cost_usd", 0.0))
        return {
            **self.usage,
            "tts_characters": self.tts_characters,
            "tts_cost_usd": round(self.tts_cost_usd, 8),
            "total_cost_usd": round(llm_cost + self.tts_cost_usd, 8),
        }


@dataclass
class Carried:
    """Earlier parts of the turn the user is still speaking: their words and their audio."""

    texts: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    def add(self, text: str, audio: bytes | bytearray) -> None:
        self.texts.append(text)
        self.audio += audio

    def join(self, text: str) -> str:
        return " ".join([*self.texts, text]).strip()

    def take(self, text: str, audio: bytes | bytearray) -> tuple[str, bytes]:
        """The whole turn, this last part included; nothing is carried any more."""
        whole = self.join(text), bytes(self.audio + audio)
        self.texts, self.audio = [], bytearray()
        return whole


# Signals: what the collaborators tell the engine, through its queue.


@dataclass
class Partial:
    utterance_id: str
    text: str
    stable: bool  # a full-quality decode made because the audio went quiet


@dataclass
class Final:
    utterance: Utterance
    text: str
    decode_ms: float
    error: tuple[str, str] | None = None  # (code, message) when STT failed


@dataclass
class AudioOut:
    reply: Reply


@dataclass
class ReplyDone:
    reply: Reply
