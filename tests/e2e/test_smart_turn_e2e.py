"""Semantic end of turn on the real stack: the real Smart Turn model, on Piper speech, ends a complete
question at its first pause, long before the maximum silence could (the smoke test for
tests/gateway/test_end_of_turn.py, which covers the logic on a scripted model)."""

from __future__ import annotations

from echo_voice.client import VoiceClient
from tests.conftest import require_model
from tests.speech import speech_pcm

# The VAD alone would need 6 s of silence; the client sends 2 s and never commits.
SMART = {"ECHO_GATEWAY_TURN_DETECTION": "smart", "ECHO_GATEWAY_MAX_END_SILENCE_MS": "6000"}


async def test_a_complete_question_is_ended_by_smart_turn_not_by_the_silence(gateway_with):
    require_model("smart-turn-v3.2")
    base = gateway_with(env=SMART)
    pcm = speech_pcm("What is the capital of France?", 16000)
    async with VoiceClient(base.replace("http://", "ws://") + "/v1/voice") as client:
        await client.start()
        result = await client.talk(pcm, 16000, realtime=True, silence_s=2.0, timeout=120)
    assert result.vad_ended_turn and not result.committed_by_client
    assert "capital" in result.transcript.lower() and "france" in result.transcript.lower()
    # The server ended the turn with only 2 s of silence sent, where the VAD alone needed 6 s: the
    # model's verdict did.
    assert result.done and not result.errors
