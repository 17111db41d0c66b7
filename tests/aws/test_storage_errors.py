"""What a storage client sees when DynamoDB or S3 refuse: the storage service process talks to moto
through a stand-in that answers chosen calls with AWS's own error replies (access denied, throttling,
a revoked key). Each becomes its own gRPC status naming the AWS call, and the service goes on serving
once AWS does."""

from __future__ import annotations

import uuid

import grpc
import pytest

from echo.v1 import storage_pb2, storage_pb2_grpc
from tests.aws.conftest import FAKE_CREDENTIALS, isolated_aws_env
from tests.aws.storage_standin import FaultyAws, run_aws_init
from tests.servicetools import grpc_channel, start_grpc_service

NAMES = {
    "DYNAMODB_TABLE_CONVERSATIONS": "errors-conversations",
    "DYNAMODB_TABLE_SESSIONS": "errors-sessions",
    "DYNAMODB_TABLE_USERS": "errors-users",
    "S3_BUCKET_AUDIO": "errors-audio",
}
USER = "errors-user"


@pytest.fixture(scope="module")
def faulty(moto_url, log_dir):
    init = run_aws_init(isolated_aws_env(moto_url, **NAMES))
    assert init.returncode == 0, init.stderr
    proxy = FaultyAws(moto_url)
    env = {"ECHO_STORAGE_SERVICE": "aws", **isolated_aws_env(proxy.url, **NAMES)}
    proc, address = start_grpc_service("storage", env, log_dir)
    yield proxy, address
    proc.stop()
    proxy.stop()


@pytest.fixture
async def stub(faulty):
    proxy, address = faulty
    proxy.faults.clear()
    async with grpc_channel(address) as channel:
        yield storage_pb2_grpc.StorageStub(channel), proxy


def turn(conversation: str) -> storage_pb2.Turn:
    return storage_pb2.Turn(
        user_id=USER,
        conversation_id=conversation,
        timestamp="2026-05-01T10:00:00.000000Z",
        session_id="s-errors",
        turn_id="t1",
        client_input="hello",
        agent_response="hi",
    )


async def put_audio(stub, key: str) -> storage_pb2.PutAudioResponse:
    async def messages():
        yield storage_pb2.PutAudioRequest(key=key, content_type="audio/wav", user_id=USER)
        yield storage_pb2.PutAudioRequest(data=b"RIFF-error-test")

    return await stub.PutAudio(messages(), timeout=30)


async def get_audio(stub, key: str) -> bytes:
    request = storage_pb2.GetAudioRequest(key=key, user_id=USER)
    return b"".join([c.data async for c in stub.GetAudio(request, timeout=30)])


CONVERSATION = "conv-errors"
KEY = "s-errors/20260501T100000000000Z_input.wav"
CALLS = {
    "SaveTurn": lambda stub: stub.SaveTurn(turn(CONVERSATION), timeout=30),
    "GetConversation": lambda stub: stub.GetConversation(
        storage_pb2.GetConversationRequest(user_id=USER, conversation_id=CONVERSATION), timeout=30
    ),
    "SaveSummary": lambda stub: stub.SaveSummary(
        storage_pb2.SaveSummaryRequest(user_id=USER, conversation_id=CONVERSATION, summary="A greeting."),
        timeout=30,
    ),
    "GetSession": lambda stub: stub.GetSession(
        storage_pb2.GetSessionRequest(user_id=USER, session_id="s-errors"), timeout=30
    ),
    "PutAudio": lambda stub: put_audio(stub, KEY),
    "GetAudio": lambda stub: get_audio(stub, KEY),
}


