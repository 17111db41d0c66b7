"""One decode at a time, by priority: a waiting final transcript goes before waiting partials.

A decode runs in a worker thread and cannot be interrupted once started (CTranslate2 has no cancel), so
the slot stays taken until that thread is done, even when the task that asked for it was cancelled:
otherwise a cancelled partial would leave its thread running beside the next decode. Running two decodes
side by side would not help either: each already uses every configured CPU thread, so the final would
only share the cores with the partial instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

FINAL = 0  # a final transcript (or the speculative decode that may become one): the answer waits on it
PARTIAL = 1  # a partial: display only, replaced by the next one


class DecodeSlot:
    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.granted: list[int] = []  # priorities in the order decodes started (for tests and logs)
        self._free = asyncio.Event()
        self._free.set()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiting if not f.done())

    async def idle(self) -> None:
        """Until no decode runs or waits (tests step a stream in lockstep with its decodes this way)."""
        while self._busy:
            await self._free.wait()

    async def run(
        self,
        priority: int,
        fn: Callable[..., T],
        *args: Any,
        on_start: Callable[[], None] | None = None,
    ) -> T:
        """Run ``fn(*args)`` in a thread once the slot is free and no better-priority decode waits.
        ``on_start`` is called on the event loop when it starts. Cancelled while waiting, the decode never
        runs; cancelled while running, its thread finishes and the slot is freed only then."""
        await self._acquire(priority)
        self.granted.append(priority)
        try:
            if on_start is not None:
                on_start()
            job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        except BaseException:
            self._release()
            raise
        job.add_done_callback(lambda _: self._release())
        return await asyncio.shield(job)

    async def _acquire(self, priority: int) -> None:
        if not self._busy and not self.waiting:
            self._busy = True
            self._free.clear()
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # granted just as it was cancelled: pass the slot on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the slot stays busy: it is that waiter's now
                return
        self._busy = False
        self._free.set()
