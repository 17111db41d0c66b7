"""DynamoDB records: sessions, turns and one header item per conversation (echo-conversations).

The header (sort key HEADER_SK, after every timestamp) holds the owner, first/last turn time, turn
count, last input, summary and the conversation's session ids; the GSI on user_id + last_timestamp
lists a user's conversations newest first with one Query per page. A header made by SaveSession before
any turn has last_timestamp NO_TURNS, which sorts last and is filtered out of listings.
"""

from __future__ import annotations

from typing import Any

from echo.v1 import storage_pb2
from services.common import aws
from services.common.errors import AlreadyExists
from services.storage.backends.aws_dynamo import TTL, conditional, from_json, query_all, to_json
from services.storage.backends.base import (
    Deleted,
    check_id,
    check_limit,
    decode_cursor,
    encode_cursor,
    not_found_conversation,
    not_found_session,
    now_iso,
    session_record,
    turn_audio_keys,
    turn_record,
)

HEADER_SK = "~header"  # "~" sorts after every ISO-8601 timestamp: the turns are a range before it
NO_TURNS = "0"


def _turn(item: dict[str, Any]) -> storage_pb2.Turn:
    return storage_pb2.Turn(
        conversation_id=item["conversation_id"],
        timestamp=item["timestamp"],
        session_id=item.get("session_id", ""),
        turn_id=item.get("turn_id", ""),
        client_input=item.get("client_input", ""),
        agent_response=item.get("agent_response", ""),
        metadata_json=to_json(item.get("metadata")),
        ttl=int(item.get("ttl", 0)),
        input_audio_key=item.get("input_audio_key", ""),
        output_audio_key=item.get("output_audio_key", ""),
        interrupted=bool(item.get("interrupted", False)),
        user_id=item.get("user_id", ""),
    )


