"""Ownership, per-user listing, API keys, usage, retention ttl and deletion, through the real service
process for every backend (tests/storage/conftest.py)."""

from __future__ import annotations

import time

import grpc
import pytest

from echo.v1 import storage_pb2
from services.common import apikeys
from tests.storage.test_contract import get, put, turn

A, B = "tenant-a", "tenant-b"


def aws_client(storage, service: str):  # type: ignore[no-untyped-def]
    """A boto3 client on the backend's stand-in (moto or SeaweedFS), to read what really is stored."""
    import boto3

    env = storage["env"]
    endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env["AWS_ENDPOINT_URL"]
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def stored_objects(storage, user: str) -> list[str] | None:
    """The user's audio objects in the bucket; None for the backends without one."""
    if not storage["backend"].startswith("aws"):
        return None
    listed = aws_client(storage, "s3").list_objects_v2(Bucket="echo-audio", Prefix=f"users/{user}/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


async def test_another_users_records_are_not_found_exactly_like_missing_ones(stub):
    await stub.SaveSession(storage_pb2.Session(user_id=A, session_id="own-s", conversation_id="own-c"))
    await stub.SaveTurn(turn("own-c", "2026-07-01T10:00:00.000000Z", session="own-s", user_id=A))
    await put(stub, "own-s/in.wav", b"RIFF-a", user=A)
    cases = {
        "conversation": lambda user, cid: stub.GetConversation(
            storage_pb2.GetConversationRequest(user_id=user, conversation_id=cid)
        ),
        "session": lambda user, sid: stub.GetSession(
            storage_pb2.GetSessionRequest(user_id=user, session_id=sid)
        ),
        "summary": lambda user, cid: stub.SaveSummary(
            storage_pb2.SaveSummaryRequest(user_id=user, conversation_id=cid, summary="x")
        ),
        "delete": lambda user, cid: stub.DeleteConversation(
            storage_pb2.DeleteConversationRequest(user_id=user, conversation_id=cid)
        ),
        "audio": lambda user, key: get(stub, key, user=user),
        "audio url": lambda user, key: stub.GetAudioUrl(storage_pb2.GetAudioRequest(user_id=user, key=key)),
    }
    ids = {"session": "own-s", "audio": "own-s/in.wav", "audio url": "own-s/in.wav"}
    missing = {"session": "none-s", "audio": "none-s/in.wav", "audio url": "none-s/in.wav"}
    for name, call in cases.items():
        theirs = await status_of(call(B, ids.get(name, "own-c")))
        absent = await status_of(call(B, missing.get(name, "none-c")))
        assert theirs[0] == grpc.StatusCode.NOT_FOUND, name
        assert theirs[1].replace("own", "none") == absent[1], name  # the same words as a missing one
    # Nor can B append to A's conversation, or take A's session id.
    code, _ = await status_of(stub.SaveTurn(turn("own-c", "2026-07-01T11:00:00.000000Z", user_id=B)))
    assert code == grpc.StatusCode.NOT_FOUND
    session = storage_pb2.Session(user_id=B, session_id="own-s", conversation_id="b-c")
    assert (await status_of(stub.SaveSession(session)))[0] == grpc.StatusCode.NOT_FOUND
    # B's object under the same key is B's own; A's is untouched.
    await put(stub, "own-s/in.wav", b"RIFF-b", user=B)
    assert (await get(stub, "own-s/in.wav", user=A))[0] == b"RIFF-a"
    assert (await get(stub, "own-s/in.wav", user=B))[0] == b"RIFF-b"
    mine = await stub.GetConversation(storage_pb2.GetConversationRequest(user_id=A, conversation_id="own-c"))
    assert [t.timestamp for t in mine.turns] == ["2026-07-01T10:00:00.000000Z"] and mine.user_id == A


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.SaveSession(storage_pb2.Session(session_id="s", conversation_id="c")),
        lambda s: s.GetSession(storage_pb2.GetSessionRequest(session_id="s")),
        lambda s: s.SaveTurn(turn("c", "2026-07-01T10:00:00.000000Z", user_id="")),
        lambda s: s.GetConversation(storage_pb2.GetConversationRequest(conversation_id="c")),
        lambda s: s.ListConversations(storage_pb2.ListConversationsRequest()),
        lambda s: put(s, "k/a.wav", b"x", user=""),
        lambda s: get(s, "k/a.wav", user=""),
        lambda s: s.GetAudioUrl(storage_pb2.GetAudioRequest(key="k/a.wav")),
        lambda s: s.SaveSummary(storage_pb2.SaveSummaryRequest(conversation_id="c", summary="x")),
        lambda s: s.DeleteConversation(storage_pb2.DeleteConversationRequest(conversation_id="c")),
        lambda s: s.DeleteUser(storage_pb2.DeleteUserRequest()),
        lambda s: s.DeleteUser(storage_pb2.DeleteUserRequest(user_id="..")),
    ],
)
async def test_a_user_id_is_required(stub, call):
    code, details = await status_of(call(stub))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "user_id" in details


