"""Every bad input gets its documented error code, and the session keeps working afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest

from echo_voice.client import VoiceClient
from tests.e2e.auth import auth_headers, create_key
from tests.e2e.test_voice_turn import wait_for_turns
from tests.servicetools import ServiceProcess, free_port, start_grpc_service
from tests.speech import speech_pcm, words


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


async def test_frame_over_four_times_the_limit_closes_with_1009(stack):
    async with VoiceClient(stack.ws) as client:
        started = await client.start()
        limit = started["limits"]["max_frame_bytes"]
        await client.send_audio(b"\0" * (4 * limit + 1))
        while not (
            isinstance(event := await client.next_event(60), dict) and event["type"] == "connection.closed"
        ):
            pass
        assert client.ws.close_code == 1009  # "message too big" (RFC 6455), no error event
    async with VoiceClient(stack.ws) as client:  # only that connection was closed
        await client.start()
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


async def wait_ready(base: str, key: str | None = None, limit_s: float = 60.0) -> None:
    """Until the gateway's /readyz sees every service SERVING again (its channels reconnect with a
    short backoff after a service comes back)."""
    async with httpx.AsyncClient(base_url=base, headers=auth_headers(key)) as http:
        for _ in range(int(limit_s / 0.2)):
            if (await http.get("/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{base} never became ready again")


async def failed_turn(client: VoiceClient, code: str, text: str = "Hello?"):
    await client.send({"type": "input.text", "text": text})
    result = await client.collect_turn()
    assert [e["code"] for e in result.errors] == [code], result.events
    assert result.done["error"] == code and result.errors[0]["turn_id"] == result.done["turn_id"]
    assert result.errors[0]["message"]
    return result


async def test_dead_llm_then_it_comes_back(stack, gateway_with, stalling):
    port = free_port()  # nothing listens here yet
    base = gateway_with(env={"ECHO_LLM_ADDR": f"127.0.0.1:{port}"})
    async with VoiceClient(ws_url(base)) as client:
        started = await client.start()
        await failed_turn(client, "llm_unavailable")
        await failed_turn(client, "llm_unavailable", "Are you there?")  # the same clear error again
        # The llm service appears at that address (a relay to the real one): the session carries on.
        await stalling(stack.addresses["llm"], port=port)
        await wait_ready(base)
        await still_works(client)
    # The user's words are kept even though no reply could be made, and the later turn is stored.
    conversation = await wait_for_turns(base, started["conversation_id"], 3)
    turns = conversation["turns"]
    assert [t["client_input"] for t in turns] == ["Hello?", "Are you there?", "Say OK."]
    assert [t["metadata"]["error"] for t in turns] == ["llm_unavailable", "llm_unavailable", ""]
    assert turns[2]["agent_response"]


async def test_llm_deadline_then_it_answers_again(stack, gateway_with, stalling):
    llm = await stalling(stack.addresses["llm"], {"Generate"})  # accepts the call, never answers
    base = gateway_with(env={"ECHO_LLM_ADDR": llm.address, "ECHO_GATEWAY_LLM_TIMEOUT_S": "20"})
    async with VoiceClient(ws_url(base)) as client:
        started = await client.start()
        await failed_turn(client, "llm_timeout")
        assert llm.stalled_calls["Generate"] == 1
        llm.stalled.clear()
        await still_works(client)
    turns = (await wait_for_turns(base, started["conversation_id"], 2))["turns"]
    assert [t["metadata"]["error"] for t in turns] == ["llm_timeout", ""]


async def test_stt_deadline_then_speech_works_again(stack, gateway_with, stalling):
    stt = await stalling(stack.addresses["stt"], {"StreamingRecognize"})
    base = gateway_with(env={"ECHO_STT_ADDR": stt.address, "ECHO_GATEWAY_STT_TIMEOUT_S": "15"})
    async with VoiceClient(ws_url(base)) as client:
        await client.start()
        await client.stream_audio(speech_pcm("Hello there, Echo.", tail_s=1.0), 16000, realtime=False)
        error = await next_error(client)
        assert error["code"] == "stt_timeout" and error["turn_id"] and error["message"], error
        assert stt.stalled_calls["StreamingRecognize"] >= 1
        stt.stalled.clear()
        result = await client.talk(speech_pcm("What is the capital of France?"), 16000, realtime=False)
        assert {"capital", "france"} <= words(result.transcript), result.events
        assert result.done and result.reply_text and not result.errors, result.events


async def test_tts_deadline_still_delivers_the_text_then_speaks_again(stack, gateway_with, stalling):
    tts = await stalling(stack.addresses["tts"], {"Synthesize"})  # ListVoices still answers
    base = gateway_with(env={"ECHO_TTS_ADDR": tts.address, "ECHO_GATEWAY_TTS_TIMEOUT_S": "15"})
    async with VoiceClient(ws_url(base)) as client:
        await client.start()
        result = await failed_turn(client, "tts_timeout", "Say OK.")
        assert result.done["text"] and not result.audio
        tts.stalled.clear()
        await client.send({"type": "input.text", "text": "Say OK."})
        result = await client.collect_turn()
        assert result.done and not result.errors and len(result.audio) > 0, result.events


async def test_storage_deadline_keeps_the_turn_and_saves_it_later(stack, gateway_with, stalling):
    storage = await stalling(stack.addresses["storage"], {"SaveTurn"})
    base = gateway_with(env={"ECHO_STORAGE_ADDR": storage.address, "ECHO_GATEWAY_STORAGE_TIMEOUT_S": "2"})
    async with VoiceClient(ws_url(base)) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "Say OK."})
        first = await client.collect_turn()
        assert first.done and first.reply_text
        # Saving retries for a few seconds, then says so; the turn is kept.
        error = await next_error(client)
        assert error["code"] == "storage_timeout" and "kept" in error["message"], error
        assert error["turn_id"] == first.done["turn_id"]
        storage.stalled.clear()
        await client.send({"type": "input.text", "text": "Say yes."})
        second = await client.collect_turn()
        assert second.done and not second.errors
        await client.send({"type": "session.end"})
        ended = await client.expect("session.ended")
        assert ended["unsaved_turns"] == 0
    turns = (await wait_for_turns(base, started["conversation_id"], 2))["turns"]
    assert [t["turn_id"] for t in turns] == [first.done["turn_id"], second.done["turn_id"]]
    assert turns[0]["agent_response"] == first.reply_text


async def test_storage_dying_mid_conversation_loses_nothing(gateway_with, log_dir, tmp_path):
    data_dir = str(tmp_path / "data")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        "ECHO_STORAGE_HOST": "127.0.0.1",
        "ECHO_STORAGE_PORT": str(port),
        "ECHO_DATA_DIR": data_dir,
        "ECHO_STORAGE_DATA_DIR": data_dir,
    }

    async def start_storage(name: str) -> ServiceProcess:
        proc = ServiceProcess("services.storage", env, log_dir, name=name).start()
        await asyncio.to_thread(proc.wait_healthy, address, 60)
        return proc

    storage = await start_storage("storage-dies")
    key, _ = await asyncio.to_thread(create_key, address, "test-user")
    try:
        base = gateway_with(env={"ECHO_STORAGE_ADDR": address})
        async with VoiceClient(ws_url(base), token=key) as client:
            started = await client.start()
            await client.send({"type": "input.text", "text": "Say OK."})
            first = await client.collect_turn()
            before = (await wait_for_turns(base, started["conversation_id"], 1, headers=auth_headers(key)))[
                "turns"
            ][0]

            assert storage.proc is not None
            os.killpg(storage.proc.pid, signal.SIGKILL)  # no graceful shutdown: it just dies
            await asyncio.to_thread(storage.proc.wait)
            await client.send({"type": "input.text", "text": "Say yes."})
            second = await client.collect_turn()
            assert second.done and second.reply_text, second.events  # the conversation goes on
            error = await next_error(client)
            assert error["code"] == "storage_unavailable" and "kept" in error["message"], error
            assert error["turn_id"] == second.done["turn_id"]

            storage = await start_storage("storage-restarted")  # same port, same data directory
            await wait_ready(base, key)
            await client.send({"type": "input.text", "text": "Say no."})
            third = await client.collect_turn()
            assert third.done and not third.errors
            await client.send({"type": "session.end"})
            assert (await client.expect("session.ended"))["unsaved_turns"] == 0
        turns = (await wait_for_turns(base, started["conversation_id"], 3, headers=auth_headers(key)))[
            "turns"
        ]
        assert [t["turn_id"] for t in turns] == [
            first.done["turn_id"],
            second.done["turn_id"],
            third.done["turn_id"],
        ]
        assert turns[0] == before  # the turn stored before the crash is intact
        assert turns[1]["agent_response"] == second.reply_text  # the failed save, retried
        async with httpx.AsyncClient(base_url=base, headers=auth_headers(key)) as http:
            for turn in turns:
                audio = await http.get(
                    f"/v1/conversations/{started['conversation_id']}/audio/{turn['output_audio_key']}"
                )
                assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    finally:
        storage.stop()


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


async def test_dead_storage_keeps_the_conversation_going(gateway_with, log_dir, tmp_path):
    data_dir = str(tmp_path / "data")
    storage, address = start_grpc_service("storage", {"ECHO_DATA_DIR": data_dir}, log_dir)
    key, _ = create_key(address, "test-user")
    base = gateway_with(env={"ECHO_STORAGE_ADDR": address})
    async with VoiceClient(ws_url(base), token=key) as client:
        # The key was checked at the upgrade; from here on storage is dead.
        await asyncio.to_thread(storage.stop)
        await client.start()
        await client.send({"type": "input.text", "text": "Say OK."})
        first = await client.collect_turn()
        assert first.done and first.reply_text
        # Saving retries for a few seconds, then says so, for the session record and for the turn; the
        # next turn works meanwhile.
        errors = [await next_error(client), await next_error(client)]
        assert [e["code"] for e in errors] == ["storage_unavailable"] * 2
        assert sorted(("kept" in e["message"], "session record" in e["message"]) for e in errors) == [
            (False, True),
            (True, False),
        ]
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
    # A key storage confirmed minutes ago still gets through while it is down (stale-if-error).
    async with httpx.AsyncClient(base_url=base, headers=auth_headers(key)) as http:
        reply = await http.get("/v1/conversations")
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "storage_unavailable"
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["services"]["storage"] == "UNREACHABLE"


async def test_readyz_when_everything_is_up(stack):
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers()) as http:
        reply = await http.get("/readyz")
    assert reply.status_code == 200 and set(reply.json()["services"].values()) == {"SERVING"}


async def raw_get(base: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``target`` byte for byte: HTTP clients (httpx included) remove ``..`` segments before sending,
    so a traversal sent through them never reaches the gateway as one."""
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    token = auth_headers()["Authorization"]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(request.encode("ascii"))
    await writer.drain()
    data = await reader.read()  # Connection: close, so the answer ends with the connection
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), headers, body


