"""Speculative replies: started on a stable transcript during the end-of-turn silence, released only
when the turn really ended with that transcript, thrown away (silently) otherwise."""

from __future__ import annotations

import numpy as np

from echo_voice.client import VoiceClient
from tests.speech import speech_pcm, words


def patient(gateway_with) -> str:
    # A long end-of-turn silence leaves the stable decode ample time to land before the turn ends, even
    # on a busy 2-core machine (with 1000 ms it sometimes did not, and nothing was speculated).
    base = gateway_with(env={"ECHO_GATEWAY_END_SILENCE_MS": "2500"})
    return base.replace("http://", "ws://") + "/v1/voice"


async def test_a_speculative_reply_becomes_the_reply(gateway_with):
    url = patient(gateway_with)
    async with VoiceClient(url) as client:
        await client.start()
        results = []
        for question in ("What is the capital of Spain?", "How many legs does a spider have?"):
            result = await client.talk(speech_pcm(question, 16000), 16000, realtime=True, silence_s=3.0)
            assert result.done and not result.errors, result.events
            assert result.done["interrupted"] is False
            # Exactly one reply reached the client for this turn, and its deltas are that reply.
            assert [e["type"] for e in result.events].count("response.done") == 1
            assert "".join(result.deltas).strip() == result.reply_text
            results.append(result)
        await client.send({"type": "session.end"})
        ended = await client.expect("session.ended")
    stats = ended["speculation"]
    assert stats["started"] == stats["used"] + stats["discarded"]
    speculative = [r for r in results if r.done.get("speculative")]
    assert speculative and stats["used"] == len(speculative), stats
    for result in speculative:
        timings = result.done["timings_ms"]
        # Released at the end of the turn: the reply waited for the silence, not the other way round.
        assert timings["voice_to_voice"] >= timings["endpointing"]


async def test_a_pause_mid_turn_never_answers_half_a_sentence(gateway_with):
    url = patient(gateway_with)
    first = speech_pcm("Tell me the name of", 16000)
    second = speech_pcm("the largest planet in our solar system.", 16000, lead_s=0.0)
    pause = np.zeros(int(0.45 * 16000), dtype="<i2").tobytes()
    async with VoiceClient(url) as client:
        await client.start()
        result = await client.talk(first + pause + second, 16000, realtime=True, silence_s=3.0)
        await client.send({"type": "session.end"})
        ended = await client.expect("session.ended")
    assert {"largest", "planet", "solar"} <= words(result.transcript), result.transcript
    assert [e["type"] for e in result.events].count("response.done") == 1
    assert [e["type"] for e in result.events].count("transcript.final") == 1
    assert "".join(result.deltas).strip() == result.reply_text
    stats = ended["speculation"]
    assert stats["started"] == stats["used"] + stats["discarded"]
