"""Prefill on the real stack: while the user speaks, the turn so far is evaluated into llama.cpp's
context, so after the turn ends only the last few tokens are left to evaluate."""

from __future__ import annotations

from echo_voice.client import VoiceClient
from tests.speech import speech_pcm

QUESTION = "Can you tell me what the capital city of France is called?"


async def turn(base: str) -> dict:
    async with VoiceClient(base.replace("http://", "ws://") + "/v1/voice") as client:
        await client.start()
        # A first typed turn warms the model (and caches the system prompt) for both runs alike.
        await client.send({"type": "input.text", "text": "Hello."})
        assert (await client.collect_turn()).done
        result = await client.talk(speech_pcm(QUESTION, 16000), 16000, realtime=True, silence_s=2.0)
    assert result.done and not result.errors, result.events
    return result.done["usage"]


async def test_prefill_leaves_only_the_last_words_to_evaluate(gateway_with):
    # No speculation: its generation during the pause would warm the context too.
    warm = await turn(gateway_with(env={"ECHO_GATEWAY_SPECULATE": "false"}))
    cold = await turn(gateway_with(env={"ECHO_GATEWAY_SPECULATE": "false", "ECHO_GATEWAY_PREFILL": "false"}))
    # Without prefill the system prompt and the first turn are cached too, but all the user's new words
    # are evaluated after the turn ended; with it, only those after the last partial (and the chat
    # template's end of turn) are. Measured on 2 cores: 15 of 127 prompt tokens against 22.
    assert warm["prompt_eval_tokens"] < cold["prompt_eval_tokens"], (warm, cold)
    assert warm["prompt_eval_tokens"] <= 20, warm
