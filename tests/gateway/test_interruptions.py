"""Interruptions: barge-in and response.cancel in every state of a reply, and memory that keeps only
what the user heard (by the client's playback position, or by the real-time playout clock)."""

from __future__ import annotations

from gateway.turn.states import State
from tests.gateway.harness import Fakes, Harness, slow_llm, tone
from tests.virtual_clock import run_virtual

TWO_SENTENCES = "One two three four. Five six seven eight."  # 19 + 21 characters: 950 + 1050 ms of tone


def test_barge_in_while_thinking_cancels_the_llm_and_keeps_nothing() -> None:
    async def scenario() -> None:
        async with Harness(fakes=slow_llm()) as h:
            h.stt.script("first question", "second question")
            h.llm.script("Never heard.", "Answer two.")
            started = await h.start()
            await h.say(1.0, then_quiet=1.7)  # longer than continue_window_ms: the next voice barges in
            await h.next("transcript.final")
            assert h.engine.state is State.THINKING
            await h.say(1.0)
            done = await h.next("response.done")
            assert done["interrupted"] and done["interrupt_reason"] == "barge_in"
            assert done["cancelled_calls"] == ["llm"] and done["text"] == ""
            assert h.llm.cancelled == 1
            second = await h.next("response.done")
            assert second["text"] == "Answer two."
            await h.idle(0.1)  # the save of the second turn
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [(t.client_input, t.agent_response, t.interrupted) for t in turns] == [
                ("first question", "", True),
                ("second question", "Answer two.", False),
            ]

    run_virtual(scenario())


def test_barge_in_while_speaking_keeps_what_the_playout_clock_says_was_heard() -> None:
    async def scenario() -> None:
        async with Harness(speculate=False) as h:
            h.stt.script("count for me", "stop")
            h.llm.script(TWO_SENTENCES, "Stopped.")
            started = await h.start()
            await h.say(1.0, then_quiet=1.6)  # past continue_window_ms: the next voice barges in
            await h.next("response.audio.start")
            audio_from = h.at(lambda e: e["type"] == "response.audio.start")
            await h.idle(1.0)
            assert h.engine.state is State.SPEAKING
            await h.stream(tone(0.3))  # the user speaks over Echo
            done = await h.next("response.done")
            interrupted_at = h.at(lambda e: e["type"] == "response.done")
            heard = done["audio_ms"]["heard"]
            assert done["interrupt_reason"] == "barge_in" and done["cancelled_calls"] == []
            assert abs(heard - (interrupted_at - audio_from) * 1000) < 1.0
            assert done["audio_ms"]["sent"] == 2000.0 and 950 < heard < 2000
            words = int(4 * (heard - 950) / 1050)
            assert done["text"] == " ".join(["One two three four.", *"Five six seven eight.".split()[:words]])
            await h.stream(tone(0.5) + bytes(32000))
            await h.next("response.done", text="Stopped.")
            history = h.llm.requests[-1].messages
            assert history[2].content == done["text"] + "…"  # the next turn's context: only what was heard
            turns = (await h.conversation(started["conversation_id"])).turns
            assert turns[0].agent_response == done["text"] and turns[0].interrupted

    run_virtual(scenario())


def test_playback_position_decides_what_was_heard_and_its_end_ends_the_reply() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.llm.script(TWO_SENTENCES, TWO_SENTENCES)
            await h.start()
            h.send({"type": "input.text", "text": "count"})
            start = await h.next("response.audio.start")
            h.send({"type": "playback.position", "turn_id": start["turn_id"], "ms": 600})
            await h.idle(1.5)  # the playout clock says 1.5 s were played; the client says 0.6 s
            h.send({"type": "response.cancel"})
            done = await h.next("response.done")
            assert done["interrupt_reason"] == "client_cancel"
            assert done["audio_ms"]["heard"] == 600.0 and done["text"] == "One two"
            # A position at the end of the audio ends the reply at once, before the playout clock.
            h.send({"type": "input.text", "text": "again"})
            start = await h.next("response.audio.start")
            await h.next("response.audio.end")
            sent_at = h.at(lambda e: e["type"] == "response.audio.end" and e["turn_id"] == start["turn_id"])
            h.send({"type": "playback.position", "turn_id": start["turn_id"], "ms": 2000})
            done = await h.next("response.done")
            assert not done["interrupted"] and done["text"] == TWO_SENTENCES
            assert (
                h.at(lambda e: e["type"] == "response.done" and e["turn_id"] == start["turn_id"]) == sent_at
            )

    run_virtual(scenario())