@pytest.mark.parametrize(
    ("call", "action", "aws_code", "status", "says"),
    [
        (
            "SaveTurn",
            "dynamodb:PutItem",
            "AccessDeniedException",
            grpc.StatusCode.PERMISSION_DENIED,
            "DynamoDB PutItem (conversations) failed: AccessDeniedException: User: ",
        ),
        (
            "SaveTurn",
            "dynamodb:PutItem",
            "ProvisionedThroughputExceededException",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "provisioned throughput for the table was exceeded",
        ),
        (
            "GetConversation",
            "dynamodb:Query",
            "ThrottlingException",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "DynamoDB Query failed: ThrottlingException",
        ),
        (
            "SaveSummary",
            "dynamodb:UpdateItem",
            "AccessDeniedException",
            grpc.StatusCode.PERMISSION_DENIED,
            "not authorized to perform: dynamodb:UpdateItem",
        ),
        (
            "GetSession",
            "dynamodb:GetItem",
            "UnrecognizedClientException",
            grpc.StatusCode.UNAUTHENTICATED,
            "security token included in the request is invalid",
        ),
        (
            "PutAudio",
            "s3:PutObject",
            "AccessDenied",
            grpc.StatusCode.PERMISSION_DENIED,
            "S3 PutObject failed",
        ),
        (
            "PutAudio",
            "s3:PutObject",
            "SlowDown",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "reduce your request rate",
        ),
        (
            "GetAudio",
            "s3:GetObject",
            "AccessDenied",
            grpc.StatusCode.PERMISSION_DENIED,
            "S3 GetObject failed",
        ),
        (
            "GetAudio",
            "s3:GetObject",
            "InvalidAccessKeyId",
            grpc.StatusCode.UNAUTHENTICATED,
            "Access Key Id you provided does not exist",
        ),
    ],
)
async def test_aws_refusals_reach_the_client_as_clear_statuses(stub, call, action, aws_code, status, says):
    stub, proxy = stub
    # What the call needs exists, so that only the injected refusal can make it fail.
    await stub.SaveTurn(turn(CONVERSATION), timeout=30)
    await stub.SaveSession(
        storage_pb2.Session(user_id=USER, session_id="s-errors", conversation_id=CONVERSATION), timeout=30
    )
    await put_audio(stub, KEY)
    proxy.faults[action] = aws_code
    proxy.seen.clear()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await CALLS[call](stub)
    assert err.value.code() == status
    assert says in err.value.details()
    assert action in proxy.seen  # the call really went out and AWS's reply came back
    # AWS answers again: the service and the data it stored are all still there.
    proxy.faults.clear()
    await CALLS[call](stub)
    conversation = await CALLS["GetConversation"](stub)
    assert [t.client_input for t in conversation.turns] == ["hello"]
    assert await get_audio(stub, KEY) == b"RIFF-error-test"


def test_missing_credentials_stop_the_service_with_a_clear_error(moto_url, log_dir):
    env = isolated_aws_env(moto_url, **NAMES)
    for name in FAKE_CREDENTIALS:
        env.pop(name)
    with pytest.raises(RuntimeError, match="exited") as err:
        start_grpc_service("storage", {"ECHO_STORAGE_SERVICE": "aws", **env}, log_dir, timeout=60)
    assert "no usable AWS credentials" in str(err.value)


def test_missing_tables_say_how_to_create_them(moto_url, log_dir):
    missing = {name: f"{value}-{uuid.uuid4().hex[:6]}" for name, value in NAMES.items()}
    env = {"ECHO_STORAGE_SERVICE": "aws", **isolated_aws_env(moto_url, **missing)}
    with pytest.raises(RuntimeError, match="exited") as err:
        start_grpc_service("storage", env, log_dir, timeout=60)
    assert f"DynamoDB DescribeTable ({missing['DYNAMODB_TABLE_CONVERSATIONS']})" in str(err.value)
    assert "`echo-voice aws init`" in str(err.value)


async def test_listing_a_users_conversations_is_one_query_on_the_user_index(stub):
    stub, proxy = stub
    for i in range(3):
        listed_turn = turn(f"conv-listed-{i}")
        listed_turn.user_id = "lister"
        await stub.SaveTurn(listed_turn, timeout=30)
    proxy.seen.clear()
    reply = await stub.ListConversations(storage_pb2.ListConversationsRequest(user_id="lister"), timeout=30)
    assert len(reply.conversations) == 3 and not reply.next_cursor
    # One Query for the page: no Scan, and no Query (or GetItem) per conversation.
    assert proxy.seen == ["dynamodb:Query"]
