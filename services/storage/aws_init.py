"""`echo-voice aws init`: create Echo's DynamoDB tables and S3 bucket, idempotently.

The same schema Terraform creates in production (deploy/terraform/data.tf); this is for first runs
against a fresh account and for local stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common import aws
from services.storage.config import StorageSettings

TTL_ATTRIBUTE = "ttl"


async def _table(
    ddb: Any, name: str, keys: list[tuple[str, str]], say: Callable[[str], None], **extra: Any
) -> None:
    from botocore.exceptions import ClientError

    attributes = {k: "S" for k, _ in keys}
    for index in extra.get("GlobalSecondaryIndexes", []):
        attributes |= {k["AttributeName"]: "S" for k in index["KeySchema"]}
    try:
        await ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t in attributes.items()],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
            **extra,
        )
        say(f"table {name}: created")
    except ClientError as e:
        if aws.error_code(e) != "ResourceInUseException":
            raise
        say(f"table {name}: exists")
    await ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl = await ddb.describe_time_to_live(TableName=name)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        await ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        say(f"table {name}: TTL on '{TTL_ATTRIBUTE}' enabled")


async def _bucket(s3: Any, settings: StorageSettings, region: str, say: Callable[[str], None]) -> None:
    from botocore.exceptions import ClientError

    try:
        kwargs: dict[str, Any] = {"Bucket": settings.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        await s3.create_bucket(**kwargs)
        say(f"bucket {settings.bucket}: created")
    except ClientError as e:
        if aws.error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        say(f"bucket {settings.bucket}: exists")
    rule: dict[str, Any] = {"SSEAlgorithm": settings.s3_encryption}
    if settings.s3_encryption == "aws:kms" and settings.kms_key_id:
        rule["KMSMasterKeyID"] = settings.kms_key_id
    await s3.put_bucket_encryption(
        Bucket=settings.bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )
    await s3.put_public_access_block(
        Bucket=settings.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    await s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "audio-to-infrequent-access-then-expire",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
                    "Expiration": {"Days": 365},
                }
            ]
        },
    )
    say(
        f"bucket {settings.bucket}: encryption {settings.s3_encryption}, public access blocked, lifecycle set"
    )


async def init(settings: StorageSettings, say: Callable[[str], None] = print) -> None:
    region = aws.region(settings.region or None)
    with aws.aws_errors("aws init"):
        async with aws.client("dynamodb", region) as ddb:
            await _table(
                ddb,
                settings.table_conversations,
                [("conversation_id", "HASH"), ("timestamp", "RANGE")],
                say,
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": settings.session_index,
                        "KeySchema": [
                            {"AttributeName": "session_id", "KeyType": "HASH"},
                            {"AttributeName": "timestamp", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )
            await _table(ddb, settings.table_sessions, [("session_id", "HASH")], say)
        async with aws.client("s3", region) as s3:
            await _bucket(s3, settings, region, say)
