"""AWS storage: turns and sessions in DynamoDB, audio in S3 (the roadmap's production layout).

Tables (created by `echo-voice aws init` or Terraform, same schema):
- echo-conversations: PK conversation_id, SK timestamp; GSI session_id + timestamp; TTL attribute ttl.
  A conversation's summary lives in the same partition under the sort key SUMMARY_SK.
- echo-sessions: PK session_id; TTL attribute ttl.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from echo.v1 import storage_pb2
from services.common import aws
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.storage.backends.base import check_id, check_key, check_metadata, check_turn
from services.storage.config import StorageSettings

log = logging.getLogger("echo.storage.aws")
CHUNK = 64 * 1024
# Sorts after every ISO-8601 timestamp, so a conversation's turns are a plain range before it.
SUMMARY_SK = "~summary"
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
    session_index: str = field(
        default="session_id-timestamp-index", metadata={"help": "GSI for a session's turns"}
    )
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


def _from_json(metadata_json: str) -> dict[str, Any]:
    # DynamoDB numbers are Decimals; floats would be refused.
    return json.loads(metadata_json or "{}", parse_float=Decimal)


def _to_json(value: Any) -> str:
    return json.dumps(value or {}, default=lambda d: float(d) if isinstance(d, Decimal) else str(d))


def _turn(item: dict[str, Any]) -> storage_pb2.Turn:
    return storage_pb2.Turn(
        conversation_id=item["conversation_id"],
        timestamp=item["timestamp"],
        session_id=item.get("session_id", ""),
        turn_id=item.get("turn_id", ""),
        client_input=item.get("client_input", ""),
        agent_response=item.get("agent_response", ""),
        metadata_json=_to_json(item.get("metadata")),
        ttl=int(item.get("ttl", 0)),
        input_audio_key=item.get("input_audio_key", ""),
        output_audio_key=item.get("output_audio_key", ""),
        interrupted=bool(item.get("interrupted", False)),
    )


class DynamoConversationStore:
    def __init__(self, settings: AwsStorageSettings, resources: Any) -> None:
        self.settings = settings
        self.resources = resources  # set by AwsBackend.start(): the DynamoDB tables

    @property
    def turns(self) -> Any:
        return self.resources["turns"]

    @property
    def sessions(self) -> Any:
        return self.resources["sessions"]

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        check_id("session_id", session.session_id)
        check_id("conversation_id", session.conversation_id)
        check_metadata(session.metadata_json)
        from datetime import UTC, datetime

        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        record = storage_pb2.Session()
        record.CopyFrom(session)
        record.created_at = record.created_at or now
        record.updated_at = now
        item: dict[str, Any] = {
            "session_id": record.session_id,
            "conversation_id": record.conversation_id,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "metadata": _from_json(record.metadata_json),
        }
        if record.ttl:
            item["ttl"] = record.ttl
        with aws.aws_errors("DynamoDB PutItem (sessions)"):
            await self.sessions.put_item(Item=item)
        return record

    async def get_session(self, session_id: str) -> storage_pb2.Session:
        check_id("session_id", session_id)
        with aws.aws_errors("DynamoDB GetItem (sessions)"):
            found = await self.sessions.get_item(Key={"session_id": session_id})
        item = found.get("Item")
        if item is None:
            raise NotFound(f"no session {session_id!r}")
        return storage_pb2.Session(
            session_id=item["session_id"],
            conversation_id=item.get("conversation_id", ""),
            created_at=item.get("created_at", ""),
            updated_at=item.get("updated_at", ""),
            metadata_json=_to_json(item.get("metadata")),
            ttl=int(item.get("ttl", 0)),
        )

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        check_turn(turn)
        item: dict[str, Any] = {
            "conversation_id": turn.conversation_id,
            "timestamp": turn.timestamp,
            "session_id": turn.session_id,
            "turn_id": turn.turn_id,
            "client_input": turn.client_input,
            "agent_response": turn.agent_response,
            "metadata": _from_json(turn.metadata_json),
            "input_audio_key": turn.input_audio_key,
            "output_audio_key": turn.output_audio_key,
            "interrupted": turn.interrupted,
        }
        if turn.ttl:
            item["ttl"] = turn.ttl
        from botocore.exceptions import ClientError

        try:
            # A retried save of the same turn replaces it; another turn may not take its key over.
            await self.turns.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(conversation_id) OR turn_id = :turn_id",
                ExpressionAttributeValues={":turn_id": turn.turn_id},
            )
        except ClientError as e:
            if aws.error_code(e) == "ConditionalCheckFailedException":
                raise AlreadyExists(
                    f"conversation {turn.conversation_id!r} has another turn at {turn.timestamp}"
                ) from None
            raise aws.map_error(e, "DynamoDB PutItem (conversations)") from e
        except Exception as e:
            raise aws.map_error(e, "DynamoDB PutItem (conversations)") from e
        return turn

    async def _query(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        with aws.aws_errors("DynamoDB Query"):
            while True:
                page = await self.turns.query(**kwargs)
                items += page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def get_conversation(self, conversation_id: str) -> storage_pb2.Conversation:
        from boto3.dynamodb.conditions import Key

        check_id("conversation_id", conversation_id)
        items = await self._query(KeyConditionExpression=Key("conversation_id").eq(conversation_id))
        if not items:
            raise NotFound(f"no conversation {conversation_id!r}")
        turns = [_turn(i) for i in items if i["timestamp"] != SUMMARY_SK]
        summary = next((i.get("summary", "") for i in items if i["timestamp"] == SUMMARY_SK), "")
        return storage_pb2.Conversation(conversation_id=conversation_id, turns=turns, summary=summary)

    async def list_conversations(
        self, limit: int, session_id: str = ""
    ) -> list[storage_pb2.ConversationSummary]:
        from boto3.dynamodb.conditions import Key

        if limit < 0:
            raise InvalidArgument("limit must be >= 0")
        limit = min(limit or 50, 500)
        if session_id:
            check_id("session_id", session_id)
            ids = {
                i["conversation_id"]
                for i in await self._query(
                    IndexName=self.settings.session_index,
                    KeyConditionExpression=Key("session_id").eq(session_id),
                )
            }
        else:
            # An administrative listing: a Scan of the keys only. Per-user listings at scale would
            # go through an index of their own.
            ids = set()
            kwargs: dict[str, Any] = {"ProjectionExpression": "conversation_id"}
            with aws.aws_errors("DynamoDB Scan"):
                while True:
                    page = await self.turns.scan(**kwargs)
                    ids |= {i["conversation_id"] for i in page.get("Items", [])}
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        summaries = []
        for conversation_id in ids:
            conversation = await self.get_conversation(conversation_id)
            if not conversation.turns:
                continue
            summaries.append(
                storage_pb2.ConversationSummary(
                    conversation_id=conversation_id,
                    first_timestamp=conversation.turns[0].timestamp,
                    last_timestamp=conversation.turns[-1].timestamp,
                    turn_count=len(conversation.turns),
                    summary=conversation.summary,
                    last_client_input=conversation.turns[-1].client_input,
                )
            )
        summaries.sort(key=lambda s: s.last_timestamp, reverse=True)
        return summaries[:limit]

    async def save_summary(self, conversation_id: str, summary: str) -> None:
        from boto3.dynamodb.conditions import Key

        check_id("conversation_id", conversation_id)
        with aws.aws_errors("DynamoDB Query"):
            first = await self.turns.query(
                KeyConditionExpression=Key("conversation_id").eq(conversation_id), Limit=1
            )
        if not first.get("Items"):
            raise NotFound(f"no conversation {conversation_id!r}")
        with aws.aws_errors("DynamoDB PutItem (summary)"):
            await self.turns.put_item(
                Item={"conversation_id": conversation_id, "timestamp": SUMMARY_SK, "summary": summary}
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

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int) -> int:
        check_key(key)
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > max_bytes:
                raise InvalidArgument(f"audio object {key!r} is over the {max_bytes}-byte limit")
        with aws.aws_errors("S3 PutObject"):
            await self.s3.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=bytes(body),
                ContentType=content_type or "application/octet-stream",
                **self._encryption(),
            )
        return len(body)

    async def get(self, key: str) -> AsyncIterator[tuple[bytes, str]]:
        check_key(key)
        from botocore.exceptions import ClientError

        try:
            found = await self.s3.get_object(Bucket=self.settings.bucket, Key=key)
        except ClientError as e:
            if aws.error_code(e) in ("NoSuchKey", "404"):
                raise NotFound(f"no audio {key!r}") from None
            raise aws.map_error(e, "S3 GetObject") from e
        content_type = found.get("ContentType", "application/octet-stream")
        body = found["Body"]
        try:
            while chunk := await body.read(CHUNK):
                yield chunk, content_type
        finally:
            body.close()

    async def url(self, key: str) -> str:
        check_key(key)
        with aws.aws_errors("S3 presign"):
            return await self.s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.settings.bucket, "Key": key},
                ExpiresIn=self.presign_seconds,
            )


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
        self.conversations = DynamoConversationStore(settings, self._resources)
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
            self._resources["s3"] = await self._stack.enter_async_context(
                # SigV4: presigned URLs must work in every region (newer ones refuse SigV2).
                aws.client("s3", self.settings.region or None, aws_session=session, signature_version="s3v4")
            )
        # Fail at start, with a clear message, when the tables or the bucket are missing or out of reach.
        turns, sessions, s3 = self._resources["turns"], self._resources["sessions"], self._resources["s3"]
        checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (f"DynamoDB DescribeTable ({self.settings.table_conversations})", lambda: turns.load()),
            (f"DynamoDB DescribeTable ({self.settings.table_sessions})", lambda: sessions.load()),
            (f"S3 HeadBucket ({self.settings.bucket})", lambda: s3.head_bucket(Bucket=self.settings.bucket)),
        ]
        for operation, check in checks:
            try:
                with aws.aws_errors(operation):
                    await check()
            except NotFound as e:
                raise NotFound(f"{e}; create them with `echo-voice aws init` (or Terraform)") from e
        log.info(
            "AWS storage: tables %s, %s; bucket %s",
            self.settings.table_conversations,
            self.settings.table_sessions,
            self.settings.bucket,
        )

    async def close(self) -> None:
        await self._stack.aclose()
