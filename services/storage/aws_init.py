"""`echo-voice aws init`: create Echo's DynamoDB tables and S3 bucket, idempotently.

The same schema Terraform creates in production (deploy/terraform/data.tf); this is for first runs
against a fresh account and for local stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common import aws
from services.common.config import ConfigError
from services.common.errors import InvalidArgument
from services.storage.backends.aws import AwsStorageSettings, check_s3_encryption

TTL_ATTRIBUTE = "ttl"
LIFECYCLE_RULE = "audio-to-infrequent-access-then-expire"
AUDIO_INFREQUENT_DAYS = 30  # S3's earliest Standard-IA transition


async def _table(
    ddb: Any, name: str, keys: list[tuple[str, str]], say: Callable[[str], None], **extra: Any
) -> None:
    from botocore.exceptions import ClientError

    attributes = {k: "S" for k, _ in keys}
    indexes = extra.get("GlobalSecondaryIndexes", [])
    for index in indexes:
        attributes |= {k["AttributeName"]: "S" for k in index["KeySchema"]}
    definitions = [{"AttributeName": k, "AttributeType": t} for k, t in attributes.items()]
    try:
        await ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
            AttributeDefinitions=definitions,
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
            **extra,
        )
        say(f"table {name}: created")
    except ClientError as e:
        if aws.error_code(e) != "ResourceInUseException":
            raise
        say(f"table {name}: exists")
    waiter = ddb.get_waiter("table_exists")
    await waiter.wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    # A table made before the index existed (or by hand) gets it now: listing a session's turns needs it.
    found = (await ddb.describe_table(TableName=name))["Table"]
    present = {i["IndexName"] for i in found.get("GlobalSecondaryIndexes", [])}
    for index in indexes:
        if index["IndexName"] not in present:
            await ddb.update_table(
                TableName=name,
                AttributeDefinitions=definitions,
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            say(f"table {name}: index {index['IndexName']} added")
    ttl = await ddb.describe_time_to_live(TableName=name)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        await ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        say(f"table {name}: TTL on '{TTL_ATTRIBUTE}' enabled")


def _index(name: str, hash_key: str, range_key: str = "") -> dict[str, Any]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}


def _not_implemented(error: Exception) -> bool:
    return aws.error_code(error) in ("NotImplemented", "NotImplementedException")


def _lifecycle(retention_days: int) -> tuple[dict[str, Any], str]:
    """The audio rule: expire after the retention (S3 objects expire by this rule, not by DynamoDB TTL),
    and Standard-IA first only for audio kept longer than S3's 30-day minimum for it."""
    rule: dict[str, Any] = {"ID": LIFECYCLE_RULE, "Status": "Enabled", "Filter": {"Prefix": ""}}
    said = []
    if retention_days == 0 or retention_days > AUDIO_INFREQUENT_DAYS:
        rule["Transitions"] = [{"Days": AUDIO_INFREQUENT_DAYS, "StorageClass": "STANDARD_IA"}]
        said.append(f"Standard-IA after {AUDIO_INFREQUENT_DAYS} days")
    if retention_days > 0:
        rule["Expiration"] = {"Days": retention_days}
        said.append(f"expire after {retention_days} (ECHO_STORAGE_RETENTION_DAYS)")
    return rule, ", ".join(said)


async def _bucket(
    s3: Any, settings: AwsStorageSettings, region: str, retention_days: int, say: Callable[[str], None]
) -> None:
    from botocore.exceptions import ClientError

    name = settings.bucket
    # Asked first: in us-east-1 CreateBucket on a bucket you own succeeds again, so it cannot tell.
    try:
        await s3.head_bucket(Bucket=name)
        say(f"bucket {name}: exists")
    except ClientError as e:
        if aws.error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        await s3.create_bucket(**kwargs)
        say(f"bucket {name}: created")
    rule: dict[str, Any] = {"SSEAlgorithm": settings.s3_encryption}
    if settings.s3_encryption == "aws:kms" and settings.kms_key_id:
        rule["KMSMasterKeyID"] = settings.kms_key_id
    await s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )
    say(f"bucket {name}: default encryption {settings.s3_encryption}")
    # S3-compatible stores (SeaweedFS, for one) lack some of S3's bucket settings. Echo works without
    # them, so say plainly what this endpoint did not take rather than fail the whole command.
    try:
        await s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        say(f"bucket {name}: public access blocked")
    except ClientError as e:
        if not _not_implemented(e):
            raise
        say(f"bucket {name}: WARNING this endpoint has no public access block; keep the bucket private")
    rule, said = _lifecycle(retention_days)
    try:
        await s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [rule]})
        say(f"bucket {name}: lifecycle: {said}")
    except ClientError as e:
        if not _not_implemented(e) or "Transitions" not in rule or "Expiration" not in rule:
            raise
        del rule["Transitions"]
        await s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [rule]})
        say(
            f"bucket {name}: lifecycle: expire after {retention_days} days "
            "(this endpoint has no storage-class transitions)"
        )


async def init(
    settings: AwsStorageSettings, say: Callable[[str], None] = print, retention_days: int | None = None
) -> None:
    if retention_days is None:
        from services.storage import config

        retention_days = config.load().retention_days
    try:
        check_s3_encryption(settings)
    except ConfigError as e:  # the command reports service errors as "error: ..." (no traceback)
        raise InvalidArgument(str(e)) from None
    region = aws.region(settings.region or None)
    with aws.aws_errors("aws init"):
        async with aws.client("dynamodb", region) as ddb:
            await _table(
                ddb,
                settings.table_conversations,
                [("conversation_id", "HASH"), ("timestamp", "RANGE")],
                say,
                GlobalSecondaryIndexes=[
                    _index(settings.session_index, "session_id", "timestamp"),
                    # A user's conversations by last activity: only header items have last_timestamp.
                    _index(settings.user_index, "user_id", "last_timestamp"),
                ],
            )
            await _table(ddb, settings.table_sessions, [("session_id", "HASH")], say)
            await _table(
                ddb,
                settings.table_users,
                [("pk", "HASH"), ("sk", "RANGE")],
                say,
                GlobalSecondaryIndexes=[_index(settings.key_index, "key_sha256")],
            )
        async with aws.client("s3", region) as s3:
            await _bucket(s3, settings, region, retention_days, say)
