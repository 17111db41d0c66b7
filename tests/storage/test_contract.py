"""The storage contract, run through the real service process for every backend."""

from __future__ import annotations

import sqlite3

import grpc
import httpx
import pytest

from echo.v1 import storage_pb2, storage_pb2_grpc
from tests.servicetools import grpc_channel, start_grpc_service

USER = "alice"


def turn(conversation: str, ts: str, session: str = "s1", text: str = "hi", **extra) -> storage_pb2.Turn:
    extra.setdefault("user_id", USER)
    return storage_pb2.Turn(
        conversation_id=conversation,
        timestamp=ts,
        session_id=session,
        turn_id=f"t-{ts[-6:]}",
        client_input=text,
        agent_response=f"reply to {text}",
        metadata_json='{"latency_ms": {"voice_to_voice": 812.5}}',
        **extra,
    )


async def put(
    stub, key: str, data: bytes, chunk: int = 1000, content_type: str = "audio/wav", user: str = USER
):
    async def messages():
        yield storage_pb2.PutAudioRequest(key=key, content_type=content_type, user_id=user)
        for i in range(0, len(data), chunk):
            yield storage_pb2.PutAudioRequest(data=data[i : i + chunk])

    return await stub.PutAudio(messages(), timeout=10)


async def get(stub, key: str, user: str = USER) -> tuple[bytes, str]:
    request = storage_pb2.GetAudioRequest(key=key, user_id=user)
    chunks = [c async for c in stub.GetAudio(request, timeout=10)]
    return b"".join(c.data for c in chunks), chunks[0].content_type


async def test_session_round_trip(stub):
    saved = await stub.SaveSession(
        storage_pb2.Session(
            user_id=USER, session_id="sess-1", conversation_id="conv-s", metadata_json='{"voice": "joe"}'
        )
    )
    assert saved.created_at and saved.updated_at
    got = await stub.GetSession(storage_pb2.GetSessionRequest(user_id=USER, session_id="sess-1"))
    assert (got.conversation_id, got.metadata_json, got.created_at) == (
        "conv-s",
        '{"voice": "joe"}',
        saved.created_at,
    )


async def test_turns_come_back_in_order_and_retries_do_not_duplicate(stub):
    for ts in ("2026-01-01T10:00:02.000000Z", "2026-01-01T10:00:01.000000Z", "2026-01-01T10:00:03.000000Z"):
        await stub.SaveTurn(turn("conv-a", ts, text=ts[-9:-8]))
    # A retried save of the same (conversation_id, timestamp) replaces, never duplicates.
    await stub.SaveTurn(turn("conv-a", "2026-01-01T10:00:01.000000Z", text="1", interrupted=True))
    conversation = await stub.GetConversation(
        storage_pb2.GetConversationRequest(user_id=USER, conversation_id="conv-a")
    )
    assert [t.timestamp[-9:-8] for t in conversation.turns] == ["1", "2", "3"]
    assert conversation.turns[0].interrupted and not conversation.turns[1].interrupted
    assert conversation.turns[0].metadata_json == '{"latency_ms": {"voice_to_voice": 812.5}}'


async def test_list_orders_by_recent_activity_filters_and_limits(stub):
    await stub.SaveTurn(turn("conv-old", "2026-02-01T09:00:00.000000Z", session="s-old"))
    await stub.SaveTurn(turn("conv-new", "2026-02-01T11:00:00.000000Z", session="s-new", text="latest"))
    await stub.SaveTurn(turn("conv-old", "2026-02-01T10:00:00.000000Z", session="s-old"))
    listed = (
        await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=USER, limit=500))
    ).conversations
    ids = [c.conversation_id for c in listed]
    assert ids.index("conv-new") < ids.index("conv-old")
    old = next(c for c in listed if c.conversation_id == "conv-old")
    assert (old.turn_count, old.first_timestamp) == (2, "2026-02-01T09:00:00.000000Z")
    assert next(c for c in listed if c.conversation_id == "conv-new").last_client_input == "latest"
    only = await stub.ListConversations(
        storage_pb2.ListConversationsRequest(user_id=USER, session_id="s-old")
    )
    assert [c.conversation_id for c in only.conversations] == ["conv-old"]
    one = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=USER, limit=1))
    assert len(one.conversations) == 1


async def test_summary(stub):
    await stub.SaveTurn(turn("conv-sum", "2026-03-01T10:00:00.000000Z"))
    await stub.SaveSummary(
        storage_pb2.SaveSummaryRequest(user_id=USER, conversation_id="conv-sum", summary="A greeting.")
    )
    conversation = await stub.GetConversation(
        storage_pb2.GetConversationRequest(user_id=USER, conversation_id="conv-sum")
    )
    assert conversation.summary == "A greeting."


async def test_audio_round_trip_in_many_chunks(stub):
    data = bytes(range(256)) * 1000  # 256 kB
    reply = await put(stub, "sess-1/20260101T100000000000Z_input.wav", data, chunk=7000)
    assert reply.size == len(data)
    got, content_type = await get(stub, "sess-1/20260101T100000000000Z_input.wav")
    assert got == data and content_type == "audio/wav"


