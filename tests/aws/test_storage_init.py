"""`echo-voice aws init` against moto: the production schema (TTL, the session index, bucket encryption,
public access block, lifecycle), idempotent, and a clear error for a bad encryption setting. Read back
with the real SDK, as an operator would check it."""

from __future__ import annotations

import uuid

import boto3
import pytest

from services.storage.backends.aws import AwsBackend, AwsStorageSettings
from services.storage.config import StorageSettings
from tests.aws.conftest import isolated_aws_env
from tests.aws.storage_standin import run_aws_init
from tests.servicetools import start_grpc_service


@pytest.fixture
def names() -> dict[str, str]:
    """Fresh table and bucket names: every test starts from an account without them."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "DYNAMODB_TABLE_CONVERSATIONS": f"conversations-{suffix}",
        "DYNAMODB_TABLE_SESSIONS": f"sessions-{suffix}",
        "DYNAMODB_TABLE_USERS": f"users-{suffix}",
        "S3_BUCKET_AUDIO": f"audio-{suffix}",
    }


def clients(moto_url: str) -> tuple[object, object]:
    env = isolated_aws_env()
    kwargs = {
        "endpoint_url": moto_url,
        "region_name": "us-east-1",
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }
    return boto3.client("dynamodb", **kwargs), boto3.client("s3", **kwargs)


def test_init_sets_the_production_schema_and_is_idempotent(moto_url, names):
    env = isolated_aws_env(moto_url, **names)
    conversations, sessions, users, bucket = names.values()
    first = run_aws_init(env)
    assert first.returncode == 0, first.stderr
    for line in (
        f"table {conversations}: created",
        f"table {conversations}: TTL on 'ttl' enabled",
        f"table {sessions}: created",
        f"table {sessions}: TTL on 'ttl' enabled",
        f"table {users}: created",
        f"table {users}: TTL on 'ttl' enabled",
        f"bucket {bucket}: created",
        f"bucket {bucket}: default encryption AES256",
        f"bucket {bucket}: public access blocked",
        f"bucket {bucket}: lifecycle: expire after 30 (ECHO_STORAGE_RETENTION_DAYS)",
    ):
        assert line in first.stdout, first.stdout
    second = run_aws_init(env)
    assert second.returncode == 0, second.stderr
    assert f"table {conversations}: exists" in second.stdout and f"bucket {bucket}: exists" in second.stdout
    assert "created" not in second.stdout and "enabled" not in second.stdout and "added" not in second.stdout

    ddb, s3 = clients(moto_url)
    table = ddb.describe_table(TableName=conversations)["Table"]
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        ("conversation_id", "HASH"),
        ("timestamp", "RANGE"),
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    for name, keys in (
        ("session_id-timestamp-index", [("session_id", "HASH"), ("timestamp", "RANGE")]),
        ("user_id-last_timestamp-index", [("user_id", "HASH"), ("last_timestamp", "RANGE")]),
    ):
        assert [(k["AttributeName"], k["KeyType"]) for k in indexes[name]["KeySchema"]] == keys
        assert indexes[name]["Projection"]["ProjectionType"] == "ALL"
    table = ddb.describe_table(TableName=users)["Table"]
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    (index,) = table["GlobalSecondaryIndexes"]
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [("key_sha256", "HASH")]
    for name in (conversations, sessions, users):
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    # Audio expires with the retention (a lifecycle rule: S3 objects have no DynamoDB TTL); 30 days is
    # too short for Standard-IA, so there is no transition.
    assert lifecycle["Status"] == "Enabled" and lifecycle["Expiration"] == {"Days": 30}
    assert "Transitions" not in lifecycle


def test_init_adds_the_session_index_to_an_older_table(moto_url, names):
    conversations = names["DYNAMODB_TABLE_CONVERSATIONS"]
    ddb, _ = clients(moto_url)
    ddb.create_table(  # as a first version might have made it: no index to list a session's turns
        TableName=conversations,
        KeySchema=[
            {"AttributeName": "conversation_id", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "conversation_id", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    init = run_aws_init(isolated_aws_env(moto_url, **names))
    assert init.returncode == 0, init.stderr
    assert f"table {conversations}: index session_id-timestamp-index added" in init.stdout
    assert f"table {conversations}: index user_id-last_timestamp-index added" in init.stdout
    table = ddb.describe_table(TableName=conversations)["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {
        "session_id-timestamp-index",
        "user_id-last_timestamp-index",
    }


def test_init_with_sse_kms(moto_url, names):
    env = isolated_aws_env(
        moto_url, **names, ECHO_STORAGE_S3_ENCRYPTION="aws:kms", ECHO_STORAGE_KMS_KEY_ID="alias/echo-audio"
    )
    init = run_aws_init(env)
    assert init.returncode == 0, init.stderr
    _, s3 = clients(moto_url)
    (rule,) = s3.get_bucket_encryption(Bucket=names["S3_BUCKET_AUDIO"])["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/echo-audio",
    }


async def test_the_backend_writes_audio_with_sse_kms(moto_url, names, aws_env):
    settings = AwsStorageSettings(
        table_conversations=names["DYNAMODB_TABLE_CONVERSATIONS"],
        table_sessions=names["DYNAMODB_TABLE_SESSIONS"],
        table_users=names["DYNAMODB_TABLE_USERS"],
        bucket=names["S3_BUCKET_AUDIO"],
        s3_encryption="aws:kms",
        kms_key_id="alias/echo-audio",
    )
    init = run_aws_init(isolated_aws_env(moto_url, **names))
    assert init.returncode == 0, init.stderr
    backend = AwsBackend(StorageSettings(backend="aws"), settings)
    await backend.start()
    try:

        async def chunks():
            yield b"RIFF-kms"

        await backend.audio.put("u-kms", "s-kms/1_input.wav", chunks(), "audio/wav", 1024)
    finally:
        await backend.close()
    _, s3 = clients(moto_url)
    head = s3.head_object(Bucket=settings.bucket, Key="users/u-kms/s-kms/1_input.wav")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("alias/echo-audio")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"ECHO_STORAGE_S3_ENCRYPTION": "aes256"},
            "ECHO_STORAGE_S3_ENCRYPTION='aes256': use AES256 (SSE-S3) or aws:kms (SSE-KMS)",
        ),
        (
            {"ECHO_STORAGE_KMS_KEY_ID": "alias/echo-audio"},
            "ECHO_STORAGE_KMS_KEY_ID is set but ECHO_STORAGE_S3_ENCRYPTION is 'AES256'",
        ),
    ],
)
def test_a_bad_encryption_setting_is_a_clear_error(moto_url, names, log_dir, extra, message):
    env = isolated_aws_env(moto_url, **names, **extra)
    init = run_aws_init(env)
    assert init.returncode == 1 and f"error: {message}" in init.stderr
    assert "Traceback" not in init.stderr
    ddb, s3 = clients(moto_url)
    assert names["DYNAMODB_TABLE_CONVERSATIONS"] not in ddb.list_tables()["TableNames"]  # nothing made
    assert names["S3_BUCKET_AUDIO"] not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    # The storage service refuses to start with the same message.
    with pytest.raises(RuntimeError, match="exited") as err:
        start_grpc_service("storage", {"ECHO_STORAGE_SERVICE": "aws", **env}, log_dir, timeout=60)
    assert message in str(err.value)
