"""Issue 3: partial transcripts, and interruptions that stop the work downstream and keep the
conversation's memory honest (only what the user heard)."""

from __future__ import annotations

import asyncio
import json
import re

from echo_voice.client import TurnResult, VoiceClient
from tests.e2e.test_voice_turn import wait_for_turns
from tests.speech import speech_pcm, words

STORY = "Tell me a very long story about a dragon who learns to sing. Use at least ten sentences."
GENERATE_CANCELLED = "rpc /echo.v1.LanguageModel/Generate cancelled by the client"


def log_text(stack, service: str) -> str:
    return stack.processes[service].log_path.read_text(errors="replace")


def long_replies(gateway_with) -> str:
    base = gateway_with(env={"ECHO_GATEWAY_MAX_TOKENS": "400", "ECHO_GATEWAY_TEMPERATURE": "0.7"})
    return base.replace("http://", "ws://") + "/v1/voice"


async def until_audio(client: VoiceClient, seconds: float) -> TurnResult:
    """Read a reply's events until ``seconds`` of its audio have arrived."""
    result = TurnResult()
    while True:
        event = await client.next_event(120)
        if isinstance(event, bytes):
            result.audio += event
            if result.sample_rate and len(result.audio) / 2 / result.sample_rate >= seconds:
                return result
        elif event["type"] == "response.audio.start":
            result.sample_rate = event["sample_rate"]
            result.turn_id = event["turn_id"]
        elif event["type"] == "response.text.delta":
            result.deltas.append(event["delta"])
        elif event["type"] in ("response.done", "error"):
            raise AssertionError(f"the reply ended before {seconds} s of audio: {event}")


async def settle_logs() -> None:
    await asyncio.sleep(0.5)  # the services log the cancellation as they unwind


async def test_partials_arrive_before_the_final(stack):
    pcm = speech_pcm("I would like to hear a short poem about the ocean and the stars tonight.", 16000)
    async with VoiceClient(stack.ws) as client:
        await client.start()
        result = await client.talk(pcm, 16000, realtime=True)
    kinds = [e["type"] for e in result.events]
    assert kinds.index("speech.started") < kinds.index("transcript.partial") < kinds.index("transcript.final")
    assert kinds.index("speech.stopped") < kinds.index("transcript.final")
    assert result.partials and all(p.strip() for p in result.partials)
    assert {"poem", "ocean", "stars"} <= words(result.transcript), result.transcript
    assert result.done and result.done["timings_ms"]["endpointing"] > 0


async def test_cancel_stops_generation_and_synthesis_downstream(stack, gateway_with):
    url = long_replies(gateway_with)
    llm_before = log_text(stack, "llm").count(GENERATE_CANCELLED)
    async with VoiceClient(url) as client:
        await client.start()
        await client.send({"type": "input.text", "text": STORY})
        await until_audio(client, 0.3)
        await client.send({"type": "response.cancel"})
        result = await client.collect_turn()
    done = result.done
    assert done["interrupted"] is True and done["interrupt_reason"] == "client_cancel"
    # A 400-token story is still generating: the llm service itself saw the call cancelled. (Whether
    # a TTS call was mid-synthesis at that instant is a race; tests/test_tts_service.py shows a
    # cancelled Synthesize stops the synthesis.)
    assert "llm" in done["cancelled_calls"]
    await settle_logs()
    llm_log = log_text(stack, "llm")
    assert llm_log.count(GENERATE_CANCELLED) == llm_before + 1
    # No orphaned work: the model stopped within a token or two of the cancel.
    after_cancel = [
        int(n)
        for n in re.findall(r"generation cancelled by the client after \d+ tokens \((\d+) after", llm_log)
    ]
    assert after_cancel and after_cancel[-1] <= 2


async def test_barge_in_by_voice_interrupts_and_answers_the_new_utterance(stack, gateway_with):
    url = long_replies(gateway_with)
    llm_before = log_text(stack, "llm").count(GENERATE_CANCELLED)
    async with VoiceClient(url) as client:
        await client.start()
        await client.send({"type": "input.text", "text": STORY})
        await until_audio(client, 0.3)
        speech = speech_pcm("Stop please. What is the capital of Italy?", 16000)
        # talk() streams the speech in real time, then reads up to the first response.done: the
        # interrupted story's. The new utterance's transcript and reply come after it.
        story = await client.talk(speech, 16000, realtime=True)
        assert story.done["interrupted"] is True, story.done
        assert story.done["interrupt_reason"] == "barge_in" and "llm" in story.done["cancelled_calls"]
        answer = await client.collect_turn()
    assert {"capital", "italy"} <= words(answer.transcript), answer.transcript
    assert answer.done["interrupted"] is False and answer.reply_text
    await settle_logs()
    assert log_text(stack, "llm").count(GENERATE_CANCELLED) >= llm_before + 1


def last_llm_context(stack) -> list[dict[str, str]]:
    lines = [line for line in log_text(stack, "llm").splitlines() if "generate messages=" in line]
    return json.loads(lines[-1].split("generate messages=", 1)[1])


async def test_next_turn_context_holds_only_what_was_heard(stack, gateway_with):
    url = long_replies(gateway_with)
    async with VoiceClient(url) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": STORY})
        partial = await until_audio(client, 2.0)
        # The client says it has played 1.5 s of the reply, then cancels.
        await client.send({"type": "playback.position", "turn_id": partial.turn_id, "ms": 1500})
        await client.send({"type": "response.cancel"})
        interrupted = await client.collect_turn()
        await client.send({"type": "input.text", "text": "What were you saying?"})
        follow_up = await client.collect_turn()
    heard = interrupted.done["text"]
    generated = "".join(partial.deltas + interrupted.deltas)
    assert interrupted.done["interrupted"] and heard
    assert len(heard) < len(generated.strip()), (heard, generated)
    assert follow_up.done and not follow_up.done["interrupted"]
    # What the model actually received for the follow-up turn:
    context = last_llm_context(stack)
    assert context[-1] == {"role": "user", "content": "What were you saying?"}
    assert context[-2] == {"role": "assistant", "content": heard + "…"}
    assert context[-3] == {"role": "user", "content": STORY}
    # The stored turn holds the heard part, marked interrupted, with the full text kept aside.
    conversation = await wait_for_turns(
        url.replace("ws://", "http://").removesuffix("/v1/voice"), started["conversation_id"], 2
    )
    stored = conversation["turns"][0]
    assert stored["agent_response"] == heard and stored["interrupted"] is True
    assert stored["metadata"]["generated_text"].startswith(generated.strip()[:20])


async def test_interrupting_twice_in_a_row_then_a_normal_turn(stack, gateway_with):
    url = long_replies(gateway_with)
    async with VoiceClient(url) as client:
        await client.start()
        for _ in range(2):
            await client.send({"type": "input.text", "text": STORY})
            await until_audio(client, 0.2)
            await client.send({"type": "response.cancel"})
            result = await client.collect_turn()
            assert result.done["interrupted"] is True, result.done
        # A new turn straight after the second interruption: no stuck state.
        await client.send({"type": "input.text", "text": "Now just say hello."})
        normal = await client.collect_turn()
    assert normal.done["interrupted"] is False and normal.reply_text and normal.audio
    assert not normal.errors