class DynamoConversationStore:
    def __init__(self, settings: Any, resources: dict[str, Any], retention_days: int) -> None:
        self.settings = settings
        self.resources = resources  # set by AwsBackend.start(): the DynamoDB tables
        self.retention_days = retention_days

    @property
    def turns(self) -> Any:
        return self.resources["turns"]

    @property
    def sessions(self) -> Any:
        return self.resources["sessions"]

    def _key(self, conversation_id: str) -> dict[str, str]:
        return {"conversation_id": conversation_id, "timestamp": HEADER_SK}

    async def _claim(self, user_id: str, conversation_id: str, session_id: str, ttl: int) -> None:
        """The header is the user's from now on, or already was; another user's is NotFound."""
        expression = "SET user_id = if_not_exists(user_id, :u), "
        expression += "last_timestamp = if_not_exists(last_timestamp, :none)"
        values: dict[str, Any] = {":u": user_id, ":none": NO_TURNS, ":sid": {session_id}}
        names: dict[str, str] = {}
        if ttl:
            expression += ", #ttl = :ttl"
            values[":ttl"] = ttl
            names = TTL
        done = await conditional(
            self.turns.update_item(
                Key=self._key(conversation_id),
                UpdateExpression=expression + " ADD session_ids :sid",
                ConditionExpression="attribute_not_exists(user_id) OR user_id = :u",
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            ),
            "DynamoDB UpdateItem (conversation header)",
        )
        if done is None:
            raise not_found_conversation(conversation_id)

    async def _header(self, user_id: str, conversation_id: str) -> dict[str, Any]:
        check_id("conversation_id", conversation_id)
        with aws.aws_errors("DynamoDB GetItem (conversation header)"):
            found = await self.turns.get_item(Key=self._key(conversation_id))
        item = found.get("Item")
        if item is None or item.get("user_id") != user_id:
            raise not_found_conversation(conversation_id)
        return dict(item)

    async def save_session(self, session: storage_pb2.Session) -> storage_pb2.Session:
        record = session_record(session, now_iso(), self.retention_days)
        await self._claim(record.user_id, record.conversation_id, record.session_id, record.ttl)
        item: dict[str, Any] = {
            "session_id": record.session_id,
            "conversation_id": record.conversation_id,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "metadata": from_json(record.metadata_json),
            "user_id": record.user_id,
        }
        if record.ttl:
            item["ttl"] = record.ttl
        done = await conditional(
            self.sessions.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(session_id) OR user_id = :u",
                ExpressionAttributeValues={":u": record.user_id},
            ),
            "DynamoDB PutItem (sessions)",
        )
        if done is None:
            raise not_found_session(record.session_id)
        return record

    async def get_session(self, user_id: str, session_id: str) -> storage_pb2.Session:
        check_id("session_id", session_id)
        with aws.aws_errors("DynamoDB GetItem (sessions)"):
            found = await self.sessions.get_item(Key={"session_id": session_id})
        item = found.get("Item")
        if item is None or item.get("user_id") != user_id:
            raise not_found_session(session_id)
        return storage_pb2.Session(
            session_id=item["session_id"],
            conversation_id=item.get("conversation_id", ""),
            created_at=item.get("created_at", ""),
            updated_at=item.get("updated_at", ""),
            metadata_json=to_json(item.get("metadata")),
            ttl=int(item.get("ttl", 0)),
            user_id=user_id,
        )

    async def save_turn(self, turn: storage_pb2.Turn) -> storage_pb2.Turn:
        record = turn_record(turn, self.retention_days)
        await self._claim(record.user_id, record.conversation_id, record.session_id, record.ttl)
        item: dict[str, Any] = {
            "conversation_id": record.conversation_id,
            "timestamp": record.timestamp,
            "session_id": record.session_id,
            "turn_id": record.turn_id,
            "client_input": record.client_input,
            "agent_response": record.agent_response,
            "metadata": from_json(record.metadata_json),
            "input_audio_key": record.input_audio_key,
            "output_audio_key": record.output_audio_key,
            "interrupted": record.interrupted,
            "user_id": record.user_id,
        }
        if record.ttl:
            item["ttl"] = record.ttl
        # A retried save of the same turn replaces it; another turn may not take its key over.
        key = self._key(record.conversation_id)
        if not await self._put_new_turn(item, key):
            # Already there: a retry of the same turn replaces it (uncounted); another turn may not
            # take its key over.
            saved = await conditional(
                self.turns.put_item(
                    Item=item,
                    ConditionExpression="turn_id = :turn_id",
                    ExpressionAttributeValues={":turn_id": record.turn_id},
                ),
                "DynamoDB PutItem (conversations)",
            )
            if saved is None:
                raise AlreadyExists(
                    f"conversation {record.conversation_id!r} has another turn at {record.timestamp}"
                )
        # Turns may arrive out of order: each bound moves only outwards (a no-op when it holds).
        ts = record.timestamp
        await conditional(
            self.turns.update_item(
                Key=key,
                UpdateExpression="SET first_timestamp = :ts",
                ConditionExpression="attribute_not_exists(first_timestamp) OR first_timestamp >= :ts",
                ExpressionAttributeValues={":ts": ts},
            ),
            "DynamoDB UpdateItem (conversation header)",
        )
        await conditional(
            self.turns.update_item(
                Key=key,
                UpdateExpression="SET last_timestamp = :ts, last_client_input = :input",
                ConditionExpression="last_timestamp <= :ts",
                ExpressionAttributeValues={":ts": ts, ":input": record.client_input},
            ),
            "DynamoDB UpdateItem (conversation header)",
        )
        return record

    async def _put_new_turn(self, item: dict[str, Any], header: dict[str, str]) -> bool:
        """Writes a turn that is not stored yet and counts it in its header, in one transaction (so
        the count is exact even when a save fails half way); False when the turn is already there."""
        from botocore.exceptions import ClientError

        table = self.settings.table_conversations
        try:
            # The resource's client takes plain Python values, as the Table methods do.
            await self.turns.meta.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(conversation_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": header,
                            "UpdateExpression": "ADD turn_count :one",
                            "ConditionExpression": "user_id = :u",
                            "ExpressionAttributeValues": {":one": 1, ":u": item["user_id"]},
                        }
                    },
                ]
            )
        except ClientError as e:
            reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
            if aws.error_code(e) == "TransactionCanceledException" and reasons[:1] == [
                "ConditionalCheckFailed"
            ]:
                return False
            if aws.error_code(e) == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
                raise not_found_conversation(item["conversation_id"]) from None
            raise aws.map_error(e, "DynamoDB TransactWriteItems (turn + header)") from e
        except Exception as e:
            raise aws.map_error(e, "DynamoDB TransactWriteItems (turn + header)") from e
        return True

    async def _items(self, conversation_id: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        return await query_all(self.turns, KeyConditionExpression=Key("conversation_id").eq(conversation_id))

    async def get_conversation(self, user_id: str, conversation_id: str) -> storage_pb2.Conversation:
        header = await self._header(user_id, conversation_id)
        items = await self._items(conversation_id)
        turns = [_turn(i) for i in items if i["timestamp"] != HEADER_SK]
        summary = header.get("summary", "")
        if not turns and not summary:
            raise not_found_conversation(conversation_id)
        return storage_pb2.Conversation(
            conversation_id=conversation_id, turns=turns, summary=summary, user_id=user_id
        )

    async def list_conversations(
        self, user_id: str, limit: int, cursor: str = "", session_id: str = ""
    ) -> tuple[list[storage_pb2.ConversationSummary], str]:
        from boto3.dynamodb.conditions import Attr, Key

        limit = check_limit(limit)
        after = decode_cursor(cursor, user_id)
        listed = Attr("turn_count").gt(0)
        if session_id:
            listed = listed & Attr("session_ids").contains(session_id)
        kwargs: dict[str, Any] = {
            "IndexName": self.settings.user_index,
            "KeyConditionExpression": Key("user_id").eq(user_id),
            "FilterExpression": listed,
            "ScanIndexForward": False,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "user_id": user_id,
                "last_timestamp": str(after.get("last_ts")),
                "conversation_id": str(after.get("conversation_id")),
                "timestamp": HEADER_SK,
            }
        items: list[dict[str, Any]] = []
        # One item past the page tells whether there is a next one (so the last page has no cursor).
        with aws.aws_errors("DynamoDB Query (conversations by user)"):
            while len(items) <= limit:
                page = await self.turns.query(Limit=limit + 1 - len(items), **kwargs)
                items += page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        found = [
            storage_pb2.ConversationSummary(
                conversation_id=i["conversation_id"],
                first_timestamp=i.get("first_timestamp", ""),
                last_timestamp=i["last_timestamp"],
                turn_count=int(i.get("turn_count", 0)),
                summary=i.get("summary", ""),
                last_client_input=i.get("last_client_input", ""),
            )
            for i in items[:limit]
        ]
        next_cursor = ""
        if len(items) > limit:
            next_cursor = encode_cursor(
                {
                    "user_id": user_id,
                    "last_ts": found[-1].last_timestamp,
                    "conversation_id": found[-1].conversation_id,
                }
            )
        return found, next_cursor

    async def save_summary(self, user_id: str, conversation_id: str, summary: str) -> None:
        check_id("conversation_id", conversation_id)
        done = await conditional(
            self.turns.update_item(
                Key=self._key(conversation_id),
                UpdateExpression="SET summary = :s",
                ConditionExpression="user_id = :u AND turn_count > :zero",
                ExpressionAttributeValues={":s": summary, ":u": user_id, ":zero": 0},
            ),
            "DynamoDB UpdateItem (summary)",
        )
        if done is None:
            raise not_found_conversation(conversation_id)

    async def _delete(self, header: dict[str, Any]) -> Deleted:
        """The conversation's sessions, turns and header."""
        conversation_id = header["conversation_id"]
        deleted = Deleted(conversations=1)
        for session_id in sorted(header.get("session_ids", ())):
            gone = await conditional(
                self.sessions.delete_item(
                    Key={"session_id": session_id},
                    ConditionExpression="user_id = :u",
                    ExpressionAttributeValues={":u": header["user_id"]},
                ),
                "DynamoDB DeleteItem (sessions)",
            )
            deleted.sessions += gone is not None
        items = await self._items(conversation_id)
        with aws.aws_errors("DynamoDB DeleteItem (conversations)"):
            for i in items:
                await self.turns.delete_item(
                    Key={"conversation_id": i["conversation_id"], "timestamp": i["timestamp"]}
                )
        turns = [_turn(i) for i in items if i["timestamp"] != HEADER_SK]
        deleted.turns, deleted.audio_keys = len(turns), turn_audio_keys(turns)
        return deleted

    async def delete_conversation(self, user_id: str, conversation_id: str) -> Deleted:
        return await self._delete(await self._header(user_id, conversation_id))

    async def delete_user(self, user_id: str) -> Deleted:
        from boto3.dynamodb.conditions import Key

        headers = await query_all(
            self.turns, IndexName=self.settings.user_index, KeyConditionExpression=Key("user_id").eq(user_id)
        )
        total = Deleted()
        for header in headers:
            deleted = await self._delete(header)
            total.conversations += 1
            total.sessions += deleted.sessions
            total.turns += deleted.turns
        return total
