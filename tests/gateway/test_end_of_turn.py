"""Semantic end of turn (ECHO_GATEWAY_TURN_DETECTION=smart): at each short pause the turn model hears
the turn; complete ends it at once, incomplete listens on up to the long maximum silence."""

from __future__ import annotations

import pytest

from gateway.turn.endpointing import sounds_unfinished
from tests.gateway.harness import Harness, ScriptedTurnModel, quiet, tone
from tests.virtual_clock import run_virtual

SMART = {"turn_detection": "smart", "turn_pause_ms": 200, "max_end_silence_ms": 1800}


def test_a_complete_turn_ends_at_the_short_pause() -> None:
    async def scenario() -> None:
        model = ScriptedTurnModel(0.9)
        async with Harness(turn_model=model, **SMART) as h:
            h.stt.script("what is the capital of france")
            await h.start()
            await h.stream(tone(1.5) + quiet(2.0))
            stopped = await h.next("speech.stopped")
            done = await h.next("response.done")
            ended_after = h.at(lambda e: e["type"] == "speech.stopped") - stopped["at_ms"] / 1000
            assert 0.2 <= ended_after < 0.3  # the pause, not the 1.8 s maximum
            assert 200 <= done["timings_ms"]["endpointing"] < 300
            assert len(model.heard_s) == 1 and 1.5 <= model.heard_s[0] < 2.0  # the turn so far

    run_virtual(scenario())


def test_an_incomplete_pause_does_not_end_the_turn() -> None:
    async def scenario() -> None:
        model = ScriptedTurnModel(0.1, 0.95)
        async with Harness(turn_model=model, **SMART) as h:
            h.stt.script("can you tell me how tall the eiffel tower is")
            await h.start()
            # A 0.8 s pause mid-question: longer than the 500 ms silence that would have ended it.
            await h.stream(tone(1.0) + quiet(0.8) + tone(1.0) + quiet(1.0))
            done = await h.next("response.done")
            assert done["text"] == "You said: can you tell me how tall the eiffel tower is."
            assert len(h.of("transcript.final")) == 1 and len(h.of("speech.stopped")) == 1
            assert len(model.heard_s) == 2  # asked at each pause

    run_virtual(scenario())


def test_an_incomplete_turn_still_ends_at_the_maximum_silence() -> None:
    async def scenario() -> None:
        model = ScriptedTurnModel(0.1)
        async with Harness(turn_model=model, **SMART) as h:
            await h.start()
            await h.stream(tone(1.0) + quiet(2.5))
            stopped = await h.next("speech.stopped")
            ended_after = h.at(lambda e: e["type"] == "speech.stopped") - stopped["at_ms"] / 1000
            assert ended_after >= 1.75  # 1.8 s, in 32 ms VAD frames, heard a 20 ms frame ahead
            await h.next("response.done")

    run_virtual(scenario())


def test_silence_detection_never_asks_the_model() -> None:
    async def scenario() -> None:
        model = ScriptedTurnModel()
        async with Harness(turn_model=model, turn_detection="silence") as h:
            await h.start()
            await h.stream(tone(1.0) + quiet(1.0))
            await h.next("response.done")
            assert model.heard_s == []

    run_virtual(scenario())


def test_a_turn_whose_words_stop_mid_phrase_waits_although_it_sounds_complete() -> None:
    async def scenario() -> None:
        model = ScriptedTurnModel(0.95)  # Smart Turn hears "...the capital of." spoken falling as complete
        async with Harness(turn_model=model, **SMART) as h:
            h.stt.script("i would like to know the capital of")
            await h.start()
            await h.stream(tone(2.0) + quiet(2.5))
            stopped = await h.next("speech.stopped")
            ended_after = h.at(lambda e: e["type"] == "speech.stopped") - stopped["at_ms"] / 1000
            assert ended_after >= 1.75  # only the maximum silence ended it

    run_virtual(scenario())


@pytest.mark.parametrize(
    ("words", "unfinished"),
    [
        ("I would like to know the capital of.", True),
        ("Can you tell me", True),
        ("I was wondering if", True),
        ("What is the capital of France?", False),
        ("how tall the eiffel tower is", False),
        ("Can you help me", False),
        ("", False),
    ],
)
def test_words_that_stop_mid_phrase(words: str, unfinished: bool) -> None:
    assert sounds_unfinished(words) is unfinished
