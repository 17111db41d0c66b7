"""Per-user quotas (gateway/quotas.py) on the turn engine, under the virtual clock: each limit gives its
code with retry_after_s, the refused turn is neither answered nor stored, and the session goes on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from echo.v1 import storage_pb2
from gateway.events import ErrorCode, ProtocolError
from gateway.quotas import Quotas
from gateway.turn.states import State
from tests.gateway.harness import Fakes, Harness
from tests.virtual_clock import run_virtual

NEAR_MIDNIGHT = datetime(2026, 12, 2, 23, 59, 0, tzinfo=UTC)  # 60 s before the UTC day ends


def at(moment: datetime):
    return lambda: moment


async def typed(h: Harness, text: str) -> dict:
    h.send({"type": "input.text", "text": text})
    return await h.next("response.done")


def test_turns_over_the_per_minute_limit_are_refused_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        async with Harness(quotas=at(NEAR_MIDNIGHT), turns_per_minute=2) as h:
            h.llm.script("One.", "Two.", "Three.")
            started = await h.start()
            first_at = asyncio.get_running_loop().time()
            await typed(h, "first")
            await typed(h, "second")
            h.send({"type": "input.text", "text": "third"})
            error = await h.next("error")
            assert error["code"] == ErrorCode.RATE_LIMITED
            elapsed = h.engine.inbox._loop.time() - first_at  # type: ignore[attr-defined]
            assert error["turn_id"] and error["retry_after_s"] == pytest.approx(60 - elapsed, abs=0.01)
            assert h.engine.state is State.IDLE and not h.of("response.done")[2:]
            await h.idle(error["retry_after_s"])
            assert (await typed(h, "fourth"))["text"] == "Three."
            h.send({"type": "session.end"})
            await h.next("session.ended")
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [t.client_input for t in turns] == ["first", "second", "fourth"]

    run_virtual(scenario())


def test_a_refused_spoken_turn_is_transcribed_but_not_answered() -> None:
    async def scenario() -> None:
        async with Harness(quotas=at(NEAR_MIDNIGHT), turns_per_minute=1) as h:
            h.stt.script("what time is it")
            h.llm.script("Noon.")
            await h.start()
            await typed(h, "hello")
            await h.say(1.0)
            final = await h.next("transcript.final")
            error = await h.next("error")
            assert error["code"] == ErrorCode.RATE_LIMITED and error["turn_id"] == final["turn_id"]
            assert 0 < error["retry_after_s"] <= 60
            assert len(h.of("response.done")) == 1 and h.engine.state is State.IDLE

    run_virtual(scenario())


def test_daily_spend_ends_at_midnight_utc() -> None:
    fakes = Fakes()
    fakes.llm.price_per_1k = 1.0  # dollars per 1K tokens: one turn costs a few cents

    async def scenario() -> None:
        async with Harness(fakes, quotas=at(NEAR_MIDNIGHT), spend_usd_per_day=0.001) as h:
            h.llm.script("A reply that costs money.", "Never sent.")
            await h.start()
            done = await typed(h, "spend something")
            assert done["usage"]["total_cost_usd"] > 0.001
            h.send({"type": "input.text", "text": "and more"})
            error = await h.next("error")
            assert error["code"] == ErrorCode.QUOTA_EXCEEDED and error["retry_after_s"] == 60
            # The day's total is the storage service's: another gateway process sees it too.
            usage = await h.services.storage.GetUsage(
                storage_pb2.GetUsageRequest(user_id=h.user_id, day="2026-12-02"), timeout=5
            )
            assert usage.cost_usd == pytest.approx(done["usage"]["total_cost_usd"]) and usage.turns == 1
            other = Quotas(h.settings, h.services.storage, at(NEAR_MIDNIGHT))  # type: ignore[arg-type]
            with pytest.raises(ProtocolError) as refused:
                await other.admit_turn(h.user_id, spoken=False)
            assert refused.value.code is ErrorCode.QUOTA_EXCEEDED
            # Another user's day is their own.
            await other.admit_turn("someone-else", spoken=False)

    run_virtual(scenario())


def test_daily_audio_stops_spoken_turns_but_not_typed_ones() -> None:
    async def scenario() -> None:
        async with Harness(quotas=at(NEAR_MIDNIGHT), audio_s_per_day=1.0) as h:
            h.stt.script("a long question", "another question")
            h.llm.script("First answer.", "Typed answer.")
            await h.start()
            await h.say(1.5)
            await h.next("response.done")
            await h.say(1.0)
            await h.next("transcript.final")
            error = await h.next("error")
            assert error["code"] == ErrorCode.QUOTA_EXCEEDED and "typed turns still work" in error["message"]
            assert (await typed(h, "typing instead"))["text"] == "Typed answer."
            # The refused turn cost no model work, not even a speculative reply.
            assert [r.messages[-1].content for r in h.llm.requests] == ["a long question", "typing instead"]

    run_virtual(scenario())


def test_concurrent_sessions_per_user() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            quotas = Quotas(h.settings.__class__(sessions_per_user=2), h.services.storage)  # type: ignore[arg-type]
            quotas.open_session("alice")
            quotas.open_session("alice")
            with pytest.raises(ProtocolError) as refused:
                quotas.open_session("alice")
            assert refused.value.code is ErrorCode.RATE_LIMITED and refused.value.retry_after_s
            quotas.open_session("bob")  # per user
            quotas.close_session("alice")
            quotas.open_session("alice")

    run_virtual(scenario())


def test_a_limit_of_zero_is_off() -> None:
    async def scenario() -> None:
        async with Harness(quotas=at(NEAR_MIDNIGHT), turns_per_minute=0, spend_usd_per_day=0) as h:
            h.llm.script(*[f"Reply {i}." for i in range(25)])
            await h.start()
            for i in range(25):
                await typed(h, f"turn {i}")
            assert not h.of("error")

    run_virtual(scenario())