def test_a_reply_lasts_until_played_and_a_client_that_plays_nothing_hears_everything() -> None:
    async def scenario() -> None:
        for playback, lasts in (("realtime", 2.0), ("none", 0.0)):
            async with Harness() as h:
                h.llm.script(TWO_SENTENCES)
                await h.start(output_audio={"playback": playback})
                h.send({"type": "input.text", "text": "count"})
                await h.next("response.audio.start")
                audio_from = h.at(lambda e: e["type"] == "response.audio.start")
                done = await h.next("response.done")
                ended = h.at(lambda e: e["type"] == "response.done")
                assert abs(ended - audio_from - lasts) < 0.25, playback
                assert done["audio_ms"]["heard"] == done["audio_ms"]["sent"] == 2000.0

    run_virtual(scenario())


def test_cancel_while_the_llm_still_streams_cancels_it_and_cancel_when_idle_does_nothing() -> None:
    async def scenario() -> None:
        fakes = Fakes()
        fakes.llm.token_interval_s = 0.5
        async with Harness(fakes=fakes) as h:
            h.llm.script("Short start. Then a long tail of many many words that keep coming slowly.")
            await h.start()
            h.send({"type": "response.cancel"})  # nothing to cancel: no event, no state change
            await h.idle(0.5)
            assert not h.events[1:] and h.engine.state is State.IDLE
            h.send({"type": "input.text", "text": "go"})
            await h.next("response.audio.start")
            h.send({"type": "response.cancel"})
            done = await h.next("response.done")
            assert done["interrupt_reason"] == "client_cancel" and "llm" in done["cancelled_calls"]
            assert h.llm.cancelled == 1 and h.engine.state is State.IDLE
            assert h.of("response.audio.end")  # the audio stream the client was told about is closed

    run_virtual(scenario())


def test_typed_input_interrupts_the_reply_as_new_input() -> None:
    async def scenario() -> None:
        async with Harness(fakes=slow_llm()) as h:
            h.llm.script("First.", "Second.")
            await h.start()
            h.send({"type": "input.text", "text": "one"})
            await h.idle(1.0)
            h.send({"type": "input.text", "text": "two"})
            first = await h.next("response.done")
            assert first["interrupt_reason"] == "new_input"
            assert (await h.next("response.done"))["text"] == "Second."

    run_virtual(scenario())


def test_with_barge_in_off_the_reply_goes_on_and_the_next_turn_follows() -> None:
    async def scenario() -> None:
        async with Harness(barge_in=False, speculate=False) as h:
            h.stt.script("count", "and then")
            h.llm.script(TWO_SENTENCES, "Then this.")
            await h.start()
            await h.say(1.0, then_quiet=0.6)
            await h.next("response.audio.start")
            await h.stream(tone(0.3))  # speech over the reply does not stop it
            first = await h.next("response.done")
            assert not first["interrupted"] and first["text"] == TWO_SENTENCES
            await h.stream(bytes(32000))
            await h.next("response.done", text="Then this.")

    run_virtual(scenario())


def test_with_barge_in_off_a_turn_ended_during_the_reply_replaces_it() -> None:
    async def scenario() -> None:
        async with Harness(barge_in=False, speculate=False) as h:
            h.stt.script("count", "never mind")
            h.llm.script(TWO_SENTENCES * 3, "Okay.")
            await h.start()
            await h.say(1.0, then_quiet=0.6)
            await h.next("response.audio.start")
            await h.say(0.5, then_quiet=0.7)
            first = await h.next("response.done")
            assert first["interrupt_reason"] == "new_input"
            await h.next("response.done", text="Okay.")

    run_virtual(scenario())


def test_session_end_mid_reply_stores_the_interrupted_turn() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.llm.script(TWO_SENTENCES)
            started = await h.start()
            h.send({"type": "input.text", "text": "count"})
            await h.next("response.audio.start")
            await h.idle(0.5)
            h.send({"type": "session.end"})
            done = await h.next("response.done")
            ended = await h.next("session.ended")
            assert done["interrupt_reason"] == "session_end" and done["text"] == "One two"
            assert ended["unsaved_turns"] == 0 and h.engine.state is State.ENDED
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [(t.agent_response, t.interrupted) for t in turns] == [("One two", True)]

    run_virtual(scenario())


def test_a_client_that_vanishes_mid_reply_loses_no_turn() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.script("are you there")
            h.llm.script(TWO_SENTENCES)
            started = await h.start()
            await h.say(1.0, then_quiet=0.6)
            await h.next("response.audio.start")
            await h.idle(0.5)
            h.sink.fail = True  # the socket is gone: sends fail
            await h.stream(tone(0.1))
        assert h.engine.state is State.ENDED
        turns = (await h.conversation(started["conversation_id"])).turns
        assert len(turns) == 1 and turns[0].interrupted and turns[0].client_input == "are you there"
        assert '"interrupt_reason": "disconnect"' in turns[0].metadata_json

    run_virtual(scenario())