async def one_text_turn(stack) -> tuple[str, str]:
    """(conversation id, the key of its turn's stored reply audio)."""
    async with VoiceClient(stack.ws) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "Say OK."})
        await client.collect_turn()
    conversation = await wait_for_turns(stack.base, started["conversation_id"], 1)
    return started["conversation_id"], conversation["turns"][0]["output_audio_key"]


async def test_audio_keys_outside_the_conversation_are_404_even_sent_raw(stack):
    mine, my_key = await one_text_turn(stack)
    other, other_key = await one_text_turn(stack)
    audio = f"/v1/conversations/{mine}/audio"
    # The raw route serves this conversation's own audio: the refusals below are the key check's.
    status, headers, _ = await raw_get(stack.base, f"{audio}/{my_key}")
    assert status == 200 and headers["content-type"].startswith("audio/"), headers
    up = "/".join([".."] * (my_key.count("/") + 1))  # from the key back to the storage root
    traversals = [
        f"{audio}/{other_key}",  # another conversation's audio, asked for by name
        f"{audio}/{my_key}/../../../../etc/passwd",
        f"{audio}/../../../../etc/passwd",
        f"{audio}/{my_key}/{up}/{other_key}",  # through this conversation's key to another's
        f"{audio}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",  # dots percent-encoded
        f"{audio}/..%2f..%2f..%2fetc%2fpasswd",  # slashes percent-encoded
        f"{audio}/%2E%2E%2F%2E%2E%2F{other_key.replace('/', '%2F')}",  # both, upper case
        f"{audio}/{my_key}%2f..%2f..%2f{other_key.replace('/', '%2f')}",
        f"{audio}/%2fetc%2fpasswd",  # an absolute path
    ]
    for target in traversals:
        status, headers, body = await raw_get(stack.base, target)
        # Refused by the audio route itself (the documented REST error), not served and not lost in
        # routing: the server hands such paths to the handler as they are.
        assert status == 404, (target, status, body)
        assert json.loads(body)["error"]["code"] == "not_found", (target, body)
    # The other conversation's audio is still served through its own conversation.
    status, _, _ = await raw_get(stack.base, f"/v1/conversations/{other}/audio/{other_key}")
    assert status == 200
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers()) as http:
        reply = await http.get("/v1/conversations/nope")
        assert reply.status_code == 404


async def test_bad_rest_query_is_400_invalid_request(stack):
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers()) as http:
        for query in ("limit=0", "limit=many", "limit=501"):
            reply = await http.get(f"/v1/conversations?{query}")
            assert reply.status_code == 400, (query, reply.text)
            error = reply.json()["error"]
            assert error["code"] == "invalid_request" and error["message"].startswith("limit:"), error
        assert (await http.get("/v1/conversations?limit=5")).status_code == 200
