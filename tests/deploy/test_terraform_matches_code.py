"""The Terraform agrees with the code it deploys: every AWS call a service makes is granted to its task
role, the llm role covers every Bedrock model the routing table can pick, the stt role's S3 prefix is the
one the Transcribe backend uses, and the gateway's session metric is published under the names the
scaling policy, dashboard and IAM condition read. Each reads the code itself, so a change on either side
that breaks the other fails here."""

from __future__ import annotations

import dataclasses
import re

import botocore.session
import yaml
from botocore import xform_name

from gateway import cloudwatch_metrics
from gateway.config import GatewaySettings
from services.storage.backends.aws import AwsStorageSettings
from tests.deploy.conftest import REPO, TerraformModule

# Per service: the code that calls AWS, the botocore services those calls go to, and the calls whose
# IAM action is not "<prefix>:<Operation>" (or that are no botocore operation at all).
AWS_CALLERS: dict[str, tuple[list[str], list[str], dict[str, str]]] = {
    "stt": (
        ["services/stt/backends/transcribe.py"],
        ["transcribe", "s3"],
        # amazon-transcribe's streaming client, not botocore.
        {"start_stream_transcription": "transcribe:StartStreamTranscription"},
    ),
    "llm": (
        ["services/llm/backends/bedrock.py"],
        ["bedrock-runtime", "bedrock"],
        {"converse_stream": "bedrock:InvokeModelWithResponseStream"},
    ),
    "tts": (["services/tts/backends/polly.py"], ["polly"], {}),
    # services/storage/aws_init.py is `echo-voice aws init`, an operator command; on ECS Terraform
    # creates the tables and bucket, so the storage task needs none of its create/update calls.
    "storage": (
        [
            "services/storage/backends/aws.py",
            "services/storage/backends/aws_records.py",
            "services/storage/backends/aws_users.py",
            "services/storage/backends/aws_dynamo.py",
        ],
        ["dynamodb", "s3"],
        {
            "load": "dynamodb:DescribeTable",  # boto3's Table.load()
            # A transaction is authorised as its parts: a Put and an Update of the conversations table.
            "transact_write_items": "dynamodb:PutItem",
            "head_bucket": "s3:ListBucket",  # HeadBucket is authorised as ListBucket
            "head_object": "s3:GetObject",  # HeadObject is authorised as GetObject
            "list_objects_v2": "s3:ListBucket",
            "generate_presigned_url": "s3:GetObject",  # the URL carries this role's GetObject
        },
    ),
    "gateway": (["gateway/cloudwatch_metrics.py"], ["cloudwatch"], {}),
}
IAM_PREFIX = {"bedrock-runtime": "bedrock"}
CALL = re.compile(r"\.([a-z][a-z0-9_]*)\(")


def _required_actions(svc: str) -> set[str]:
    files, services, special = AWS_CALLERS[svc]
    session = botocore.session.get_session()
    operations: dict[str, str] = {}
    for service in services:
        prefix = IAM_PREFIX.get(service, service)
        for name in session.get_service_model(service).operation_names:
            operations[xform_name(name)] = f"{prefix}:{name}"
    called = {m for f in files for m in CALL.findall((REPO / f).read_text())}
    return {special.get(c) or operations[c] for c in called if c in special or c in operations}


def _granted_actions(root_module: TerraformModule, svc: str) -> set[str]:
    document = root_module.data["aws_iam_policy_document"][f"{svc}_task"]
    return {
        action
        for statement in document["statement"]
        if statement.get("effect", "Allow") == "Allow"
        for action in statement["actions"]
    }


def test_every_aws_call_is_granted(root_module: TerraformModule) -> None:
    required = {svc: _required_actions(svc) for svc in AWS_CALLERS}
    # The scan finds the calls (a broken pattern would find nothing and prove nothing).
    assert {"dynamodb:Query", "dynamodb:UpdateItem", "s3:PutObject", "s3:DeleteObject"} <= required["storage"]
    # Listing is a Query on the user index: the storage code never scans a table.
    assert "dynamodb:Scan" not in required["storage"]
    assert {"transcribe:StartTranscriptionJob", "transcribe:GetTranscriptionJob"} <= required["stt"]
    assert {"bedrock:InvokeModelWithResponseStream", "bedrock:ListFoundationModels"} <= required["llm"]
    assert {"polly:SynthesizeSpeech", "polly:DescribeVoices"} <= required["tts"]
    assert required["gateway"] == {"cloudwatch:PutMetricData"}
    for svc, actions in required.items():
        missing = actions - _granted_actions(root_module, svc)
        assert not missing, f"{svc}'s code calls {sorted(missing)}, which its task role does not grant"


def test_llm_grant_covers_every_bedrock_model_routed_to(root_module: TerraformModule) -> None:
    table = yaml.safe_load((REPO / "services/llm/bedrock_models.yaml").read_text())
    routed = {
        model
        for purpose in table["purposes"].values()
        for model in (purpose.get("model"), purpose.get("fallback"))
        if model
    }
    assert routed, "bedrock_models.yaml routes to no model"
    granted = root_module.defaults()["bedrock_model_ids"]
    assert not routed - set(granted), f"models routed to but not granted by default: {routed - set(granted)}"
    # The first id becomes BEDROCK_MODEL_ID, which replaces the "quick" model: keep it the table's.
    assert granted[0] == table["purposes"]["quick"]["model"]
    assert root_module.modules["llm"]["environment"]["BEDROCK_MODEL_ID"] == "${var.bedrock_model_ids[0]}"


