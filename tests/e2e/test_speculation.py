"""Speculative replies: started on a stable transcript during the end-of-turn silence, released only
when the turn really ended with that transcript, thrown away (silently) otherwise."""

from __future__ import annotations

import numpy as np

from echo_voice.client import VoiceClient
from tests.e2e.llm_calls import GenerateCall, received_at, recording_llm
from tests.speech import speech_pcm, words


def patient(gateway_with, llm_address: str) -> str:
    # A long end-of-turn silence leaves the stable decode ample time to land before the turn ends, even
    # on a busy 2-core machine (with 1000 ms it sometimes did not, and nothing was speculated). Silence
    # alone ends the turn: Smart Turn (the default) may end it before the stable decode lands.
    env = {"ECHO_GATEWAY_TURN_DETECTION": "silence", "ECHO_GATEWAY_END_SILENCE_MS": "2500"}
    base = gateway_with(env={**env, "ECHO_LLM_ADDR": llm_address})
    return base.replace("http://", "ws://") + "/v1/voice"


def the_reply_s_call(result, calls: list[GenerateCall]) -> GenerateCall:
    """The one Generate run whose text the client got as the reply: the answer to the final transcript,
    produced in full, delta for delta what the client received."""
    matching = [
        c
        for c in calls
        if c.user_text == result.transcript and c.finished and c.text == "".join(result.deltas)
    ]
    assert len(matching) == 1, (result.transcript, result.deltas, calls)
    return matching[0]


async def test_a_speculative_reply_becomes_the_reply(stack, gateway_with):
    async with recording_llm(stack.addresses["llm"]) as llm:
        url = patient(gateway_with, llm.address)
        async with VoiceClient(url) as client:
            await client.start()
            turns = []
            for question in ("What is the capital of Spain?", "How many legs does a spider have?"):
                before = len(llm.calls)
                result = await client.talk(speech_pcm(question, 16000), 16000, realtime=True, silence_s=3.0)
                assert result.done and not result.errors, result.events
                assert result.done["interrupted"] is False
                # Exactly one reply reached the client for this turn, and its deltas are that reply.
                assert [e["type"] for e in result.events].count("response.done") == 1
                assert "".join(result.deltas).strip() == result.reply_text
                turns.append((result, llm.calls[before:]))
            await client.send({"type": "session.end"})
            ended = await client.expect("session.ended")
    stats = ended["speculation"]
    speculative = [(r, calls) for r, calls in turns if r.done.get("speculative")]
    assert speculative and stats["used"] == len(speculative), stats
    # Every Generate the gateway made is either a speculation or a reply started after its turn ended,
    # and the stats count the speculations the llm service really saw.
    plain = len(turns) - len(speculative)
    assert sum(len(calls) for _, calls in turns) == stats["started"] + plain, (stats, turns)
    unused = sum(len(calls) for _, calls in turns) - len(turns)
    assert stats["discarded"] == unused, (stats, turns)
    for result, calls in speculative:
        reply = the_reply_s_call(result, calls)
        # The reply came from the run begun during the end-of-turn silence, before the turn ended...
        assert reply.started_at < received_at(result.events, "speech.stopped"), (reply, result.events)
        # ...and nothing was asked again once it had ended.
        stopped = received_at(result.events, "speech.stopped")
        assert not [c for c in calls if c.started_at > stopped], calls
        # Held back until then: no reply event reached the client before the final transcript.
        kinds = [e["type"] for e in result.events]
        assert kinds.index("transcript.final") < kinds.index("response.text.delta")
        timings = result.done["timings_ms"]
        # Released at the end of the turn: the reply waited for the silence, not the other way round.
        assert timings["voice_to_voice"] >= timings["endpointing"]


async def test_a_pause_mid_turn_never_answers_half_a_sentence(stack, gateway_with):
    first = speech_pcm("Tell me the name of", 16000)
    second = speech_pcm("the largest planet in our solar system.", 16000, lead_s=0.0)
    # Long enough for the stable decode of the first half to land within the pause (a speculation that
    # must then be thrown away), well short of the 2.5 s that ends the turn.
    pause = np.zeros(int(1.5 * 16000), dtype="<i2").tobytes()
    async with recording_llm(stack.addresses["llm"]) as llm:
        url = patient(gateway_with, llm.address)
        async with VoiceClient(url) as client:
            await client.start()
            result = await client.talk(first + pause + second, 16000, realtime=True, silence_s=3.0)
            await client.send({"type": "session.end"})
            ended = await client.expect("session.ended")
    assert {"largest", "planet", "solar"} <= words(result.transcript), result.transcript
    kinds = [e["type"] for e in result.events]
    assert kinds.count("response.done") == 1 and kinds.count("response.audio.start") == 1
    assert kinds.count("transcript.final") == 1
    assert "".join(result.deltas).strip() == result.reply_text
    reply = the_reply_s_call(result, llm.calls)
    # The half sentence was answered speculatively, downstream, and none of it reached the client: the
    # client's deltas are exactly the reply's run, one response, one audio stream.
    half = [c for c in llm.calls if c is not reply and c.user_text != result.transcript]
    assert half and all(not words(c.user_text) >= {"largest", "planet"} for c in half), llm.calls
    stats = ended["speculation"]
    # Every call but the reply's was a discarded speculation; a speculation discarded before its task
    # first ran never reached the LLM at all, so there may be more discards than calls.
    assert stats["discarded"] >= len(llm.calls) - 1 >= 1, (stats, llm.calls)
    assert stats["started"] >= len(llm.calls) - (0 if result.done.get("speculative") else 1), stats
