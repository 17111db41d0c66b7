"""An asyncio event loop on virtual time, for in-process tests of pacing without wall-clock waits."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """Time stands still while any callback is ready, and jumps straight to the next timer when every
    task is waiting: ``asyncio.sleep(5)`` returns at once, with ``loop.time()`` 5 s later. Only for code
    that waits on timers and other tasks, not on sockets or threads."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        real_select = self._selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None:
                # Nothing ready and no timer: every task waits on something that can never happen here.
                raise RuntimeError("deadlock: every task is waiting and no timer is scheduled")
            self._now += timeout
            return real_select(0)

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
