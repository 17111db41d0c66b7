"""The llama.cpp context kept warm: one evaluation at a time, generations before prefills, and the
prompt tokens already in the context reused.

llama.cpp keeps the tokens it last evaluated (the previous prompt and reply) in its KV cache. A prompt
that starts with the same tokens needs only the rest evaluated. ``Prefill`` fills the cache with the
conversation so far while the user is still speaking, so the Generate that follows the final transcript
evaluates only its last few tokens. A prefill is best effort: a generation always goes first, and a
prefill running when one arrives stops at its next chunk of tokens.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PrefillJob:
    """One prefill's tokens and its outcome, shared between the event loop and the worker thread."""

    tokens: list[int]
    # Set when a generation or a newer prefill wants the model: the worker stops at its next chunk.
    stop: threading.Event = field(default_factory=threading.Event)
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    preempted: bool = False


class ModelSlot:
    """Who may evaluate on the llama.cpp context now (it is not thread-safe): one holder at a time.
    Generations wait in arrival order. At most one prefill waits, the newest one: a newer prefill, or
    a generation arriving, makes a waiting prefill stale (it is answered False and never runs), and
    tells a prefill that holds the slot to stop early."""

    def __init__(self) -> None:
        self.busy = False
        self._generations: deque[asyncio.Future[bool]] = deque()
        self._waiting_prefill: tuple[asyncio.Future[bool], threading.Event] | None = None
        self._holder_stop: threading.Event | None = None  # the stop flag of the prefill holding the slot

    def _make_room(self) -> None:
        """A newcomer wants the model: the waiting prefill is stale, the running one stops early."""
        if self._waiting_prefill is not None:
            future, stop = self._waiting_prefill
            self._waiting_prefill = None
            stop.set()
            if not future.done():
                future.set_result(False)
        if self._holder_stop is not None:
            self._holder_stop.set()

    async def acquire(self) -> None:
        """For a generation: waits only for the holder (a prefill stops at its next chunk) and for the
        generations that came first."""
        self._make_room()
        if not self.busy:
            self.busy = True
            return
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._generations.append(future)
        await self._wait(future)

    async def acquire_for_prefill(self, stop: threading.Event) -> bool:
        """For a prefill: True once it holds the slot; False when it went stale while waiting."""
        self._make_room()
        if not self.busy:
            self.busy, self._holder_stop = True, stop
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting_prefill = (future, stop)
        return await self._wait(future)

    async def _wait(self, future: asyncio.Future[bool]) -> bool:
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.release()  # handed over just as the caller left: pass it on
            raise

    def release(self) -> None:
        """Hand the slot to the first generation waiting, else to the waiting prefill, else free it."""
        self._holder_stop = None
        while self._generations:
            future = self._generations.popleft()
            if not future.done():
                future.set_result(True)
                return
        if self._waiting_prefill is not None:
            (future, stop), self._waiting_prefill = self._waiting_prefill, None
            if not future.done():
                self._holder_stop = stop
                future.set_result(True)
                return
        self.busy = False

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The slot for a generation's priority, for work done on the event loop (closing the model)."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def keep_prefix(llm: Any, tokens: Sequence[int], limit: int) -> int:
    """Worker thread: trim the context to its longest prefix that ``tokens`` share (at most ``limit``
    tokens) and return that length; the tokens after it are the ones left to evaluate.

    llama-cpp-python's own prefix matching (``Llama.generate``) then finds exactly this prefix and
    evaluates the rest, so the count is exact. A generation passes ``limit`` = all but its last token,
    which it always re-evaluates to get fresh logits."""
    kept = min(common_prefix(llm._input_ids.tolist(), tokens), limit)
    if kept < llm.n_tokens:
        # Recurrent models cannot drop the tail of their state: start again from nothing.
        if kept == 0 or not llm._ctx.kv_cache_seq_rm(-1, kept, -1):
            llm.reset()
            return 0
        llm.n_tokens = kept
    return kept


def run_prefill(llm: Any, job: PrefillJob, chunk_tokens: int) -> None:
    """Worker thread: evaluate the job's tokens that the context lacks, ``chunk_tokens`` at a time, so
    that a generation arriving meanwhile waits for one chunk at most."""
    if job.stop.is_set():
        job.preempted = True
        return
    cached = common_prefix(llm._input_ids.tolist(), job.tokens)
    if cached >= len(job.tokens):
        # All there already (a repeated prefill); what follows it in the context may still be useful.
        job.cached_tokens = len(job.tokens)
        return
    job.cached_tokens = position = keep_prefix(llm, job.tokens, cached)
    while position < len(job.tokens):
        if job.stop.is_set():
            job.preempted = True
            return
        chunk = job.tokens[position : position + chunk_tokens]
        llm.eval(chunk)
        position += len(chunk)
        job.evaluated_tokens += len(chunk)
