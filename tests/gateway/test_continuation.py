"""Continuation: voice that comes back within continue_window_ms of the end of a turn is more of that
turn. Its reply is taken back (response.done, interrupt_reason "continued", not stored) and the whole
turn is answered once, with all of its words and audio; later voice is a barge-in."""

from __future__ import annotations

from gateway.turn.states import State
from tests.gateway.harness import Harness, quiet, slow_llm
from tests.virtual_clock import run_virtual

SECOND = 2 * 16000  # bytes of 16 kHz pcm_s16le in one second


def test_voice_soon_after_the_turn_ended_continues_it_while_thinking() -> None:
    async def scenario() -> None:
        async with Harness(fakes=slow_llm(), speculate=False) as h:
            h.stt.script("how far is the moon", "in kilometres please")
            h.llm.script("Never heard.", "About 384,400 kilometres.")
            started = await h.start()
            await h.say(1.0, then_quiet=0.8)  # ended at 500 ms of silence, then voice again at 0.8 s
            first = await h.next("transcript.final")
            assert h.engine.state is State.THINKING
            await h.say(1.2, then_quiet=0.6)
            taken_back = await h.next("response.done")
            assert taken_back["turn_id"] == first["turn_id"]
            assert taken_back["interrupt_reason"] == "continued" and taken_back["text"] == ""
            assert taken_back["cancelled_calls"] == ["llm"]
            done = await h.next("response.done")
            assert done["text"] == "About 384,400 kilometres." and not done["interrupted"]
            assert h.llm.requests[-1].messages[-1].content == "how far is the moon in kilometres please"
            await h.idle(0.1)  # the save
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [(t.client_input, t.agent_response) for t in turns] == [
                ("how far is the moon in kilometres please", "About 384,400 kilometres.")
            ]
            # The fake keeps objects per (owner, key).
            audio = h.storage.audio.objects[(turns[0].user_id, turns[0].input_audio_key)][0]
            assert len(audio) > 2.2 * SECOND  # both parts' voice (a WAV of them)

    run_virtual(scenario())


def test_voice_soon_after_the_turn_ended_takes_back_a_reply_already_playing() -> None:
    async def scenario() -> None:
        async with Harness(speculate=False) as h:
            h.stt.script("set a timer for ten minutes", "no make that fifteen")
            h.llm.script("Timer set for ten minutes.", "Timer set for fifteen minutes.")
            started = await h.start()
            await h.say(1.0, then_quiet=0.0)
            await h.stream(quiet(1.2))  # the reply starts playing inside the pause
            assert h.engine.state is State.SPEAKING
            await h.say(1.0, then_quiet=0.7)
            taken_back = await h.next("response.done")
            assert taken_back["interrupt_reason"] == "continued"
            assert taken_back["audio_ms"]["sent"] > 0 and taken_back["cancelled_calls"] == []
            done = await h.next("response.done")
            assert done["text"] == "Timer set for fifteen minutes."
            request = h.llm.requests[-1].messages
            assert [m.role for m in request] == ["system", "user"]  # the taken-back reply is not history
            assert request[-1].content == "set a timer for ten minutes no make that fifteen"
            await h.idle(3.0)  # played, then saved
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [t.client_input for t in turns] == ["set a timer for ten minutes no make that fifteen"]

    run_virtual(scenario())


def test_a_continuation_with_nothing_intelligible_still_answers_the_words_before_it() -> None:
    async def scenario() -> None:
        async with Harness(fakes=slow_llm(), speculate=False) as h:
            h.stt.script("what time is it", "")
            h.llm.script("Never heard.", "It is noon.")
            await h.start()
            await h.say(1.0, then_quiet=0.8)
            await h.next("transcript.final")
            await h.say(0.5, then_quiet=0.7)  # a cough
            assert (await h.next("response.done"))["interrupt_reason"] == "continued"
            done = await h.next("response.done")
            assert done["text"] == "It is noon."
            assert h.llm.requests[-1].messages[-1].content == "what time is it"

    run_virtual(scenario())


def test_voice_after_the_window_is_a_barge_in_and_a_zero_window_turns_continuation_off() -> None:
    async def scenario(window_ms: int, then_quiet: float, reason: str) -> None:
        async with Harness(fakes=slow_llm(), speculate=False, continue_window_ms=window_ms) as h:
            h.stt.script("first question", "second question")
            await h.start()
            await h.say(1.0, then_quiet=then_quiet)
            await h.next("transcript.final")
            await h.say(1.0)
            assert (await h.next("response.done"))["interrupt_reason"] == reason
            await h.next("response.done")
            asked = "second question" if reason == "barge_in" else "first question second question"
            assert h.llm.requests[-1].messages[-1].content == asked

    run_virtual(scenario(1500, 1.6, "barge_in"))
    run_virtual(scenario(0, 0.8, "barge_in"))
    run_virtual(scenario(1500, 0.8, "continued"))
