"""Run a blocking iterator (model inference) in a worker thread and consume it asynchronously."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(produce: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Yield ``produce()``'s items without blocking the event loop.

    When the consumer stops early (the RPC was cancelled, e.g. by a barge-in), the worker stops
    before computing its next item, so no orphaned inference keeps burning CPU.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def post(item: object, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone; nobody is listening any more
            stop.set()

    def worker() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return
                post(item)
        except BaseException as e:
            post(_DONE, e)
        else:
            post(_DONE)

    threading.Thread(target=worker, name="echo-inference", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
