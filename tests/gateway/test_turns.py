"""A user's turn, start to finish: speech, partials, the end of the turn, the reply, memory."""

from __future__ import annotations

import itertools

from gateway.turn.states import State
from services.common.capabilities import BackendCapabilities
from tests.gateway.harness import Fakes, Harness, quiet, tone
from tests.virtual_clock import run_virtual


def test_a_spoken_turn_is_ended_by_the_vad_answered_and_saved() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.script("what is the capital of france")
            h.llm.script("Paris is the capital. It is in France.")
            started = await h.start()
            await h.say(1.5, then_quiet=1.0)
            stopped = await h.next("speech.stopped")
            final = await h.next("transcript.final")
            done = await h.next("response.done")
            # The VAD ended the turn: 500 ms of silence after the voice, no commit was sent.
            assert 1450 <= stopped["at_ms"] <= 1550
            assert h.at(lambda e: e["type"] == "speech.stopped") - stopped["at_ms"] / 1000 >= 0.48
            assert final["text"] == "what is the capital of france"
            assert done["text"] == "Paris is the capital. It is in France." and not done["interrupted"]
            assert done["timings_ms"]["endpointing"] >= 500
            assert done["audio_ms"]["sent"] == done["audio_ms"]["heard"] > 0
            # The LLM saw the system prompt and the user's words; the turn is stored with its audio.
            request = h.llm.requests[-1]
            assert [m.role for m in request.messages] == ["system", "user"]
            assert request.messages[-1].content == "what is the capital of france"
            h.send({"type": "session.end"})
            ended = await h.next("session.ended")
            assert ended["unsaved_turns"] == 0
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [(t.client_input, t.agent_response) for t in turns] == [
                ("what is the capital of france", "Paris is the capital. It is in France.")
            ]
            assert turns[0].input_audio_key and turns[0].output_audio_key
            assert h.engine.state is State.ENDED

    run_virtual(scenario())


def test_partials_arrive_while_speaking_and_the_next_turn_sees_the_history() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.script("tell me a joke", "another one")
            h.llm.script("Why not.", "Sure.")
            await h.start()
            await h.say(2.0)
            await h.next("response.done")
            partials = h.of("transcript.partial")
            assert len(partials) >= 3 and partials[0]["text"] != partials[-1]["text"]
            assert h.at(lambda e: e["type"] == "transcript.partial") < h.at(
                lambda e: e["type"] == "speech.stopped"
            )
            await h.say(1.0)
            await h.next("response.done", text="Sure.")
            contents = [(m.role, m.content) for m in h.llm.requests[-1].messages[1:]]
            assert contents == [
                ("user", "tell me a joke"),
                ("assistant", "Why not."),
                ("user", "another one"),
            ]

    run_virtual(scenario())


def test_a_speculative_reply_becomes_the_reply_and_answers_sooner() -> None:
    async def scenario() -> dict[str, float]:
        timings = {}
        for speculate in (True, False):
            async with Harness(speculate=speculate) as h:
                h.stt.script("how tall is the eiffel tower")
                h.llm.script("About three hundred metres.")
                await h.start()
                await h.say(1.5)
                done = await h.next("response.done")
                assert done.get("speculative") is (True if speculate else None)
                assert done["text"] == "About three hundred metres."
                timings[str(speculate)] = done["timings_ms"]["voice_to_voice"]
                h.send({"type": "session.end"})
                ended = await h.next("session.ended")
                assert ended["speculation"] == (
                    {"started": 1, "used": 1, "discarded": 0}
                    if speculate
                    else {"started": 0, "used": 0, "discarded": 0}
                )
                assert len(h.llm.requests) == 1  # the speculative generation was the only one
        return timings

    timings = run_virtual(scenario())
    # The LLM ran during the end-of-turn silence: its first-token delay no longer adds to the wait.
    assert timings["True"] < timings["False"]


def test_a_pause_discards_the_speculation_and_the_client_never_sees_it() -> None:
    async def scenario() -> None:
        async with Harness(end_silence_ms=800) as h:
            h.stt.script("i would like to know the capital of canada")
            h.llm.script("HELD BACK.", "Ottawa.")
            await h.start()
            # A 400 ms pause: long enough for a stable partial (and a speculation), too short to end the turn.
            await h.stream(tone(1.0) + quiet(0.4) + tone(1.0) + quiet(1.2))
            done = await h.next("response.done")
            assert done["text"] == "Ottawa."
            assert not any("HELD" in e.get("delta", "") for e in h.events)
            # The first speculation was discarded at the pause; the second, on the whole turn, was used.
            assert vars(h.engine.speculation) == {"started": 2, "used": 1, "discarded": 1}
            assert len(h.audio()) == round(len("Ottawa.") * 0.05 * 16000) * 2  # none of the held-back audio
            assert len(h.of("transcript.final")) == 1  # one turn, not two

    run_virtual(scenario())


def test_a_final_that_differs_from_the_speculation_replaces_it() -> None:
    async def scenario() -> None:
        async with Harness(fakes=Fakes()) as h:
            h.stt.script("turn on the lights")
            h.llm.script("HELD BACK.", "Lights on.")
            await h.start()
            await h.stream(tone(1.0) + quiet(0.3))
            await h.next("transcript.partial")
            # The STT's final differs from its stable partial (a late correction).
            h.stt.settings.default_text = "unused"
            original = h.engine.on_final

            async def corrected(final):  # type: ignore[no-untyped-def]
                final.text = "turn on the light"
                await original(final)

            h.engine.on_final = corrected  # type: ignore[method-assign]
            await h.stream(quiet(1.0))
            done = await h.next("response.done")
            assert done["text"] == "Lights on." and not done.get("speculative")
            assert h.engine.speculation.discarded == 1

    run_virtual(scenario())


