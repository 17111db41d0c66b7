"""DynamoDB helpers the storage record stores share."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from services.common import aws

TTL = {"#ttl": "ttl"}  # TTL is a DynamoDB reserved word


def from_json(metadata_json: str) -> dict[str, Any]:
    # DynamoDB numbers are Decimals; floats would be refused.
    return dict(json.loads(metadata_json or "{}", parse_float=Decimal))


def to_json(value: Any) -> str:
    return json.dumps(value or {}, default=lambda d: float(d) if isinstance(d, Decimal) else str(d))


async def conditional(call: Awaitable[Any], operation: str) -> Any | None:
    """The call's answer, or None when its ConditionExpression did not hold."""
    from botocore.exceptions import ClientError

    try:
        return await call
    except ClientError as e:
        if aws.error_code(e) == "ConditionalCheckFailedException":
            return None
        raise aws.map_error(e, operation) from e
    except Exception as e:
        raise aws.map_error(e, operation) from e


async def query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    with aws.aws_errors("DynamoDB Query"):
        while True:
            page = await table.query(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