async def test_listing_is_per_user_newest_first_in_pages(stub):
    user = "pager"
    for i in range(5):
        await stub.SaveTurn(
            turn(f"page-{i}", f"2026-08-0{i + 1}T10:00:00.000000Z", session=f"ps-{i % 2}", user_id=user)
        )
    await stub.SaveTurn(
        turn("page-0", "2026-08-09T10:00:00.000000Z", session="ps-0", user_id=user, text="late")
    )
    await stub.SaveTurn(turn("not-pager", "2026-08-10T10:00:00.000000Z", user_id="someone-else"))
    pages, cursor = [], ""
    while True:
        reply = await stub.ListConversations(
            storage_pb2.ListConversationsRequest(user_id=user, limit=2, cursor=cursor)
        )
        pages.append([c.conversation_id for c in reply.conversations])
        cursor = reply.next_cursor
        if not cursor:
            break
    assert pages == [["page-0", "page-4"], ["page-3", "page-2"], ["page-1"]]
    only = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=user, session_id="ps-1"))
    assert [c.conversation_id for c in only.conversations] == ["page-3", "page-1"] and not only.next_cursor
    first = (await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=user))).conversations[
        0
    ]
    assert (first.turn_count, first.first_timestamp, first.last_client_input) == (
        2,
        "2026-08-01T10:00:00.000000Z",
        "late",
    )
    # A cursor is for the user it was given to.
    page = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=user, limit=1))
    request = storage_pb2.ListConversationsRequest(user_id="someone-else", cursor=page.next_cursor)
    assert (await status_of(stub.ListConversations(request)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    request = storage_pb2.ListConversationsRequest(user_id=user, cursor="not a cursor")
    assert (await status_of(stub.ListConversations(request)))[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_retried_turn_counts_once(stub):
    for _ in range(3):
        await stub.SaveTurn(turn("retried", "2026-08-20T10:00:00.000000Z", user_id="retrier"))
    (listed,) = (
        await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id="retrier"))
    ).conversations
    assert listed.turn_count == 1


async def test_api_keys(stub):
    key, key_id, key_sha256 = apikeys.generate("keyed")
    assert key.startswith("ek_" + key_id[2:] + "_") and apikeys.sha256_of(key) == key_sha256
    created = await stub.CreateApiKey(
        storage_pb2.ApiKey(key_id=key_id, user_id="keyed", key_sha256=key_sha256, label="laptop")
    )
    assert created.created_at and not created.revoked_at
    other = apikeys.generate("keyed-2")
    await stub.CreateApiKey(storage_pb2.ApiKey(key_id=other[1], user_id="keyed-2", key_sha256=other[2]))
    again = storage_pb2.ApiKey(key_id=key_id, user_id="keyed", key_sha256=other[2])
    assert (await status_of(stub.CreateApiKey(again)))[0] == grpc.StatusCode.ALREADY_EXISTS
    found = await stub.LookupApiKey(storage_pb2.LookupApiKeyRequest(key_sha256=key_sha256))
    assert (found.key_id, found.user_id, found.label) == (key_id, "keyed", "laptop")
    unknown = storage_pb2.LookupApiKeyRequest(key_sha256=apikeys.sha256_of("ek_nope"))
    assert (await status_of(stub.LookupApiKey(unknown)))[0] == grpc.StatusCode.NOT_FOUND
    everyone = (await stub.ListApiKeys(storage_pb2.ListApiKeysRequest())).keys
    assert {key_id, other[1]} <= {k.key_id for k in everyone} and not any(k.key_sha256 for k in everyone)
    mine = (await stub.ListApiKeys(storage_pb2.ListApiKeysRequest(user_id="keyed"))).keys
    assert [(k.key_id, k.label, k.key_sha256) for k in mine] == [(key_id, "laptop", "")]
    revoked = await stub.RevokeApiKey(storage_pb2.RevokeApiKeyRequest(key_id=key_id))
    assert revoked.revoked_at
    twice = await stub.RevokeApiKey(storage_pb2.RevokeApiKeyRequest(key_id=key_id))
    assert twice.revoked_at == revoked.revoked_at
    found = await stub.LookupApiKey(storage_pb2.LookupApiKeyRequest(key_sha256=key_sha256))
    assert found.revoked_at == revoked.revoked_at
    missing = storage_pb2.RevokeApiKeyRequest(key_id="k_000000000000")
    assert (await status_of(stub.RevokeApiKey(missing)))[0] == grpc.StatusCode.NOT_FOUND


async def test_daily_usage_adds_up(stub):
    zero = await stub.GetUsage(storage_pb2.GetUsageRequest(user_id="spender", day="2026-09-01"))
    assert (zero.audio_s, zero.cost_usd, zero.turns) == (0, 0, 0)
    await stub.AddUsage(
        storage_pb2.DailyUsage(user_id="spender", day="2026-09-01", audio_s=1.5, cost_usd=0.25, turns=1)
    )
    total = await stub.AddUsage(
        storage_pb2.DailyUsage(user_id="spender", day="2026-09-01", audio_s=2.0, cost_usd=0.5, turns=1)
    )
    assert (total.audio_s, total.cost_usd, total.turns) == (3.5, 0.75, 2)
    got = await stub.GetUsage(storage_pb2.GetUsageRequest(user_id="spender", day="2026-09-01"))
    assert (got.audio_s, got.cost_usd, got.turns) == (3.5, 0.75, 2)
    other_day = await stub.GetUsage(storage_pb2.GetUsageRequest(user_id="spender", day="2026-09-02"))
    assert other_day.turns == 0
    bad = storage_pb2.DailyUsage(user_id="spender", day="yesterday", turns=1)
    assert (await status_of(stub.AddUsage(bad)))[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_records_get_the_retention_ttl(storage, stub):
    before = int(time.time())
    saved = await stub.SaveTurn(turn("kept", "2026-09-10T10:00:00.000000Z", user_id="ttl-user"))
    session = await stub.SaveSession(
        storage_pb2.Session(user_id="ttl-user", session_id="ttl-s", conversation_id="kept")
    )
    stored = await stub.GetConversation(
        storage_pb2.GetConversationRequest(user_id="ttl-user", conversation_id="kept")
    )
    month = 30 * 86400
    if storage["backend"] == "fake":
        before = 1767225600  # the fake's logical epoch, 2026-01-01
    for ttl in (saved.ttl, session.ttl, stored.turns[0].ttl):
        assert before + month <= ttl <= int(time.time()) + month + 1
    given = await stub.SaveTurn(
        turn("kept", "2026-09-10T11:00:00.000000Z", user_id="ttl-user", ttl=1234567890)
    )
    assert given.ttl == 1234567890  # one the caller set is kept


async def test_delete_conversation_then_user(storage, stub):
    user = "leaver"
    await stub.SaveSession(storage_pb2.Session(user_id=user, session_id="lv-s", conversation_id="lv-1"))
    await put(stub, "lv-s/in.wav", b"RIFF-in", user=user)
    await put(stub, "lv-s/out.wav", b"RIFF-out", user=user)
    await stub.SaveTurn(
        turn(
            "lv-1",
            "2026-10-01T10:00:00.000000Z",
            session="lv-s",
            user_id=user,
            input_audio_key="lv-s/in.wav",
            output_audio_key="lv-s/out.wav",
        )
    )
    await stub.SaveTurn(turn("lv-1", "2026-10-01T10:01:00.000000Z", session="lv-s", user_id=user))
    await stub.SaveSummary(storage_pb2.SaveSummaryRequest(user_id=user, conversation_id="lv-1", summary="s"))
    await stub.SaveTurn(turn("lv-2", "2026-10-02T10:00:00.000000Z", session="lv-s2", user_id=user))
    await put(stub, "lv-s2/in.wav", b"RIFF-2", user=user)
    _, key_id, key_sha256 = apikeys.generate(user)
    await stub.CreateApiKey(storage_pb2.ApiKey(key_id=key_id, user_id=user, key_sha256=key_sha256))
    await stub.AddUsage(storage_pb2.DailyUsage(user_id=user, day="2026-10-01", turns=2))

    result = await stub.DeleteConversation(
        storage_pb2.DeleteConversationRequest(user_id=user, conversation_id="lv-1")
    )
    assert (result.conversations, result.turns, result.audio_objects, result.sessions) == (1, 2, 2, 1)
    get_1 = storage_pb2.GetConversationRequest(user_id=user, conversation_id="lv-1")
    assert (await status_of(stub.GetConversation(get_1)))[0] == grpc.StatusCode.NOT_FOUND
    assert (await status_of(get(stub, "lv-s/in.wav", user=user)))[0] == grpc.StatusCode.NOT_FOUND
    listed = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=user))
    assert [c.conversation_id for c in listed.conversations] == ["lv-2"]
    assert stored_objects(storage, user) in (None, [f"users/{user}/lv-s2/in.wav"])  # S3 objects gone

    result = await stub.DeleteUser(storage_pb2.DeleteUserRequest(user_id=user))
    assert (result.conversations, result.turns, result.audio_objects, result.sessions, result.api_keys) == (
        1,
        1,
        1,
        0,
        1,
    )
    listed = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id=user))
    assert not listed.conversations
    assert stored_objects(storage, user) in (None, [])
    session = storage_pb2.GetSessionRequest(user_id=user, session_id="lv-s")
    assert (await status_of(stub.GetSession(session)))[0] == grpc.StatusCode.NOT_FOUND
    lookup = storage_pb2.LookupApiKeyRequest(key_sha256=key_sha256)
    assert (await status_of(stub.LookupApiKey(lookup)))[0] == grpc.StatusCode.NOT_FOUND
    usage = await stub.GetUsage(storage_pb2.GetUsageRequest(user_id=user, day="2026-10-01"))
    assert usage.turns == 0
    again = await stub.DeleteUser(storage_pb2.DeleteUserRequest(user_id=user))
    assert (again.conversations, again.turns, again.api_keys) == (0, 0, 0)


