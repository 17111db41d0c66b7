"""Run a blocking iterator (model inference) in a worker thread and consume it asynchronously."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(produce: Callable[[], Iterator[T]], ahead: int = 2) -> AsyncIterator[T]:
    """Yield ``produce()``'s items without blocking the event loop.

    The worker computes at most ``ahead`` items beyond what the consumer has taken, and when the
    consumer stops early (the RPC was cancelled, e.g. by a barge-in) it stops before computing its
    next item, so no orphaned inference keeps burning CPU.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()
    slots = threading.Semaphore(ahead)

    def post(item: object, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone; nobody is listening any more
            stop.set()

    def worker() -> None:
        try:
            items = produce()
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    break
                post(item)
        except BaseException as e:
            post(_DONE, e)
        else:
            post(_DONE)

    threading.Thread(target=worker, name="echo-inference", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            slots.release()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
