"""Issue 2's end-to-end proof: a spoken turn through the real stack, checked by ear (Whisper)."""

from __future__ import annotations

import asyncio
import io
import wave

import httpx
import pytest

from echo.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from echo_voice.client import VoiceClient
from services.common.audio import rms_dbfs, wav_bytes
from tests.e2e.auth import auth_headers
from tests.servicetools import grpc_channel
from tests.speech import speech_pcm, words

QUESTION = "What is the capital city of France?"


async def transcribe(address: str, pcm: bytes, rate: int) -> str:
    async with grpc_channel(address) as channel:
        reply = await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.WAV)),
                audio=wav_bytes(pcm, rate),
            ),
            timeout=120,
        )
    return reply.text


async def wait_for_turns(
    base: str, conversation_id: str, count: int, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> dict:
    """Turns are saved right after response.done, in the background: poll briefly."""
    async with httpx.AsyncClient(base_url=base, headers=headers or auth_headers()) as http:
        for _ in range(int(timeout / 0.2)):
            reply = await http.get(f"/v1/conversations/{conversation_id}")
            if reply.status_code == 200 and len(reply.json()["turns"]) >= count:
                return reply.json()
            await asyncio.sleep(0.2)
    raise AssertionError(f"conversation {conversation_id} did not reach {count} turns: {reply.text}")


def reply_is_heard(reply_text: str, heard: str) -> bool:
    """Most of the reply's content words come back when its audio is transcribed."""
    content = {w for w in words(reply_text) if len(w) >= 4}
    if not content:
        content = words(reply_text)
    found = content & words(heard)
    return len(found) >= max(1, len(content) // 2)


async def test_spoken_turn_end_to_end(stack):
    pcm = speech_pcm(QUESTION, 16000)
    async with VoiceClient(stack.ws) as client:
        started = await client.start(16000)
        result = await client.talk(pcm, 16000, realtime=True, silence_s=2.0)
        await client.send({"type": "session.end"})
        ended = await client.expect("session.ended")
    assert not result.errors, result.errors
    # 0. The server's VAD ended the turn: speech.stopped came, and the client never sent input.commit.
    assert result.vad_ended_turn and not result.committed_by_client, result.events
    kinds = [e["type"] for e in result.events]
    assert kinds.index("speech.started") < kinds.index("speech.stopped") < kinds.index("transcript.final")
    # 1. The transcript matches the spoken words.
    assert {"capital", "city", "france"} <= words(result.transcript), result.transcript
    # 2. A non-empty reply, streamed as deltas that add up to it.
    assert result.reply_text and "".join(result.deltas).strip().startswith(result.reply_text[:10])
    assert result.done["interrupted"] is False
    for stage in ("stt", "llm_first_token", "tts_first_audio", "voice_to_voice", "endpointing"):
        assert result.done["timings_ms"][stage] >= 0, stage
    usage = result.done["usage"]
    assert usage["output_tokens"] > 0
    # The TTS's characters are counted too; local models cost nothing.
    assert usage["tts_characters"] >= len(result.reply_text.replace(" ", "")) // 2
    assert usage["total_cost_usd"] == usage["cost_usd"] + usage["tts_cost_usd"] == 0
    # 3. The reply audio is valid, not silent, and says the reply's words.
    rate = started["output_audio"]["sample_rate"]
    assert result.sample_rate == rate and len(result.audio) % 2 == 0
    assert len(result.audio) / 2 / rate > 0.5
    assert rms_dbfs(bytes(result.audio)) > -35
    heard = await transcribe(stack.addresses["stt"], bytes(result.audio), rate)
    assert reply_is_heard(result.reply_text, heard), (result.reply_text, heard)
    assert ended["unsaved_turns"] == 0
    # 4. The turn is stored and retrievable through REST, with both audio files.
    conversation = await wait_for_turns(stack.base, started["conversation_id"], 1)
    turn = conversation["turns"][0]
    assert turn["client_input"] == result.transcript
    assert turn["agent_response"] == result.reply_text
    assert turn["session_id"] == started["session_id"]
    assert turn["metadata"]["latency_ms"]["voice_to_voice"] == result.done["timings_ms"]["voice_to_voice"]
    assert turn["metadata"]["usage"] == usage
    assert turn["metadata"]["models"]["tts"] == started["voice"] == "en_US-joe-medium"
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers()) as http:
        for key, expected_rate in ((turn["input_audio_key"], 16000), (turn["output_audio_key"], rate)):
            assert key.startswith(f"{started['session_id']}/") and key.endswith(".wav")
            response = await http.get(f"/v1/conversations/{started['conversation_id']}/audio/{key}")
            assert response.status_code == 200, response.text
            with wave.open(io.BytesIO(response.content)) as w:
                assert w.getframerate() == expected_rate and w.getnframes() > expected_rate // 2
        listing = (await http.get("/v1/conversations")).json()["conversations"]
        assert started["conversation_id"] in [c["conversation_id"] for c in listing]


async def test_typed_turns_remember_the_conversation_and_resume(stack):
    async with VoiceClient(stack.ws) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "My name is Alice. Please say hello to me."})
        first = await client.collect_turn()
        assert first.done and first.reply_text and first.audio
    conversation_id = started["conversation_id"]
    await wait_for_turns(stack.base, conversation_id, 1)
    async with VoiceClient(stack.ws) as client:
        resumed = await client.start(conversation_id=conversation_id)
        assert resumed["conversation_id"] == conversation_id and resumed["resumed_turns"] == 1
        await client.send({"type": "input.text", "text": "Thanks, goodbye."})
        second = await client.collect_turn()
        assert second.done and not second.errors
    conversation = await wait_for_turns(stack.base, conversation_id, 2)
    assert [t["client_input"] for t in conversation["turns"]] == [
        "My name is Alice. Please say hello to me.",
        "Thanks, goodbye.",
    ]


async def test_cancel_interrupts_the_reply_and_the_next_turn_works(stack):
    async with VoiceClient(stack.ws) as client:
        await client.start()
        await client.send({"type": "input.text", "text": "Tell me a long story about a dragon and a knight."})
        await client.expect("response.text.delta")
        await client.send({"type": "response.cancel"})
        interrupted = await client.collect_turn()
        assert interrupted.done["interrupted"] is True
        assert interrupted.done["interrupt_reason"] == "client_cancel"
        await client.send({"type": "input.text", "text": "Say yes."})
        after = await client.collect_turn()
        assert after.done["interrupted"] is False and after.reply_text


@pytest.mark.parametrize("rate", [8000, 48000])
async def test_other_input_sample_rates(stack, rate):
    async with VoiceClient(stack.ws) as client:
        await client.start(rate)
        result = await client.talk(speech_pcm(QUESTION, rate), rate, realtime=False)
    assert {"capital", "france"} <= words(result.transcript), result.transcript
    assert result.done and result.reply_text


async def test_a_voice_by_its_alias_or_an_unknown_voice(stack):
    """ListVoices names each voice's aliases (the model name it was pulled as): a session may ask for
    either, and gets the voice's own name back; an unknown voice is refused with the list."""
    async with VoiceClient(stack.ws) as client:
        started = await client.start(voice="piper-joe")
        assert started["voice"] == "en_US-joe-medium"
    async with VoiceClient(stack.ws) as client:
        await client.send({"type": "session.start", "voice": "nobody"})
        error = await client.next_event()
        assert isinstance(error, dict) and error["code"] == "unknown_voice"
        assert "en_US-joe-medium" in error["message"]
        started = await client.start()  # the session can still start
        assert started["voice"] == "en_US-joe-medium"
