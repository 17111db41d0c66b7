"""Playout: how much of a reply's audio was sent, and how much of it the user has heard."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.turn.clock import now

# After the estimated end of playback, how long to wait for a client that reports its playback
# position (its player may lag the server's clock a little) before the reply counts as heard.
PLAYOUT_GRACE_S = 1.0
TOLERANCE_S = 1e-4  # a timer may wake a hair early; waiting again for the float remainder would spin


class Playout:
    """The client plays reply audio as it arrives, at 1x. Without its ``playback.position`` reports,
    what it has heard is estimated by a real-time playout clock kept per frame sent."""

    def __init__(self, sample_rate: int, realtime: bool) -> None:
        self.sample_rate = sample_rate
        self.realtime = realtime  # False: the client plays nothing (playback "none")
        self.sent_bytes = 0
        self.playout_end = 0.0  # loop time when a real-time player will have played all sent audio
        self.position_ms: float | None = None  # the client's last playback.position
        self.update = asyncio.Event()

    def on_sent(self, nbytes: int) -> None:
        # A real-time player starts this frame when it arrives or when the previous one ends.
        self.sent_bytes += nbytes
        self.playout_end = max(self.playout_end, now()) + nbytes / 2 / self.sample_rate

    def report(self, ms: float) -> None:
        self.position_ms = ms
        self.update.set()

    @property
    def sent_ms(self) -> float:
        return self.sent_bytes / 2 / self.sample_rate * 1000

    def heard_ms(self) -> float:
        """The client's playback position when it sent one; else what a real-time player has played
        of the audio sent; for a client that plays nothing, all of it."""
        sent = self.sent_ms
        if self.position_ms is not None:
            return min(self.position_ms, sent)
        if not self.realtime:
            return sent
        still_queued_ms = max(0.0, self.playout_end - now()) * 1000
        return max(0.0, sent - still_queued_ms)

    async def played(self) -> None:
        """Return once the client has played everything sent: by the real-time estimate, or by the
        positions it reports (which end the wait early, or extend it by a short grace)."""
        if not self.realtime or not self.sent_bytes:
            return
        grace_until = self.playout_end + PLAYOUT_GRACE_S
        while True:
            position = self.position_ms
            if position is not None and position >= self.sent_ms:
                return
            until = self.playout_end if position is None else grace_until
            if now() >= until - TOLERANCE_S:
                return
            self.update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.update.wait(), until - now())