def test_without_stable_partials_the_engine_speculates_on_the_last_partial_at_a_pause() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.capabilities = BackendCapabilities(streaming=True, stable_partials=False)
            h.stt.settings.quiet_tail_s = 60.0  # this STT never sends a stable partial
            h.stt.script("what time is it")
            h.llm.script("Noon.")
            await h.start()
            assert h.engine.session.stable_partials is False
            await h.say(1.5)
            done = await h.next("response.done")
            assert done.get("speculative") is True and done["text"] == "Noon."
            texts = [e["text"] for e in h.of("transcript.partial")]
            assert len(texts) == len(set(texts))  # the pause sent no partial twice

    run_virtual(scenario())


def test_an_earlier_part_is_carried_into_the_turn_the_user_is_still_speaking() -> None:
    async def scenario() -> None:
        async with Harness(speculate=False) as h:
            h.stt.settings.decode_delay_s = (
                0.5  # the first part's final is still coming when the user goes on
            )
            h.stt.script("can you tell me", "how tall the eiffel tower is")
            await h.start()
            await h.stream(tone(1.0) + quiet(0.6) + tone(1.5) + quiet(1.2))
            done = await h.next("response.done")
            assert h.llm.requests[-1].messages[-1].content == "can you tell me how tall the eiffel tower is"
            assert done["text"] == "You said: can you tell me how tall the eiffel tower is."
            assert len(h.of("response.done")) == 1

    run_virtual(scenario())


def test_typed_input_and_commit() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.llm.script("Hi there.", "Committed.")
            h.stt.script("push to talk")
            await h.start()
            h.send({"type": "input.text", "text": "hello"})
            done = await h.next("response.done")
            assert done["text"] == "Hi there." and "endpointing" not in done["timings_ms"]
            # input.commit ends the turn while the user is still speaking (push-to-talk).
            await h.stream(tone(0.6))
            h.send({"type": "input.commit"})
            final = await h.next("transcript.final")
            assert final["text"] == "push to talk"
            assert not h.of("speech.stopped")
            await h.next("response.done", text="Committed.")
            # A commit after the VAD's own end of turn, with only silence since, does nothing.
            await h.say(1.0)
            await h.next("response.done")
            h.send({"type": "input.commit"})
            await h.idle(1.0)
            assert not h.of("error")
            h.send({"type": "input.commit"})
            error = await h.next("error")
            assert error["code"] == "empty_input"

    run_virtual(scenario())


def test_commit_without_vad_speech_uses_the_pending_audio() -> None:
    async def scenario() -> None:
        async with Harness(vad_threshold=1.1) as h:  # a VAD that never fires
            h.stt.script("quiet words")
            await h.start()
            await h.stream(tone(1.0))
            h.send({"type": "input.commit"})
            final = await h.next("transcript.final")
            assert final["text"] == "quiet words"
            await h.next("response.done")

    run_virtual(scenario())


def test_nothing_intelligible_gets_no_reply() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.script("")
            await h.start()
            await h.say(0.5)
            final = await h.next("transcript.final")
            assert final["text"] == ""
            await h.idle(2.0)
            assert not h.of("response.done") and not h.llm.requests
            assert h.engine.state is State.IDLE

    run_virtual(scenario())


def test_stereo_44k_input_is_converted_for_the_vad_and_stt() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.stt.script("stereo")
            await h.start(audio={"sample_rate": 44100, "channels": 2})
            await h.stream(tone(1.0, 44100, 2) + quiet(1.0, 44100, 2), rate=44100, channels=2)
            final = await h.next("transcript.final")
            stopped = h.of("speech.stopped")[0]
            assert final["text"] == "stereo" and 950 <= stopped["at_ms"] <= 1050

    run_virtual(scenario())


def test_the_turn_so_far_is_prefilled_while_the_user_speaks() -> None:
    async def scenario() -> None:
        async with Harness(speculate=False) as h:
            h.stt.script("what is the capital of france")
            await h.start()
            await h.say(2.0)
            done = await h.next("response.done")
            # First the system prompt with an empty user message (at session start), then the words.
            assert h.llm.prefills[0].messages[-1].content == ""
            prefilled = [r.messages[-1].content for r in h.llm.prefills[1:] if r.messages[-1].content]
            # Only words that will not change (all but a partial's last), growing, never the same twice.
            assert prefilled and prefilled[0] != "what is the capital of france"
            assert all(b.startswith(a) for a, b in itertools.pairwise(prefilled))
            assert len(prefilled) == len(set(prefilled))
            assert [m.role for m in h.llm.prefills[1].messages] == ["system", "user"]
            assert "prompt_eval_tokens" in done["usage"] and "prompt_cached_tokens" in done["usage"]
            await h.idle(0.1)  # after the reply: the history, warm for the next turn
            assert [m.content for m in h.llm.prefills[-1].messages[1:]] == [
                "what is the capital of france",
                done["text"],
                "",
            ]

    run_virtual(scenario())


def test_prefill_can_be_turned_off() -> None:
    async def scenario() -> None:
        async with Harness(prefill=False) as h:
            await h.start()
            await h.say(2.0)
            await h.next("response.done")
            assert h.llm.prefills == []

    run_virtual(scenario())