@pytest.mark.parametrize(
    "key", ["../escape.wav", "/abs/path.wav", "a//b.wav", "a/../b.wav", "sp ace.wav", "", "a/b/c/d/e.wav"]
)
async def test_bad_audio_keys_are_invalid(stub, key):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(stub, key, b"data")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_put_without_key_first_is_invalid(stub):
    async def messages():
        yield storage_pb2.PutAudioRequest(data=b"abc")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PutAudio(messages(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversize_audio_is_refused_and_leaves_nothing(storage, stub):
    big = b"\0" * (1024 * 1024 + 1)
    proc, address = start_grpc_service(
        "storage",
        {**storage["env"], "ECHO_STORAGE_MAX_AUDIO_BYTES": str(1024 * 1024)},
        storage["data_dir"] / "logs",
    )
    try:
        async with grpc_channel(address) as channel:
            small = storage_pb2_grpc.StorageStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await put(small, "sess-big/too_big.wav", big, chunk=64 * 1024)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in err.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await get(small, "sess-big/too_big.wav")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        proc.stop()
    if storage["backend"] == "local":
        assert not list((storage["data_dir"] / "audio").glob("sess-big/*"))


@pytest.mark.parametrize(
    ("call", "request_", "code"),
    [
        (
            "GetConversation",
            storage_pb2.GetConversationRequest(user_id=USER, conversation_id="nope"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "GetSession",
            storage_pb2.GetSessionRequest(user_id=USER, session_id="nope"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "GetConversation",
            storage_pb2.GetConversationRequest(user_id=USER, conversation_id="a b"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "SaveTurn",
            storage_pb2.Turn(user_id=USER, conversation_id="c", session_id="s"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "SaveTurn",
            storage_pb2.Turn(user_id=USER, timestamp="t", session_id="s"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ("SaveTurn", turn("c", "yesterday"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            "SaveTurn",
            storage_pb2.Turn(
                user_id=USER,
                conversation_id="c",
                session_id="s",
                timestamp="2026-05-01T00:00:00.000000Z",
                metadata_json="[1]",
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "SaveSummary",
            storage_pb2.SaveSummaryRequest(user_id=USER, conversation_id="never-spoken", summary="x"),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
async def test_missing_and_malformed_records(stub, call, request_, code):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, call)(request_, timeout=10)
    assert err.value.code() == code


async def test_missing_audio_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get(stub, "sess-x/none.wav")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_data_survives_a_restart(storage, log_dir):
    async with grpc_channel(storage["address"]) as channel:
        stub = storage_pb2_grpc.StorageStub(channel)
        await stub.SaveTurn(turn("conv-durable", "2026-04-01T10:00:00.000000Z"))
        await put(stub, "sess-d/20260401T100000000000Z_output.wav", b"RIFF-data")
    assert storage["proc"].stop() == 0
    storage["proc"], storage["address"] = start_grpc_service("storage", storage["env"], log_dir)
    async with grpc_channel(storage["address"]) as channel:
        stub = storage_pb2_grpc.StorageStub(channel)
        if storage["backend"] == "fake":
            # In memory by design: a new process starts empty.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetConversation(
                    storage_pb2.GetConversationRequest(user_id=USER, conversation_id="conv-durable")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            return
        conversation = await stub.GetConversation(
            storage_pb2.GetConversationRequest(user_id=USER, conversation_id="conv-durable")
        )
        assert [t.client_input for t in conversation.turns] == ["hi"]
        assert (await get(stub, "sess-d/20260401T100000000000Z_output.wav"))[0] == b"RIFF-data"
    if storage["backend"] == "local":
        db = sqlite3.connect(storage["data_dir"] / "echo.sqlite3")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


async def test_another_turn_may_not_take_a_saved_turns_key(stub):
    await stub.SaveTurn(turn("conv-clash", "2026-06-01T10:00:00.000000Z"))
    clash = turn("conv-clash", "2026-06-01T10:00:00.000000Z", text="other")
    clash.turn_id = "someone-else"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SaveTurn(clash)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    conversation = await stub.GetConversation(
        storage_pb2.GetConversationRequest(user_id=USER, conversation_id="conv-clash")
    )
    assert [t.client_input for t in conversation.turns] == ["hi"]


async def test_audio_url_is_presigned_for_object_stores(storage, stub):
    await put(stub, "sess-u/20260701T100000000000Z_output.wav", b"RIFF-presigned")
    reply = await stub.GetAudioUrl(
        storage_pb2.GetAudioRequest(user_id=USER, key="sess-u/20260701T100000000000Z_output.wav")
    )
    if storage["backend"] in ("local", "fake"):
        assert reply.url == "" and reply.expires_in_s == 0  # served through GetAudio instead
        return
    assert "X-Amz-Signature=" in reply.url and reply.expires_in_s == 300
    async with httpx.AsyncClient() as http:
        fetched = await http.get(reply.url)
    assert fetched.status_code == 200 and fetched.content == b"RIFF-presigned"
