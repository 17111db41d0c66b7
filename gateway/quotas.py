"""Per-user limits: concurrent sessions, turns and REST requests per rolling minute, spoken audio and
spend per UTC day (docs/protocol.md, "Quotas").

Sessions and per-minute rates are counted by this gateway process: behind a load balancer that spreads
one user's connections over N gateway tasks, each task allows the limit. The daily totals are the
storage service's (AddUsage adds atomically and returns the total), so every task sees the same figures
and a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc

from echo.v1 import storage_pb2, storage_pb2_grpc
from gateway.config import GatewaySettings
from gateway.events import ErrorCode, ProtocolError
from gateway.turn.clock import now

log = logging.getLogger("echo.gateway.quotas")

WINDOW_S = 60.0
RECORD_WAIT_S = 1.0  # at most this long for the last turn's usage to be recorded (storage is slow)
SESSION_RETRY_S = 10.0  # a session limit frees up when one of the user's sessions ends: try soon


def utc_now() -> datetime:
    return datetime.now(UTC)


class RollingWindow:
    """At most ``limit`` events per user in any WINDOW_S, on the event loop's clock (virtual in tests)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, user_id: str) -> float | None:
        """None when admitted (and counted); else the seconds until one more is allowed."""
        if self.limit <= 0:
            return None
        t = now()
        events = self.events[user_id]
        while events and t - events[0] >= WINDOW_S:
            events.popleft()
        if len(events) >= self.limit:
            return round(WINDOW_S - (t - events[0]), 3)
        events.append(t)
        return None


class Quotas:
    def __init__(
        self,
        settings: GatewaySettings,
        storage: storage_pb2_grpc.StorageStub,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self.sessions: dict[str, int] = defaultdict(int)
        self.turns = RollingWindow(settings.turns_per_minute)
        self.requests = RollingWindow(settings.requests_per_minute)
        self.daily: dict[str, storage_pb2.DailyUsage] = {}  # the latest total known per user, today's
        self.recording: set[asyncio.Task[None]] = set()

    # ----- sessions and rates (this process) ---------------------------------------------------

    def open_session(self, user_id: str) -> None:
        limit = self.settings.sessions_per_user
        if limit > 0 and self.sessions[user_id] >= limit:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"{limit} voice sessions are already open for this user (the limit)",
                retry_after_s=SESSION_RETRY_S,
            )
        self.sessions[user_id] += 1

    def close_session(self, user_id: str) -> None:
        self.sessions[user_id] -= 1
        if self.sessions[user_id] <= 0:
            del self.sessions[user_id]

    def admit_request(self, user_id: str) -> None:
        wait = self.requests.admit(user_id)
        if wait is not None:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.settings.requests_per_minute} requests in a minute",
                retry_after_s=wait,
            )

    # ----- turns ---------------------------------------------------------------------------------

    def spent(self, user_id: str, spoken: bool) -> bool:
        """Whether today's known figures already refuse such a turn (no storage call: for speculation)."""
        known = self.daily.get(user_id)
        if known is None or known.day != self._day():
            return False
        return self._over_spend(known) or (spoken and self._over_audio(known))

    def _over_spend(self, usage: storage_pb2.DailyUsage) -> bool:
        limit = self.settings.spend_usd_per_day
        return limit > 0 and usage.cost_usd >= limit

    def _over_audio(self, usage: storage_pb2.DailyUsage) -> bool:
        limit = self.settings.audio_s_per_day
        return limit > 0 and usage.audio_s >= limit

    async def admit_turn(self, user_id: str, spoken: bool, turn_id: str | None = None) -> None:
        """Raises rate_limited or quota_exceeded (with retry_after_s) for a turn that must not run."""
        settings = self.settings
        if self.recording:  # the turns just finished count before this one is let in
            await asyncio.wait(self.recording, timeout=RECORD_WAIT_S)
        usage = await self._today(user_id)
        midnight = self._seconds_to_midnight()
        if self._over_spend(usage):
            raise ProtocolError(
                ErrorCode.QUOTA_EXCEEDED,
                f"today's spend of ${usage.cost_usd:.4f} reached the daily ${settings.spend_usd_per_day:g}",
                turn_id=turn_id,
                retry_after_s=midnight,
            )
        if spoken and self._over_audio(usage):
            raise ProtocolError(
                ErrorCode.QUOTA_EXCEEDED,
                f"today's {usage.audio_s:.0f} s of speech reached the daily {settings.audio_s_per_day:g} s"
                " (typed turns still work)",
                turn_id=turn_id,
                retry_after_s=midnight,
            )
        wait = self.turns.admit(user_id)
        if wait is not None:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {settings.turns_per_minute} turns in a minute",
                turn_id=turn_id,
                retry_after_s=wait,
            )

    def record_turn(self, user_id: str, audio_s: float, cost_usd: float) -> None:
        """Add a finished turn to the user's day, in the background (the next turn is not held up)."""
        task = asyncio.create_task(self._record(user_id, audio_s, cost_usd))
        self.recording.add(task)
        task.add_done_callback(self.recording.discard)

    async def _record(self, user_id: str, audio_s: float, cost_usd: float) -> None:
        add = storage_pb2.DailyUsage(
            user_id=user_id, day=self._day(), audio_s=audio_s, cost_usd=cost_usd, turns=1
        )
        try:
            self.daily[user_id] = await self.storage.AddUsage(add, timeout=self.settings.storage_timeout_s)
        except grpc.aio.AioRpcError as e:
            # Counted here at least, so this process still enforces the day's limits.
            log.warning("usage of user %s not recorded: %s", user_id, e.details())
            known = await self._today(user_id)
            known.audio_s += audio_s
            known.cost_usd += cost_usd
            known.turns += 1

    async def _today(self, user_id: str) -> storage_pb2.DailyUsage:
        day = self._day()
        known = self.daily.get(user_id)
        if known is not None and known.day == day:
            return known
        try:
            known = await self.storage.GetUsage(
                storage_pb2.GetUsageRequest(user_id=user_id, day=day), timeout=self.settings.storage_timeout_s
            )
        except grpc.aio.AioRpcError as e:
            # No figure from storage: the turn is not refused for it (storage errors show elsewhere).
            log.warning("usage of user %s unknown: %s", user_id, e.details())
            known = storage_pb2.DailyUsage(user_id=user_id, day=day)
        known.day = day
        self.daily[user_id] = known
        return known

    def _day(self) -> str:
        return self.clock().strftime("%Y-%m-%d")

    def _seconds_to_midnight(self) -> float:
        t = self.clock()
        midnight = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return round((midnight - t).total_seconds(), 3)

    async def close(self) -> None:
        if self.recording:
            await asyncio.gather(*self.recording, return_exceptions=True)