def test_stt_batch_prefix_is_the_one_the_transcribe_backend_uses(root_module: TerraformModule) -> None:
    code = (REPO / "services/stt/backends/transcribe.py").read_text()
    upload_prefixes = set(re.findall(r'key = f"([A-Za-z0-9_-]+)/', code))
    result_prefixes = set(re.findall(r'\["OutputKey"\] = f"([A-Za-z0-9_-]+)/', code))
    assert upload_prefixes and result_prefixes, "the backend's S3 keys were not found"
    assert upload_prefixes == result_prefixes == {root_module.locals["transcribe_batch_prefix"]}
    # Job names start with "echo-", which the GetTranscriptionJob grant is scoped to.
    assert 'job = f"echo-' in code
    assert root_module.modules["stt"]["environment"]["S3_BUCKET_AUDIO"] == "${aws_s3_bucket.audio.bucket}"


def _env_name(settings: type, prefix: str, field: str) -> str:
    (found,) = [f for f in dataclasses.fields(settings) if f.name == field]
    return found.metadata.get("env", prefix + field.upper())


def test_storage_encryption_settings_are_the_ones_the_code_reads(root_module: TerraformModule) -> None:
    env = root_module.modules["storage"]["environment"]
    assert env[_env_name(AwsStorageSettings, "ECHO_STORAGE_", "s3_encryption")] == "aws:kms"
    assert env[_env_name(AwsStorageSettings, "ECHO_STORAGE_", "kms_key_id")] == "${aws_kms_key.main.arn}"


def test_session_metric_names_match_the_gateway(
    root_module: TerraformModule, service_module: TerraformModule
) -> None:
    metric = root_module.locals["session_metric"]
    assert metric["name"] == cloudwatch_metrics.METRIC_NAME
    assert metric["service_name"] == "${local.name}-gateway"

    # The gateway publishes under the metric's namespace and service name (env names from its settings).
    env = root_module.modules["gateway"]["environment"]
    prefix = "ECHO_GATEWAY_"
    assert env[_env_name(GatewaySettings, prefix, "metrics_namespace")] == "${local.session_metric.namespace}"
    assert (
        env[_env_name(GatewaySettings, prefix, "metrics_service_name")]
        == "${local.session_metric.service_name}"
    )
    # One datapoint per task per minute: the dashboard's 1-minute Sum is then the total over tasks.
    assert env[_env_name(GatewaySettings, prefix, "metrics_interval_s")] == "60"

    # The scaling policy reads the same metric: namespace, name, and the one dimension whose value is
    # the module's "<name_prefix>-<name>", i.e. "<local.name>-gateway" for the gateway.
    policy = service_module.resource("aws_appautoscaling_policy", "sessions")
    spec = policy["target_tracking_scaling_policy_configuration"][0]["customized_metric_specification"][0]
    assert spec["namespace"] == metric["namespace"]
    assert spec["metric_name"] == cloudwatch_metrics.METRIC_NAME
    assert spec["statistic"] == "Average"
    assert spec["dimensions"] == [
        {"name": cloudwatch_metrics.DIMENSION_NAME, "value": "${var.name_prefix}-${var.name}"}
    ]
    gateway = root_module.modules["gateway"]
    assert (gateway["name"], gateway["name_prefix"]) == ("gateway", "${local.name}")

    # The IAM condition allows exactly that namespace; the dashboard plots that metric.
    document = root_module.data["aws_iam_policy_document"]["gateway_task"]
    (condition,) = document["statement"][0]["condition"]
    assert (condition["variable"], condition["values"]) == (
        "cloudwatch:namespace",
        ["${local.session_metric.namespace}"],
    )
    dashboard = root_module.resource("aws_cloudwatch_dashboard", "main")["dashboard_body"]
    assert (
        "[[local.session_metric.namespace, local.session_metric.name, "
        f'"{cloudwatch_metrics.DIMENSION_NAME}", local.session_metric.service_name]]'
    ) in dashboard


def test_gateway_shutdown_fits_the_ecs_stop_timeout(root_module: TerraformModule) -> None:
    stop = root_module.locals["gateway_stop_timeout"]
    assert stop <= 120  # Fargate's maximum stopTimeout
    assert root_module.modules["gateway"]["stop_timeout"] == "${local.gateway_stop_timeout}"
    assert root_module.locals["gateway_shutdown_timeout"] == "${local.gateway_stop_timeout - 10}"
    env = root_module.modules["gateway"]["environment"]
    name = _env_name(GatewaySettings, "ECHO_GATEWAY_", "shutdown_timeout_s")
    assert env[name] == "${tostring(local.gateway_shutdown_timeout)}"
    # The gateway's own default tells the same story (ECS's 120 s less 10), so a task without the
    # variable still exits before SIGKILL.
    assert GatewaySettings().shutdown_timeout_s == stop - 10
    main = (REPO / "gateway/__main__.py").read_text()
    assert "timeout_graceful_shutdown=settings.shutdown_timeout_s" in main
