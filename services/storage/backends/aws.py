"""AWS storage: turns and sessions in DynamoDB, audio in S3 (the roadmap's production layout).

Tables (created by `echo-voice aws init` or Terraform, same schema), every one with TTL on `ttl`:
- echo-conversations: PK conversation_id, SK timestamp; the turns, and one header item per conversation
  (aws_records.py); GSI session_id + timestamp; GSI user_id + last_timestamp (a user's conversations).
- echo-sessions: PK session_id.
- echo-users: PK pk, SK sk: API keys and daily usage (aws_users.py); GSI key_sha256.
Audio objects are "users/<user_id>/<key>" in the bucket: the owner is in the object's name, so another
user's key names an object that does not exist. They expire by the bucket's lifecycle rule (Terraform:
retention_days), not by DynamoDB TTL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from services.common import aws
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument, NotFound
from services.storage.backends.aws_records import DynamoConversationStore
from services.storage.backends.aws_users import DynamoUserStore
from services.storage.backends.base import check_key, check_user, not_found_audio
from services.storage.config import StorageSettings

log = logging.getLogger("echo.storage.aws")
CHUNK = 64 * 1024
AUDIO_PREFIX = "users"
S3_ENCRYPTIONS = ("AES256", "aws:kms")


@dataclass
class AwsStorageSettings:
    """Named as in the roadmap. Endpoints come from the SDK's own variables (AWS_ENDPOINT_URL,
    AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3)."""

    region: str = field(default="", metadata={"env": "AWS_REGION", "help": "AWS region"})
    table_conversations: str = field(
        default="echo-conversations", metadata={"env": "DYNAMODB_TABLE_CONVERSATIONS", "help": "turns table"}
    )
    table_sessions: str = field(
        default="echo-sessions", metadata={"env": "DYNAMODB_TABLE_SESSIONS", "help": "sessions table"}
    )
    table_users: str = field(
        default="echo-users",
        metadata={"env": "DYNAMODB_TABLE_USERS", "help": "API keys and daily usage table"},
    )
    session_index: str = field(
        default="session_id-timestamp-index", metadata={"help": "GSI for a session's turns"}
    )
    user_index: str = field(
        default="user_id-last_timestamp-index", metadata={"help": "GSI for a user's conversations"}
    )
    key_index: str = field(default="key_sha256-index", metadata={"help": "GSI for API keys by hash"})
    bucket: str = field(default="echo-audio", metadata={"env": "S3_BUCKET_AUDIO", "help": "audio bucket"})
    s3_encryption: str = field(default="AES256", metadata={"help": "AES256 (SSE-S3) or aws:kms (SSE-KMS)"})
    kms_key_id: str = field(default="", metadata={"help": "KMS key for aws:kms (empty: the AWS managed key)"})


def load_aws_storage_settings() -> AwsStorageSettings:
    return load_settings(AwsStorageSettings, prefix="ECHO_STORAGE_", section="storage")


def check_s3_encryption(settings: AwsStorageSettings) -> None:
    """Audio is always encrypted at rest: SSE-S3 or SSE-KMS, spelled as S3 spells them."""
    if settings.s3_encryption not in S3_ENCRYPTIONS:
        raise ConfigError(
            f"ECHO_STORAGE_S3_ENCRYPTION={settings.s3_encryption!r}: use AES256 (SSE-S3) or aws:kms (SSE-KMS)"
        )
    if settings.kms_key_id and settings.s3_encryption != "aws:kms":
        raise ConfigError(
            "ECHO_STORAGE_KMS_KEY_ID is set but ECHO_STORAGE_S3_ENCRYPTION is "
            f"{settings.s3_encryption!r}; set it to aws:kms to encrypt with that key"
        )


class S3AudioStore:
    def __init__(self, settings: AwsStorageSettings, resources: dict[str, Any], presign_seconds: int) -> None:
        self.settings = settings
        self.presign_seconds = presign_seconds
        self.resources = resources

    @property
    def s3(self) -> Any:
        return self.resources["s3"]

    def _encryption(self) -> dict[str, str]:
        if self.settings.s3_encryption == "aws:kms":
            extra = {"ServerSideEncryption": "aws:kms"}
            if self.settings.kms_key_id:
                extra["SSEKMSKeyId"] = self.settings.kms_key_id
            return extra
        return {"ServerSideEncryption": "AES256"}

    def _object(self, user_id: str, key: str) -> str:
        return f"{AUDIO_PREFIX}/{check_user(user_id)}/{check_key(key)}"

    async def put(
        self, user_id: str, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        name = self._object(user_id, key)
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > max_bytes:
                raise InvalidArgument(f"audio object {key!r} is over the {max_bytes}-byte limit")
        with aws.aws_errors("S3 PutObject"):
            await self.s3.put_object(
                Bucket=self.settings.bucket,
                Key=name,
                Body=bytes(body),
                ContentType=content_type or "application/octet-stream",
                **self._encryption(),
            )
        return len(body)

    async def get(self, user_id: str, key: str) -> AsyncIterator[tuple[bytes, str]]:
        name = self._object(user_id, key)
        from botocore.exceptions import ClientError

        try:
            found = await self.s3.get_object(Bucket=self.settings.bucket, Key=name)
        except ClientError as e:
            if aws.error_code(e) in ("NoSuchKey", "404"):
                raise not_found_audio(key) from None
            raise aws.map_error(e, "S3 GetObject") from e
        content_type = found.get("ContentType", "application/octet-stream")
        body = found["Body"]
        try:
            while chunk := await body.read(CHUNK):
                yield chunk, content_type
        finally:
            body.close()

    async def _exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self.s3.head_object(Bucket=self.settings.bucket, Key=name)
        except ClientError as e:
            if aws.error_code(e) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise aws.map_error(e, "S3 HeadObject") from e
        return True

    async def url(self, user_id: str, key: str) -> str:
        # Only for an object the caller owns (its name holds the owner) that exists.
        name = self._object(user_id, key)
        if not await self._exists(name):
            raise not_found_audio(key)
        with aws.aws_errors("S3 presign"):
            return str(
                await self.s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.settings.bucket, "Key": name},
                    ExpiresIn=self.presign_seconds,
                )
            )

    async def delete(self, user_id: str, keys: tuple[str, ...]) -> int:
        deleted = 0
        for key in keys:
            name = self._object(user_id, key)
            if await self._exists(name):
                with aws.aws_errors("S3 DeleteObject"):
                    await self.s3.delete_object(Bucket=self.settings.bucket, Key=name)
                deleted += 1
        return deleted

    async def delete_user(self, user_id: str) -> int:
        prefix = f"{AUDIO_PREFIX}/{check_user(user_id)}/"
        names: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": prefix}
        with aws.aws_errors("S3 ListObjectsV2"):
            while True:
                page = await self.s3.list_objects_v2(**kwargs)
                names += [o["Key"] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        with aws.aws_errors("S3 DeleteObject"):
            for name in names:
                await self.s3.delete_object(Bucket=self.settings.bucket, Key=name)
        return len(names)


class AwsBackend:
    name = "aws"
    capabilities = BackendCapabilities(streaming=True)

    requires = ("aioboto3", "boto3")

    def __init__(self, service: StorageSettings, settings: AwsStorageSettings | None = None) -> None:
        self.service = service
        settings = settings or load_aws_storage_settings()
        check_s3_encryption(settings)
        self.settings = settings
        self._resources: dict[str, Any] = {}
        self._stack = AsyncExitStack()
        self.conversations = DynamoConversationStore(settings, self._resources, service.retention_days)
        self.users = DynamoUserStore(settings, self._resources, service.retention_days)
        self.audio = S3AudioStore(settings, self._resources, service.presign_seconds)

    async def start(self) -> None:
        session = aws.session(self.settings.region or None)
        with aws.aws_errors("DynamoDB/S3 connect"):
            dynamodb = await self._stack.enter_async_context(
                session.resource(
                    "dynamodb", region_name=aws.region(self.settings.region or None), config=aws.sdk_config()
                )
            )
            self._resources["turns"] = await dynamodb.Table(self.settings.table_conversations)
            self._resources["sessions"] = await dynamodb.Table(self.settings.table_sessions)
            self._resources["users"] = await dynamodb.Table(self.settings.table_users)
            self._resources["s3"] = await self._stack.enter_async_context(
                # SigV4: presigned URLs must work in every region (newer ones refuse SigV2).
                aws.client("s3", self.settings.region or None, aws_session=session, signature_version="s3v4")
            )
        # Fail at start, with a clear message, when the tables or the bucket are missing or out of reach.
        turns, sessions, s3 = self._resources["turns"], self._resources["sessions"], self._resources["s3"]
        users = self._resources["users"]
        checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (f"DynamoDB DescribeTable ({self.settings.table_conversations})", lambda: turns.load()),
            (f"DynamoDB DescribeTable ({self.settings.table_sessions})", lambda: sessions.load()),
            (f"DynamoDB DescribeTable ({self.settings.table_users})", lambda: users.load()),
            (f"S3 HeadBucket ({self.settings.bucket})", lambda: s3.head_bucket(Bucket=self.settings.bucket)),
        ]
        for operation, check in checks:
            try:
                with aws.aws_errors(operation):
                    await check()
            except NotFound as e:
                raise NotFound(f"{e}; create them with `echo-voice aws init` (or Terraform)") from e
        log.info(
            "AWS storage: tables %s, %s, %s; bucket %s",
            self.settings.table_conversations,
            self.settings.table_sessions,
            self.settings.table_users,
            self.settings.bucket,
        )

    async def close(self) -> None:
        await self._stack.aclose()
