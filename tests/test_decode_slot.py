"""The STT decode slot: one decode at a time, finals before partials, no decode overlapping another."""

from __future__ import annotations

import asyncio
import threading

from services.stt.backends.decode_slot import FINAL, PARTIAL, DecodeSlot


class Gate:
    """A blocking decode that runs until released, and says on the loop when it has started."""

    def __init__(self, ran: list[str], name: str) -> None:
        self.ran, self.name = ran, name
        self.release = threading.Event()
        self.started = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def __call__(self) -> str:
        self.loop.call_soon_threadsafe(self.started.set)
        self.release.wait()
        self.ran.append(self.name)
        return self.name


async def hold(slot: DecodeSlot, priority: int, ran: list[str], name: str) -> tuple[Gate, asyncio.Task[str]]:
    """A decode of ``priority`` that has started and runs until its gate is released."""
    gate = Gate(ran, name)
    task = asyncio.create_task(slot.run(priority, gate))
    await gate.started.wait()
    return gate, task


async def test_a_waiting_final_goes_before_partials_that_waited_longer():
    slot, ran = DecodeSlot(), []
    first, running = await hold(slot, PARTIAL, ran, "first partial")
    partial = asyncio.create_task(slot.run(PARTIAL, ran.append, "second partial"))
    await asyncio.sleep(0)  # let it queue
    final = asyncio.create_task(slot.run(FINAL, ran.append, "final"))
    await asyncio.sleep(0)
    assert slot.waiting == 2
    first.release.set()
    await asyncio.gather(running, partial, final)
    assert ran == ["first partial", "final", "second partial"]
    assert slot.granted == [PARTIAL, FINAL, PARTIAL]
    assert not slot.busy


async def test_a_partial_cancelled_while_waiting_never_runs():
    slot, ran = DecodeSlot(), []
    first, running = await hold(slot, FINAL, ran, "first")
    dropped = asyncio.create_task(slot.run(PARTIAL, ran.append, "dropped"))
    await asyncio.sleep(0)
    dropped.cancel()
    first.release.set()
    await running
    await slot.idle()
    assert dropped.cancelled()
    assert ran == ["first"] and slot.granted == [FINAL]


async def test_a_cancelled_running_decode_keeps_the_slot_until_its_thread_ends():
    # CTranslate2 cannot stop a decode: the next one must not start beside it.
    slot, ran = DecodeSlot(), []
    partial, running = await hold(slot, PARTIAL, ran, "partial")
    running.cancel()
    final = asyncio.create_task(slot.run(FINAL, ran.append, "final"))
    await asyncio.sleep(0)
    assert slot.busy and slot.waiting == 1 and ran == []
    partial.release.set()
    await final
    assert ran == ["partial", "final"]
    assert running.cancelled()


async def test_a_waiter_cancelled_as_it_is_granted_passes_the_slot_on():
    slot, ran = DecodeSlot(), []
    await slot._acquire(FINAL)  # a decode holds the slot
    granted_then_cancelled = asyncio.create_task(slot._acquire(FINAL))
    last = asyncio.create_task(slot.run(PARTIAL, ran.append, "last"))
    await asyncio.sleep(0)
    slot._release()  # the decode ends: the slot goes to the first waiter...
    granted_then_cancelled.cancel()  # ...cancelled before it could resume
    await last
    assert ran == ["last"]
    assert granted_then_cancelled.cancelled() and not slot.busy


async def test_idle_returns_once_every_decode_is_done():
    slot, ran = DecodeSlot(), []
    await slot.idle()  # nothing to wait for
    gate, running = await hold(slot, PARTIAL, ran, "decode")
    waiter = asyncio.create_task(slot.idle())
    await asyncio.sleep(0)
    assert not waiter.done()
    gate.release.set()
    await waiter
    assert ran == ["decode"] and running.done()
