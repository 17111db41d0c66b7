"""Each trigger from each state it can come in: the moves the everyday scenarios do not make."""

from __future__ import annotations

from gateway.turn.engine import Disconnected
from gateway.turn.states import State
from tests.gateway.harness import Fakes, Harness, quiet, tone
from tests.virtual_clock import run_virtual


def harness(**settings: object) -> Harness:
    fakes = Fakes()
    fakes.stt.decode_delay_s = 5.0  # a final stays pending long enough to act in TRANSCRIBING
    return Harness(fakes=fakes, end_silence_ms=800, **settings)  # type: ignore[arg-type]


async def drive(h: Harness, state: State) -> None:
    """Bring a fresh session into ``state``."""
    if state is State.NEW:
        return
    await h.start()
    if state is State.USER_SPEAKING:
        await h.stream(tone(0.5))
    elif state is State.END_PENDING:
        await h.stream(tone(0.5) + quiet(0.3))  # a stable partial, then a speculation
    elif state is State.TRANSCRIBING:
        await h.stream(tone(0.5) + quiet(0.9))
    elif state is State.THINKING:
        h.llm.settings.first_token_delay_s = 3.0
        h.send({"type": "input.text", "text": "think"})
        await h.idle(0.5)
    elif state is State.SPEAKING:
        h.llm.script("One two three four. Five six seven eight.")
        h.send({"type": "input.text", "text": "speak"})
        await h.next("response.audio.start")
        await h.idle(0.01)
    assert h.engine.state is state


def test_session_end_and_disconnect_from_every_state() -> None:
    async def scenario() -> None:
        for state in State:
            if state is State.ENDED:
                continue
            for how in ("session.end", "disconnect"):
                async with harness() as h:
                    await drive(h, state)
                    if how == "disconnect":
                        h.engine.signal(Disconnected())
                    else:
                        h.send({"type": "session.end"})
                        if state is not State.NEW:
                            await h.next("session.ended")
                    await h.idle(0.1)
                    assert h.engine.state in (State.ENDED, State.NEW), (state, how)
                    if state is not State.NEW or how == "disconnect":
                        assert h.engine.state is State.ENDED, (state, how)

    run_virtual(scenario())


def test_typed_input_from_every_state_starts_a_reply() -> None:
    async def scenario() -> None:
        for state in (
            State.USER_SPEAKING,
            State.END_PENDING,
            State.TRANSCRIBING,
            State.THINKING,
            State.SPEAKING,
        ):
            async with harness() as h:
                await drive(h, state)
                h.llm.settings.first_token_delay_s = 0.1
                h.llm.script("Typed reply.")
                h.send({"type": "input.text", "text": "typed"})
                await h.idle(0.01)
                assert h.engine.state is State.THINKING, state
                await h.next("response.done", text="Typed reply.")

    run_virtual(scenario())


def test_cancel_and_reply_done_return_to_where_the_listener_is() -> None:
    """With barge-in off the user may speak during a reply: when it ends, the session goes back to
    the user's own turn (still speaking, or its final pending) instead of idle."""

    async def scenario() -> None:
        for source in (State.THINKING, State.SPEAKING):
            for phase in (State.IDLE, State.USER_SPEAKING, State.TRANSCRIBING):
                for trigger in ("cancel", "reply_done"):
                    async with harness(barge_in=False, speculate=False) as h:
                        if source is State.THINKING and trigger == "reply_done":
                            h.llm.script("...")  # nothing to say aloud: the reply ends without audio
                        await drive(h, source)
                        if phase is State.USER_SPEAKING:
                            await h.stream(tone(0.5))
                        elif phase is State.TRANSCRIBING:
                            await h.stream(tone(0.5) + quiet(0.9))
                        assert h.engine.state is source
                        if trigger == "cancel":
                            h.send({"type": "response.cancel"})
                        done = await h.next("response.done")
                        assert done["interrupted"] is (trigger == "cancel")
                        assert h.engine.state is phase, (source, phase, trigger)

    run_virtual(scenario())


def test_a_turn_ended_by_the_user_during_a_reply() -> None:
    async def scenario() -> None:
        # Barge-in off: the user's turn ends while Echo is still thinking; its final replaces the reply.
        async with harness(barge_in=False, speculate=False) as h:
            h.stt.settings.decode_delay_s = 0.0
            await drive(h, State.THINKING)
            await h.stream(tone(0.5) + quiet(0.9))
            first = await h.next("response.done")
            assert first["interrupt_reason"] == "new_input" and h.engine.state is State.THINKING
        # input.commit of audio the VAD did not take for speech, during a reply: the reply stops.
        for source in (State.THINKING, State.SPEAKING):
            async with harness(vad_threshold=1.1) as h:
                await drive(h, source)
                await h.stream(tone(0.5))
                h.send({"type": "input.commit"})
                done = await h.next("response.done")
                assert done["interrupt_reason"] == "new_input" and h.engine.state is State.TRANSCRIBING

    run_virtual(scenario())


def test_stt_failing_mid_utterance_ends_the_turn_without_a_reply() -> None:
    async def scenario() -> None:
        for state, timeout, audio in (
            (State.USER_SPEAKING, 1.0, tone(2.0)),
            (State.END_PENDING, 1.25, tone(1.0) + quiet(0.45)),
        ):
            async with harness(stt_timeout_s=timeout) as h:
                await h.start()
                await h.stream(audio)
                error = await h.next("error")
                assert error["code"] == "stt_timeout", state
                assert h.engine.state is State.IDLE and h.engine.speculative is None
                assert not h.of("response.done")

    run_virtual(scenario())
