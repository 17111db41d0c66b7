"""DynamoDB user records (echo-users, PK pk + SK sk): API keys and daily usage.

- API key: pk "apikey", sk key_id; user_id, key_sha256, label, created_at, revoked_at. All keys share
  one partition, so listing them (all, or one user's) is a Query; the GSI on key_sha256 finds a key by
  its hash. Keys do not expire with the retention.
- Daily usage: pk "usage#<user_id>", sk the UTC day; audio_s, cost_usd, turns added with UpdateItem ADD;
  ttl = now + the retention.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from echo.v1 import storage_pb2
from services.common import aws
from services.common.errors import AlreadyExists, NotFound
from services.storage.backends.aws_dynamo import TTL, conditional, query_all
from services.storage.backends.base import (
    check_day,
    check_key_id,
    check_sha256,
    check_usage,
    check_user,
    listed_key,
    new_key_record,
    now_iso,
    retention_ttl,
)

KEYS_PK = "apikey"
KEY_FIELDS = ("key_id", "user_id", "key_sha256", "label", "created_at", "revoked_at")


def _key(item: dict[str, Any]) -> storage_pb2.ApiKey:
    return storage_pb2.ApiKey(**{f: item.get(f, "") for f in KEY_FIELDS})


def _usage(user_id: str, day: str, item: dict[str, Any] | None) -> storage_pb2.DailyUsage:
    item = item or {}
    return storage_pb2.DailyUsage(
        user_id=user_id,
        day=day,
        audio_s=float(item.get("audio_s", 0)),
        cost_usd=float(item.get("cost_usd", 0)),
        turns=int(item.get("turns", 0)),
    )


class DynamoUserStore:
    def __init__(self, settings: Any, resources: dict[str, Any], retention_days: int) -> None:
        self.settings = settings
        self.resources = resources
        self.retention_days = retention_days

    @property
    def table(self) -> Any:
        return self.resources["users"]

    async def _by_hash(self, key_sha256: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        with aws.aws_errors("DynamoDB Query (API key by hash)"):
            found = await self.table.query(
                IndexName=self.settings.key_index, KeyConditionExpression=Key("key_sha256").eq(key_sha256)
            )
        return list(found.get("Items", []))

    async def create_key(self, key: storage_pb2.ApiKey) -> storage_pb2.ApiKey:
        record = new_key_record(key, now_iso())
        if await self._by_hash(record.key_sha256):
            raise AlreadyExists("an API key with this hash exists")
        item = {"pk": KEYS_PK, "sk": record.key_id} | {f: getattr(record, f) for f in KEY_FIELDS}
        done = await conditional(
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)"),
            "DynamoDB PutItem (API key)",
        )
        if done is None:
            raise AlreadyExists(f"an API key with id {record.key_id!r} exists")
        return record

    async def lookup_key(self, key_sha256: str) -> storage_pb2.ApiKey:
        found = await self._by_hash(check_sha256(key_sha256))
        if not found:
            raise NotFound("no such API key")
        return _key(found[0])

    async def _keys(self, user_id: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Attr, Key

        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(KEYS_PK)}
        if user_id:
            kwargs["FilterExpression"] = Attr("user_id").eq(user_id)
        return await query_all(self.table, **kwargs)

    async def list_keys(self, user_id: str = "") -> list[storage_pb2.ApiKey]:
        keys = sorted((_key(i) for i in await self._keys(user_id)), key=lambda k: (k.created_at, k.key_id))
        return [listed_key(k) for k in keys]

    async def revoke_key(self, key_id: str) -> storage_pb2.ApiKey:
        check_key_id(key_id)
        done = await conditional(
            self.table.update_item(
                Key={"pk": KEYS_PK, "sk": key_id},
                UpdateExpression="SET revoked_at = :now",
                ConditionExpression="attribute_exists(pk) AND revoked_at = :none",
                ExpressionAttributeValues={":now": now_iso(), ":none": ""},
                ReturnValues="ALL_NEW",
            ),
            "DynamoDB UpdateItem (API key)",
        )
        if done is not None:
            return _key(done["Attributes"])
        # Unknown, or revoked before: that first revocation stands.
        with aws.aws_errors("DynamoDB GetItem (API key)"):
            found = await self.table.get_item(Key={"pk": KEYS_PK, "sk": key_id})
        if "Item" not in found:
            raise NotFound(f"no API key {key_id!r}")
        return _key(found["Item"])

    async def add_usage(self, usage: storage_pb2.DailyUsage) -> storage_pb2.DailyUsage:
        check_usage(usage)
        values: dict[str, Any] = {
            ":a": Decimal(repr(usage.audio_s)),
            ":c": Decimal(repr(usage.cost_usd)),
            ":t": usage.turns,
        }
        expression = "ADD audio_s :a, cost_usd :c, turns :t"
        extra: dict[str, Any] = {}
        ttl = retention_ttl(0, self.retention_days)
        if ttl:
            expression += " SET #ttl = if_not_exists(#ttl, :ttl)"
            values[":ttl"] = ttl
            extra["ExpressionAttributeNames"] = TTL
        with aws.aws_errors("DynamoDB UpdateItem (usage)"):
            total = await self.table.update_item(
                Key={"pk": f"usage#{usage.user_id}", "sk": usage.day},
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **extra,
            )
        return _usage(usage.user_id, usage.day, total.get("Attributes"))

    async def get_usage(self, user_id: str, day: str) -> storage_pb2.DailyUsage:
        check_user(user_id)
        check_day(day)
        with aws.aws_errors("DynamoDB GetItem (usage)"):
            found = await self.table.get_item(Key={"pk": f"usage#{user_id}", "sk": day})
        return _usage(user_id, day, found.get("Item"))

    async def delete_user(self, user_id: str) -> int:
        from boto3.dynamodb.conditions import Key

        usage = await query_all(self.table, KeyConditionExpression=Key("pk").eq(f"usage#{user_id}"))
        keys = await self._keys(user_id)
        with aws.aws_errors("DynamoDB DeleteItem (users)"):
            for item in usage + keys:
                await self.table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        return len(keys)
