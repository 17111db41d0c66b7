"""S3 semantics on a real S3 implementation: SeaweedFS (`weed mini`), with DynamoDB on moto, each named
by its own SDK endpoint variable. SeaweedFS checks SigV4 signatures (presigned URLs included) and
encrypts SSE-S3 objects at rest, so these check what moto cannot: that Echo's audio is really encrypted
on disk, that its presigned URLs really are what grants access, and what `aws init` sets really holds."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from services.common.errors import PermissionDenied
from services.storage.backends.aws import AwsBackend
from services.storage.config import StorageSettings
from tests.aws.storage_standin import run_aws_init, seaweedfs_stand_in


@pytest.fixture(scope="module")
def stand_in(log_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    servers, env = seaweedfs_stand_in(log_dir, data_dir)  # runs `echo-voice aws init` once
    yield env, data_dir
    servers.stop()


@pytest.fixture
async def backend(stand_in, monkeypatch):
    env, _ = stand_in
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    backend = AwsBackend(StorageSettings(backend="aws"))
    await backend.start()
    yield backend
    await backend.close()


def s3_client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4"),
    )


USER = "weed-user"


async def put(backend: AwsBackend, key: str, data: bytes) -> int:
    async def chunks():
        for i in range(0, len(data), 10_000):
            yield data[i : i + 10_000]

    return await backend.audio.put(USER, key, chunks(), "audio/wav", 10 * 1024 * 1024)


async def get(backend: AwsBackend, key: str) -> tuple[bytes, str]:
    parts = [part async for part in backend.audio.get(USER, key)]
    return b"".join(p[0] for p in parts), parts[0][1]


def on_disk(data_dir: Path, needle: bytes) -> bool:
    return any(needle in f.read_bytes() for f in data_dir.rglob("*") if f.is_file())


async def test_audio_round_trip_is_encrypted_at_rest(stand_in, backend):
    env, data_dir = stand_in
    audio = os.urandom(200_000)  # random: no store could compress it, so plain bytes would show
    assert await put(backend, "sess-w/20260101T100000000000Z_input.wav", audio) == len(audio)
    got, content_type = await get(backend, "sess-w/20260101T100000000000Z_input.wav")
    assert got == audio and content_type == "audio/wav"
    s3 = s3_client(env)
    head = s3.head_object(Bucket="echo-audio", Key=f"users/{USER}/sess-w/20260101T100000000000Z_input.wav")
    assert head["ServerSideEncryption"] == "AES256"
    # On SeaweedFS's disk the object is ciphertext, while an object stored without SSE (in a bucket
    # without default encryption) is there in the clear: the search itself finds plain bytes.
    control = os.urandom(200_000)
    s3.create_bucket(Bucket="plain-control")
    s3.put_object(Bucket="plain-control", Key="control.bin", Body=control)
    assert on_disk(data_dir, control[50_000:50_256])
    assert not on_disk(data_dir, audio[50_000:50_256])


async def test_presigned_url_is_what_grants_access(stand_in, backend):
    audio = os.urandom(5000)
    key = "sess-w/20260101T100001000000Z_output.wav"
    await put(backend, key, audio)
    url = await backend.audio.url(USER, key)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)  # plain HTTP, no AWS credentials
        assert fetched.status_code == 200 and fetched.content == audio
        tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert (await http.get(tampered)).status_code == 403
        assert (await http.get(url.split("?", 1)[0])).status_code == 403  # unsigned: refused


def test_aws_init_settings_read_back(stand_in):
    env, _ = stand_in
    # A second run (idempotent here too), with a retention long enough for a Standard-IA transition.
    init = run_aws_init({**env, "ECHO_STORAGE_RETENTION_DAYS": "365"})
    assert init.returncode == 0, init.stderr
    assert "bucket echo-audio: exists" in init.stdout and "table echo-conversations: exists" in init.stdout
    # What SeaweedFS does not implement is said, not silently skipped or fatal.
    assert "bucket echo-audio: WARNING this endpoint has no public access block" in init.stdout
    assert "lifecycle: expire after 365 days (this endpoint has no storage-class transitions)" in init.stdout
    s3 = s3_client(env)
    (rule,) = s3.get_bucket_encryption(Bucket="echo-audio")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket="echo-audio")["Rules"]
    assert lifecycle["ID"] == "audio-to-infrequent-access-then-expire"
    assert lifecycle["Status"] == "Enabled" and lifecycle["Expiration"] == {"Days": 365}


async def test_a_wrong_secret_stops_the_backend_with_a_clear_error(stand_in, monkeypatch):
    env, _ = stand_in
    for name, value in {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}.items():
        monkeypatch.setenv(name, value)
    backend = AwsBackend(StorageSettings(backend="aws"))
    # DynamoDB (moto) takes any key; SeaweedFS checks the signature and refuses the bucket check. A HEAD
    # reply has no body to name the error, so 403 is all S3 says: Echo says which call and bucket.
    with pytest.raises(PermissionDenied, match=r"S3 HeadBucket \(echo-audio\) failed: 403"):
        await backend.start()
    await backend.close()
