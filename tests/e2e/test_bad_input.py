"""Every bad input gets its documented error code, and the session keeps working afterwards."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from echo_voice.client import VoiceClient
from tests.e2e.test_voice_turn import wait_for_turns
from tests.speech import speech_pcm


async def next_error(client: VoiceClient) -> dict:
    while True:
        event = await client.next_event(60)
        if isinstance(event, dict) and event["type"] in ("error", "connection.closed"):
            return event


async def still_works(client: VoiceClient) -> None:
    await client.send({"type": "input.text", "text": "Say OK."})
    result = await client.collect_turn()
    assert result.done and result.reply_text and not result.errors, result.events


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/voice"


async def test_messages_before_session_start(stack):
    async with VoiceClient(stack.ws) as client:
        await client.send_audio(b"\0" * 640)
        assert (await next_error(client))["code"] == "session_not_started"
        await client.send({"type": "input.text", "text": "hi"})
        assert (await next_error(client))["code"] == "session_not_started"
        await client.start()
        await still_works(client)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (json.dumps({"no": "type"}), "invalid_message"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "input.text", "text": 42}), "invalid_message"),
        (json.dumps({"type": "input.text", "text": "   "}), "empty_input"),
        (json.dumps({"type": "input.text", "text": "x" * 2001}), "text_too_long"),
        (json.dumps({"type": "input.commit"}), "empty_input"),
        (json.dumps({"type": "playback.position", "turn_id": "t", "ms": -5}), "invalid_message"),
        (json.dumps({"type": "session.start"}), "session_already_started"),
        (json.dumps({"type": "input.text", "text": "a" * 20000}), "message_too_large"),
    ],
)
async def test_bad_frames_in_a_started_session(stack, frame, code):
    async with VoiceClient(stack.ws) as client:
        await client.start()
        await client.ws.send(frame)
        error = await next_error(client)
        assert error["code"] == code, error
        assert error["message"]
        await still_works(client)


async def test_oversized_audio_frame(stack):
    async with VoiceClient(stack.ws) as client:
        started = await client.start()
        limit = started["limits"]["max_frame_bytes"]
        await client.send_audio(b"\0" * (limit + 2))
        error = await next_error(client)
        assert error["code"] == "frame_too_large" and str(limit) in error["message"]
        await still_works(client)


@pytest.mark.parametrize(
    ("start", "code"),
    [
        ({"audio": {"encoding": "opus", "sample_rate": 16000}}, "unsupported_audio_format"),
        ({"audio": {"encoding": "pcm_s16le", "sample_rate": 12345}}, "unsupported_audio_format"),
        (
            {"audio": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 6}},
            "unsupported_audio_format",
        ),
        ({"output_audio": {"encoding": "mp3"}}, "unsupported_audio_format"),
        ({"voice": "nobody"}, "unknown_voice"),
        ({"conversation_id": "does-not-exist"}, "conversation_not_found"),
        ({"audio": "loud"}, "invalid_message"),
    ],
)
async def test_bad_session_start_is_refused_and_a_good_one_then_works(stack, start, code):
    async with VoiceClient(stack.ws) as client:
        await client.send({"type": "session.start", **start})
        error = await next_error(client)
        assert error["code"] == code, error
        await client.start()
        await still_works(client)


async def test_dead_llm(gateway_with):
    base = gateway_with(dead=("llm",))
    async with VoiceClient(ws_url(base)) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "Hello?"})
        result = await client.collect_turn()
        assert [e["code"] for e in result.errors] == ["llm_unavailable"]
        assert (
            result.done["error"] == "llm_unavailable"
            and result.errors[0]["turn_id"] == result.done["turn_id"]
        )
    # The user's words are kept even though no reply could be made.
    conversation = await wait_for_turns(base, started["conversation_id"], 1)
    assert conversation["turns"][0]["client_input"] == "Hello?"
    assert conversation["turns"][0]["metadata"]["error"] == "llm_unavailable"


async def test_llm_deadline(gateway_with):
    base = gateway_with(env={"ECHO_GATEWAY_LLM_TIMEOUT_S": "0.001"})
    async with VoiceClient(ws_url(base)) as client:
        await client.start()
        await client.send({"type": "input.text", "text": "Hello?"})
        result = await client.collect_turn()
        assert result.errors and result.errors[0]["code"] == "llm_timeout", result.errors


async def test_dead_tts_still_delivers_the_text(gateway_with):
    base = gateway_with(dead=("tts",))
    async with VoiceClient(ws_url(base)) as client:
        await client.send({"type": "session.start"})
        assert (await next_error(client))["code"] == "tts_unavailable"
        await client.expect("session.started")
        await client.send({"type": "input.text", "text": "Say OK."})
        result = await client.collect_turn()
        assert [e["code"] for e in result.errors] == ["tts_unavailable"]
        assert result.done["text"] and not result.audio and result.done["error"] == "tts_unavailable"


async def test_dead_stt_reports_and_typed_input_still_works(gateway_with):
    base = gateway_with(dead=("stt",))
    async with VoiceClient(ws_url(base)) as client:
        await client.start()
        await client.stream_audio(speech_pcm("Hello there, Echo.", tail_s=1.0), 16000, realtime=False)
        assert (await next_error(client))["code"] == "stt_unavailable"
        await still_works(client)


async def test_dead_storage_keeps_the_conversation_going(gateway_with):
    base = gateway_with(dead=("storage",))
    async with VoiceClient(ws_url(base)) as client:
        await client.start()
        await client.send({"type": "input.text", "text": "Say OK."})
        first = await client.collect_turn()
        assert first.done and first.reply_text
        # Saving retries for a few seconds, then says so; the next turn works meanwhile.
        error = await next_error(client)
        assert error["code"] == "storage_unavailable" and "kept" in error["message"]
        await still_works(client)
        await client.send({"type": "session.end"})
        late_errors = []
        while (event := await client.next_event(60)) and not (
            isinstance(event, dict) and event["type"] == "session.ended"
        ):
            if isinstance(event, dict) and event["type"] == "error":
                late_errors.append(event["code"])
        # The second turn's save failed too, and says so before the session ends.
        assert late_errors == ["storage_unavailable"]
        assert event["unsaved_turns"] == 2
    async with httpx.AsyncClient(base_url=base) as http:
        reply = await http.get("/v1/conversations")
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "storage_unavailable"
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["services"]["storage"] == "UNREACHABLE"


async def test_readyz_when_everything_is_up(stack):
    async with httpx.AsyncClient(base_url=stack.base) as http:
        reply = await http.get("/readyz")
    assert reply.status_code == 200 and set(reply.json()["services"].values()) == {"SERVING"}


async def test_unknown_audio_key_is_404(stack):
    async with VoiceClient(stack.ws) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "Say OK."})
        await client.collect_turn()
    await wait_for_turns(stack.base, started["conversation_id"], 1)
    async with httpx.AsyncClient(base_url=stack.base) as http:
        reply = await http.get(f"/v1/conversations/{started['conversation_id']}/audio/other/../../etc/passwd")
        assert reply.status_code == 404
        reply = await http.get("/v1/conversations/nope")
        assert reply.status_code == 404
    await asyncio.sleep(0)
