"""Failures: storage outages with retries, downstream deadlines, and bad input: each a clear error,
the session still usable, nothing stored lost."""

from __future__ import annotations

import pytest

from gateway.turn.states import State
from services.common.errors import Unavailable
from tests.gateway.harness import Fakes, Harness, tone
from tests.virtual_clock import run_virtual


def test_a_short_storage_outage_is_retried_without_a_word_to_the_client() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            started = await h.start()
            h.storage.fail_next(2, methods={"save_turn"})
            h.send({"type": "input.text", "text": "remember this"})
            await h.next("response.done")
            await h.idle(2.0)  # retries after 0.5 s and 1 s
            assert not h.of("error")
            turns = (await h.conversation(started["conversation_id"])).turns
            assert [t.client_input for t in turns] == ["remember this"]

    run_virtual(scenario())


def test_a_long_storage_outage_keeps_the_turn_and_saves_it_later() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            started = await h.start()
            h.storage.fail_next(4, methods={"save_turn"})  # the first try and its three retries
            h.send({"type": "input.text", "text": "first"})
            error = await h.next("error")
            assert error["code"] == "storage_unavailable" and "saved later" in error["message"]
            assert error["turn_id"] == h.of("response.done")[0]["turn_id"]
            h.send({"type": "input.text", "text": "second"})
            await h.next("response.done")
            h.send({"type": "session.end"})
            ended = await h.next("session.ended")
            assert ended["unsaved_turns"] == 0
            turns = (await h.conversation(started["conversation_id"])).turns
            assert sorted(t.client_input for t in turns) == ["first", "second"]

    run_virtual(scenario())


def test_storage_down_at_session_end_is_counted_and_the_session_record_failure_is_reported() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            h.storage.fail_next(100, Unavailable("storage is down"))
            await h.start()
            error = await h.next("error")
            assert error["code"] == "storage_unavailable" and "session record" in error["message"]
            h.send({"type": "input.text", "text": "lost?"})
            await h.next("response.done")
            h.send({"type": "session.end"})
            ended = await h.next("session.ended")
            assert ended["unsaved_turns"] == 1

    run_virtual(scenario())


@pytest.mark.parametrize(
    ("service", "fake_setting", "timeout_setting"),
    [
        ("llm", ("llm", "first_token_delay_s"), "llm_timeout_s"),
        ("tts", ("tts", "chunk_delay_s"), "tts_timeout_s"),
    ],
)
def test_a_downstream_deadline_is_its_own_error_and_the_reply_still_ends(
    service: str, fake_setting: tuple[str, str], timeout_setting: str
) -> None:
    async def scenario() -> None:
        fakes = Fakes()
        setattr(getattr(fakes, fake_setting[0]), fake_setting[1], 5.0)
        async with Harness(fakes=fakes, **{timeout_setting: 1.0}) as h:
            started = await h.start()
            h.llm.script("The text still arrives.")
            h.send({"type": "input.text", "text": "hello"})
            error = await h.next("error")
            done = await h.next("response.done")
            assert error["code"] == f"{service}_timeout" and done["error"] == f"{service}_timeout"
            if service == "tts":
                assert done["text"] == "The text still arrives." and done["audio_ms"]["sent"] == 0
            await h.idle(0.1)
            turns = (await h.conversation(started["conversation_id"])).turns
            assert (
                turns[0].client_input == "hello" and f'"error": "{service}_timeout"' in turns[0].metadata_json
            )
            assert h.engine.state is State.IDLE

    run_virtual(scenario())


def test_an_stt_deadline_gets_no_reply_and_typed_input_still_works() -> None:
    async def scenario() -> None:
        fakes = Fakes()
        fakes.stt.decode_delay_s = 5.0
        async with Harness(fakes=fakes, stt_timeout_s=2.0, speculate=False) as h:
            await h.start()
            await h.say(1.0)
            error = await h.next("error")
            assert error["code"] == "stt_timeout" and error["turn_id"]
            assert not h.of("transcript.final")  # no transcript, and no reply
            assert h.engine.state is State.IDLE and not h.llm.requests
            h.send({"type": "input.text", "text": "typed"})
            assert (await h.next("response.done"))["text"] == "You said: typed."

    run_virtual(scenario())


def test_an_llm_that_refuses_is_llm_error() -> None:
    async def scenario() -> None:
        async with Harness(llm_model="no-such-model") as h:
            await h.start()
            h.send({"type": "input.text", "text": "hello"})
            error = await h.next("error")
            done = await h.next("response.done")
            assert error["code"] == "llm_error" and "no-such-model" in error["message"]
            assert done["error"] == "llm_error"

    run_virtual(scenario())


def test_bad_input_gets_its_own_error_code_and_the_session_survives() -> None:
    async def scenario() -> None:
        async with Harness(max_text_chars=20, max_frame_bytes=1000) as h:
            h.send(b"\x00\x00")
            assert (await h.next("error"))["code"] == "session_not_started"
            h.send({"type": "input.text", "text": "early"})
            assert (await h.next("error"))["code"] == "session_not_started"
            h.send({"type": "session.start", "voice": "nobody"})
            error = await h.next("error")
            assert error["code"] == "unknown_voice" and "fake-tone" in error["message"]
            h.send({"type": "session.start", "conversation_id": "missing"})
            assert (await h.next("error"))["code"] == "conversation_not_found"
            await h.start(voice="fake")  # an alias
            h.send({"type": "session.start"})
            assert (await h.next("error"))["code"] == "session_already_started"
            h.send(bytes(2000))
            assert (await h.next("error"))["code"] == "frame_too_large"
            h.send({"type": "input.text", "text": "x" * 21})
            assert (await h.next("error"))["code"] == "text_too_long"
            h.send({"type": "input.text", "text": "  "})
            assert (await h.next("error"))["code"] == "empty_input"
            h.send({"type": "input.commit"})
            assert (await h.next("error"))["code"] == "empty_input"
            h.send({"type": "input.text", "text": "still here"})
            assert (await h.next("response.done"))["text"] == "You said: still here."

    run_virtual(scenario())


def test_a_resumed_conversation_is_the_llm_context() -> None:
    async def scenario() -> str:
        async with Harness() as h:
            started = await h.start()
            h.send({"type": "input.text", "text": "my name is Ada"})
            await h.next("response.done")
            h.send({"type": "session.end"})
            await h.next("session.ended")
            storage = h.storage
        async with Harness() as again:
            again.storage = storage
            again.services.storage.servicer.backend = storage  # the same store, a new session
            resumed = await again.start(conversation_id=started["conversation_id"])
            assert resumed["resumed_turns"] == 1
            again.send({"type": "input.text", "text": "what is my name"})
            await again.next("response.done")
            return " | ".join(m.content for m in again.llm.requests[-1].messages[1:])

    assert run_virtual(scenario()) == "my name is Ada | You said: my name is Ada. | what is my name"


def test_a_gateway_bug_is_internal_error_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        async with Harness() as h:
            await h.start()

            def broken(text: str, *args: object) -> object:
                raise KeyError("bug")

            h.engine.memory.messages = broken  # type: ignore[method-assign,assignment]
            h.send({"type": "input.text", "text": "boom"})
            error = await h.next("error")
            assert error["code"] == "internal_error" and "KeyError" in error["message"]
            del h.engine.memory.messages
            await h.stream(tone(0.1))
            h.send({"type": "input.text", "text": "fine"})
            assert (await h.next("response.done"))["text"] == "You said: fine."

    run_virtual(scenario())