async def test_dynamodb_items_carry_the_ttl(storage, stub):
    if not storage["backend"].startswith("aws"):
        return  # local and fake: test_records_get_the_retention_ttl and tests/storage/test_retention.py
    user = "ttl-dynamo"
    await stub.SaveSession(storage_pb2.Session(user_id=user, session_id="td-s", conversation_id="td-c"))
    await stub.SaveTurn(turn("td-c", "2026-11-01T10:00:00.000000Z", session="td-s", user_id=user))
    await stub.AddUsage(storage_pb2.DailyUsage(user_id=user, day="2026-11-01", turns=1))
    ddb = aws_client(storage, "dynamodb")
    items = [
        ddb.get_item(TableName="echo-conversations", Key=key)["Item"]
        for key in (
            {"conversation_id": {"S": "td-c"}, "timestamp": {"S": "2026-11-01T10:00:00.000000Z"}},
            {"conversation_id": {"S": "td-c"}, "timestamp": {"S": "~header"}},
        )
    ]
    items.append(ddb.get_item(TableName="echo-sessions", Key={"session_id": {"S": "td-s"}})["Item"])
    items.append(
        ddb.get_item(TableName="echo-users", Key={"pk": {"S": f"usage#{user}"}, "sk": {"S": "2026-11-01"}})[
            "Item"
        ]
    )
    month = 30 * 86400
    for item in items:
        assert abs(int(item["ttl"]["N"]) - (time.time() + month)) < 600, item
