"""Terraform under deploy/terraform: fmt and validate (when terraform and an AWS provider mirror are on
the machine), and structure assertions on the python-hcl2 parse (always)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import GRPC_SERVICES, SERVICES, TERRAFORM_DIR, TerraformModule

# ---------------------------------------------------------------------------------------------------
# terraform fmt / init / validate
# ---------------------------------------------------------------------------------------------------
# Places a machine may carry a provider mirror (filesystem_mirror layout: <host>/<ns>/<type>/<ver>/<os_arch>).
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)


def missing(why: str) -> None:
    """Terraform is part of the machine image, not of `make test`'s installs (no PyPI, npm or Debian
    package ships it): a developer's machine without it skips, CI (CI=true) fails."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {why}")
    pytest.skip(why)


def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        missing("no `terraform` binary on PATH, so fmt/validate cannot run here")
    return found


def _aws_provider_mirror() -> Path | None:
    candidates = [os.environ["ECHO_TF_PROVIDER_MIRROR"]] if os.environ.get("ECHO_TF_PROVIDER_MIRROR") else []
    for raw in [*candidates, *MIRROR_CANDIDATES]:
        root = Path(raw).expanduser()
        if list(root.glob("registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*")):
            return root
    return None


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_terraform_fmt_is_clean() -> None:
    terraform = _terraform()
    result = _run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "-no-color"], TERRAFORM_DIR, dict(os.environ)
    )
    assert result.returncode == 0, f"terraform fmt would change these files:\n{result.stdout}{result.stderr}"


def test_terraform_init_and_validate(tmp_path: Path) -> None:
    terraform = _terraform()
    mirror = _aws_provider_mirror()
    if mirror is None:
        missing(
            "no hashicorp/aws provider mirror found (looked in $ECHO_TF_PROVIDER_MIRROR and "
            f"{', '.join(MIRROR_CANDIDATES)}); terraform init needs one offline"
        )
    # A CLI config that installs hashicorp providers only from the mirror: no network.
    cli_config = tmp_path / "terraformrc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        "}\n"
    )
    # Work on a copy so .terraform/ and the lock file never land in the repository.
    workdir = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, workdir, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "TF_IN_AUTOMATION": "1"}
    env.pop("TF_PLUGIN_CACHE_DIR", None)

    init = _run([terraform, "init", "-backend=false", "-input=false", "-no-color"], workdir, env)
    assert init.returncode == 0, f"terraform init failed:\n{init.stdout}{init.stderr}"
    validate = _run([terraform, "validate", "-no-color"], workdir, env)
    assert validate.returncode == 0, f"terraform validate failed:\n{validate.stdout}{validate.stderr}"
    assert "The configuration is valid" in validate.stdout


# ---------------------------------------------------------------------------------------------------
# Structure (python-hcl2)
# ---------------------------------------------------------------------------------------------------
def _statements(document: dict) -> list[dict]:
    return [s for s in document.get("statement", []) if isinstance(s, dict)]


def _listed(value: object) -> list:
    """A list attribute, or a one-item list for an expression (e.g. a for-expression string)."""
    return value if isinstance(value, list) else [value]


def _is_allow(statement: dict) -> bool:
    return statement.get("effect", "Allow") == "Allow"


def _all_policy_documents(*modules: TerraformModule) -> dict[str, dict]:
    return {
        f"{i}:{name}": doc
        for i, module in enumerate(modules)
        for name, doc in module.data.get("aws_iam_policy_document", {}).items()
    }


def test_every_service_is_an_ecs_service_with_scaling(
    root_module: TerraformModule, service_module: TerraformModule
) -> None:
    for svc in SERVICES:
        call = root_module.modules.get(svc)
        assert call is not None, f"no module block for {svc}"
        assert call["source"] == "./modules/ecs_service"
        assert call["name"] == svc
        for arg, key in (
            ("min_count", "min_count"),
            ("max_count", "max_count"),
            ("cpu", "cpu"),
            ("memory", "memory"),
        ):
            assert call[arg] == f"${{var.services.{svc}.{key}}}", f"{svc}.{arg} must come from var.services"
        assert call["cpu_target"] == f"${{var.services.{svc}.cpu_target}}"

    # The module gives each service exactly one scaling target and an unconditional CPU policy on it.
    target = service_module.resource("aws_appautoscaling_target", "this")
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    assert target["min_capacity"] == "${var.min_count}" and target["max_capacity"] == "${var.max_count}"
    assert "${aws_ecs_service.this.name}" in target["resource_id"]
    cpu = service_module.resource("aws_appautoscaling_policy", "cpu")
    assert "count" not in cpu and "for_each" not in cpu
    tracking = cpu["target_tracking_scaling_policy_configuration"][0]
    assert (
        tracking["predefined_metric_specification"][0]["predefined_metric_type"]
        == "ECSServiceAverageCPUUtilization"
    )
    assert tracking["target_value"] == "${var.cpu_target}"
    for policy in service_module.resources["aws_appautoscaling_policy"].values():
        assert policy["resource_id"] == "${aws_appautoscaling_target.this.resource_id}"

    # Gateway: ALB requests per target (and optionally the session metric); the others: CPU only.
    requests = service_module.resource("aws_appautoscaling_policy", "requests")
    spec = requests["target_tracking_scaling_policy_configuration"][0]["predefined_metric_specification"][0]
    assert spec["predefined_metric_type"] == "ALBRequestCountPerTarget"
    gateway = root_module.modules["gateway"]
    assert "aws_lb.main.arn_suffix" in gateway["alb_resource_label"]
    assert "aws_lb_target_group.gateway.arn_suffix" in gateway["alb_resource_label"]
    assert gateway["sessions_per_task"] == "${var.gateway_sessions_per_task}"
    for svc in GRPC_SERVICES:
        assert "alb_resource_label" not in root_module.modules[svc]

    # Bounds per service are variables with defaults for all five.
    defaults = root_module.defaults()["services"]
    assert set(defaults) == set(SERVICES)
    for svc, sizes in defaults.items():
        assert 1 <= sizes["min_count"] <= sizes["max_count"], svc


def test_service_connect_names_match_the_gateway_addresses(
    root_module: TerraformModule, service_module: TerraformModule
) -> None:
    ports = root_module.locals["grpc_ports"]
    gateway_env = root_module.modules["gateway"]["environment"]
    for svc in GRPC_SERVICES:
        call = root_module.modules[svc]
        assert call["service_connect_server"] is True
        assert call["port"] == f"${{local.grpc_ports.{svc}}}"
        assert gateway_env[f"ECHO_{svc.upper()}_ADDR"] == f"{svc}:{ports[svc]}"
        # Each service binds all interfaces on its own port.
        assert call["environment"][f"ECHO_{svc.upper()}_HOST"] == "0.0.0.0"
        assert call["environment"][f"ECHO_{svc.upper()}_PORT"] == str(ports[svc])
        assert call["health_check_command"][-1] == f"127.0.0.1:{ports[svc]}"
    assert root_module.modules["gateway"]["service_connect_server"] is False
    service = service_module.resource("aws_ecs_service", "this")
    sc_service = service["service_connect_configuration"][0]["dynamic"][0]["service"]["content"][0]
    assert sc_service["discovery_name"] == "${service.value}"
    assert sc_service["client_alias"][0] == {"dns_name": "${service.value}", "port": "${var.port}"}
    cluster = root_module.resource("aws_ecs_cluster", "main")
    assert {"name": "containerInsights", "value": "enabled"} in cluster["setting"]


def test_each_task_role_is_scoped_to_its_service(
    root_module: TerraformModule, service_module: TerraformModule
) -> None:
    # One role per service (the module's role is named after the service) with its own policy document.
    role = service_module.resource("aws_iam_role", "task")
    assert role["name"] == "${local.full_name}-task"
    assert (
        service_module.resource("aws_ecs_task_definition", "this")["task_role_arn"]
        == "${aws_iam_role.task.arn}"
    )
    documents = root_module.data["aws_iam_policy_document"]
    allowed_actions = {
        "stt": re.compile(
            r"^(transcribe:(StartStreamTranscription(WebSocket)?|StartTranscriptionJob|GetTranscriptionJob)"
            r"|s3:(GetObject|PutObject)|kms:(Decrypt|GenerateDataKey))$"
        ),
        "llm": re.compile(r"^bedrock:(InvokeModelWithResponseStream|ListFoundationModels)$"),
        "tts": re.compile(r"^polly:(SynthesizeSpeech|DescribeVoices)$"),
        "storage": re.compile(
            r"^(dynamodb:(GetItem|PutItem|UpdateItem|DeleteItem|Query|DescribeTable)"
            r"|s3:(GetObject|PutObject|DeleteObject|ListBucket)"
            r"|kms:(Decrypt|Encrypt|GenerateDataKey))$"
        ),
        "gateway": re.compile(r"^cloudwatch:PutMetricData$"),
    }
    # Actions AWS cannot scope to a resource; only these may pair with "*".
    unscopable = {
        "transcribe:StartStreamTranscription",
        "transcribe:StartStreamTranscriptionWebSocket",
        "transcribe:StartTranscriptionJob",
        "bedrock:ListFoundationModels",
        "polly:DescribeVoices",
        "cloudwatch:PutMetricData",
    }
    for svc, pattern in allowed_actions.items():
        call = root_module.modules[svc]
        assert call["task_policy_json"] == f"${{data.aws_iam_policy_document.{svc}_task.json}}"
        statements = _statements(documents[f"{svc}_task"])
        assert statements, f"{svc} task policy is empty"
        for statement in statements:
            assert _is_allow(statement)
            for action in _listed(statement["actions"]):
                assert pattern.match(action), f"{svc} task role may not {action}"
                assert "*" not in action, f"{svc}: wildcard action {action}"
            if "*" in _listed(statement["resources"]):
                assert set(statement["actions"]) <= unscopable, f"{svc}: {statement['actions']} on *"
    # Resource scoping per service. stt: the batch prefix of the audio bucket, Echo's own jobs, and a
    # StartTranscriptionJob that may only write its result there.
    stt = _statements(documents["stt_task"])
    stt_s3 = [s for s in stt if s["actions"][0].startswith("s3:")]
    assert stt_s3 and all(
        r == "${aws_s3_bucket.audio.arn}/${local.transcribe_batch_prefix}/*"
        for s in stt_s3
        for r in _listed(s["resources"])
    )
    (start_job,) = [s for s in stt if "transcribe:StartTranscriptionJob" in s["actions"]]
    assert {(c["variable"], tuple(c["values"])) for c in start_job["condition"]} == {
        ("transcribe:OutputBucketName", ("${aws_s3_bucket.audio.bucket}",)),
        ("transcribe:OutputKey", ("${local.transcribe_batch_prefix}/*",)),
    }
    (poll_job,) = [s for s in stt if "transcribe:GetTranscriptionJob" in s["actions"]]
    assert _listed(poll_job["resources"]) == [
        "arn:${local.partition}:transcribe:${var.aws_region}:${local.account_id}:transcription-job/echo-*"
    ]
    (llm,) = [
        s
        for s in _statements(documents["llm_task"])
        if "bedrock:InvokeModelWithResponseStream" in s["actions"]
    ]
    assert llm["resources"].startswith("${[for id in var.bedrock_model_ids :")
    assert "::foundation-model/${id}" in llm["resources"]
    # tts: SynthesizeSpeech in this region and account only (the form Polly's permissions reference gives).
    (synthesize,) = [
        s for s in _statements(documents["tts_task"]) if "polly:SynthesizeSpeech" in s["actions"]
    ]
    assert _listed(synthesize["resources"]) == [
        "arn:${local.partition}:polly:${var.aws_region}:${local.account_id}:lexicon/*"
    ]
    # storage: no Scan anywhere (a user's conversations are a Query on the user index).
    assert not [s for s in _statements(documents["storage_task"]) if "dynamodb:Scan" in s["actions"]]
    storage_resources = {r for s in _statements(documents["storage_task"]) for r in _listed(s["resources"])}
    for table in ("conversations", "sessions", "users"):
        assert f"${{aws_dynamodb_table.{table}.arn}}" in storage_resources
    assert all(
        "aws_dynamodb_table" in r or "aws_s3_bucket.audio" in r or "aws_kms_key.main" in r
        for r in storage_resources
    )
    gateway = _statements(documents["gateway_task"])[0]
    assert gateway["condition"][0]["variable"] == "cloudwatch:namespace"
    # Policies are attached only when the backend uses the AWS service.
    assert root_module.modules["stt"]["task_policy_enabled"] == '${var.stt_backend == "transcribe"}'
    assert root_module.modules["llm"]["task_policy_enabled"] == '${var.llm_backend == "bedrock"}'
    assert root_module.modules["tts"]["task_policy_enabled"] == '${var.tts_backend == "polly"}'
    assert (
        service_module.resource("aws_iam_role_policy", "service")["count"]
        == "${var.task_policy_enabled ? 1 : 0}"
    )


def test_no_wildcard_action_on_wildcard_resource(
    root_module: TerraformModule, service_module: TerraformModule, network_module: TerraformModule
) -> None:
    documents = _all_policy_documents(root_module, service_module, network_module)
    assert len(documents) >= 8
    for name, document in documents.items():
        for statement in _statements(document):
            if not _is_allow(statement):
                continue
            actions = _listed(statement.get("actions", []))
            resources = _listed(statement.get("resources", []))
            assert not ({"*", "*:*"} & set(actions)), f"{name}: action '*'"
            if "*" in resources:
                assert not any(a.endswith(":*") for a in actions), f"{name}: {actions} on resource *"
    # Inline jsonencode policies (the KMS key policy): no Action "*".
    for path_block in root_module.resources.get("aws_kms_key", {}).values():
        assert not re.search(r'Action\s*=\s*"\*"', path_block["policy"])


def test_buckets_block_public_access_and_require_tls(root_module: TerraformModule) -> None:
    buckets = root_module.resources["aws_s3_bucket"]
    assert {"audio", "logs", "web"} <= set(buckets)
    policies = root_module.data["aws_iam_policy_document"]
    for name in buckets:
        block = root_module.resource("aws_s3_bucket_public_access_block", name)
        assert block["bucket"] == f"${{aws_s3_bucket.{name}.id}}"
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ):
            assert block[flag] is True, f"{name}: {flag}"
        ownership = root_module.resource("aws_s3_bucket_ownership_controls", name)
        assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"
        policy = root_module.resource("aws_s3_bucket_policy", name)
        assert policy["policy"] == f"${{data.aws_iam_policy_document.{name}_bucket.json}}"
        deny_tls = [
            s
            for s in _statements(policies[f"{name}_bucket"])
            if s.get("effect") == "Deny" and s["condition"][0]["variable"] == "aws:SecureTransport"
        ]
        assert deny_tls and deny_tls[0]["condition"][0]["values"] == ["false"], f"{name}: not TLS-only"
    sse = root_module.resource("aws_s3_bucket_server_side_encryption_configuration", "audio")["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    lifecycle = _dynamic(root_module.resource("aws_s3_bucket_lifecycle_configuration", "audio")["rule"][0])
    assert lifecycle["transition"]["content"][0]["storage_class"] == "STANDARD_IA"
    assert lifecycle["expiration"]["content"][0]["days"] == "${var.retention_days}"
    # The web client is served through CloudFront origin access control, not a public bucket.
    web = root_module.resource("aws_cloudfront_distribution", "web")
    assert web["origin"][0]["origin_access_control_id"] == "${aws_cloudfront_origin_access_control.web.id}"
    assert web["default_cache_behavior"][0]["viewer_protocol_policy"] == "redirect-to-https"


def test_stored_audio_is_sse_kms_with_the_stack_key(root_module: TerraformModule) -> None:
    # The storage backend names an algorithm on every PutObject (default AES256), which overrides the
    # bucket's KMS default; so the task must ask for aws:kms and Echo's key itself.
    env = root_module.modules["storage"]["environment"]
    assert env["ECHO_STORAGE_SERVICE"] == "aws"
    assert env["ECHO_STORAGE_S3_ENCRYPTION"] == "aws:kms"
    assert env["ECHO_STORAGE_KMS_KEY_ID"] == "${aws_kms_key.main.arn}"
    assert env["S3_BUCKET_AUDIO"] == "${aws_s3_bucket.audio.bucket}"
    # The bucket default agrees (objects written by anything else are SSE-KMS with the same key).
    default = root_module.resource("aws_s3_bucket_server_side_encryption_configuration", "audio")["rule"][0][
        "apply_server_side_encryption_by_default"
    ][0]
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${aws_kms_key.main.arn}"}


def _dynamic(block: dict) -> dict:
    """A block's dynamic sub-blocks by name."""
    return {name: spec for entry in block.get("dynamic", []) for name, spec in entry.items()}


def test_audio_lifecycle_days_are_ones_s3_accepts(root_module: TerraformModule) -> None:
    ia = root_module.variables["audio_ia_after_days"]
    assert ia["default"] >= 30
    assert ia["validation"][0]["condition"] == "${var.audio_ia_after_days >= 30}"
    rule = _dynamic(root_module.resource("aws_s3_bucket_lifecycle_configuration", "audio")["rule"][0])
    assert rule["transition"]["content"][0]["days"] == "${var.audio_ia_after_days}"
    # Standard-IA only for audio that outlives the transition (S3 rejects an expiry before it).
    assert rule["transition"]["for_each"] == (
        "${var.retention_days == 0 || var.retention_days > var.audio_ia_after_days ? [1] : []}"
    )
    # Audio expires with the retention the records' TTL uses: the storage task reads the same variable.
    assert rule["expiration"]["for_each"] == "${var.retention_days > 0 ? [1] : []}"
    env = root_module.modules["storage"]["environment"]
    assert env["ECHO_STORAGE_RETENTION_DAYS"] == "${tostring(var.retention_days)}"
    assert root_module.defaults()["retention_days"] == 30


def test_dynamodb_tables(root_module: TerraformModule) -> None:
    conversations = root_module.resource("aws_dynamodb_table", "conversations")
    assert (conversations["hash_key"], conversations["range_key"]) == ("conversation_id", "timestamp")
    gsi = conversations["global_secondary_index"][0]
    assert (gsi["hash_key"], gsi["range_key"]) == ("session_id", "timestamp")
    by_user = conversations["global_secondary_index"][1]
    assert (by_user["name"], by_user["hash_key"], by_user["range_key"]) == (
        "user_id-last_timestamp-index",
        "user_id",
        "last_timestamp",
    )
    sessions = root_module.resource("aws_dynamodb_table", "sessions")
    assert sessions["hash_key"] == "session_id"
    users = root_module.resource("aws_dynamodb_table", "users")
    assert (users["hash_key"], users["range_key"]) == ("pk", "sk")
    assert users["global_secondary_index"][0]["hash_key"] == "key_sha256"
    for table in (conversations, sessions, users):
        assert table["billing_mode"] == "PAY_PER_REQUEST"
        assert table["ttl"][0] == {"attribute_name": "ttl", "enabled": True}
        assert table["point_in_time_recovery"][0]["enabled"] is True
        assert table["server_side_encryption"][0]["enabled"] is True
        assert table["server_side_encryption"][0]["kms_key_arn"] == "${aws_kms_key.main.arn}"


def test_alb_waf_and_network_paths(root_module: TerraformModule) -> None:
    listeners = root_module.resources["aws_lb_listener"]
    assert set(listeners) == {"https"}, "only an HTTPS listener"
    https = listeners["https"]
    assert https["protocol"] == "HTTPS" and https["port"] == 443
    assert https["certificate_arn"] == "${var.certificate_arn}"
    alb = root_module.resource("aws_lb", "main")
    assert alb["idle_timeout"] == "${var.alb_idle_timeout_seconds}"
    assert root_module.defaults()["alb_idle_timeout_seconds"] >= 600, (
        "WebSocket sessions need a long idle timeout"
    )
    target_group = root_module.resource("aws_lb_target_group", "gateway")
    assert target_group["health_check"][0]["path"] == "/readyz"
    assert target_group["deregistration_delay"] == "${var.deregistration_delay_seconds}"

    acl = root_module.resource("aws_wafv2_web_acl", "main")
    groups = {
        r["statement"][0]["managed_rule_group_statement"][0]["name"]
        for r in acl["rule"]
        if "managed_rule_group_statement" in r["statement"][0]
    }
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= groups
    assert any("rate_based_statement" in r["statement"][0] for r in acl["rule"])
    assert (
        root_module.resource("aws_wafv2_web_acl_association", "alb")["resource_arn"] == "${aws_lb.main.arn}"
    )

    # Only the ALB takes traffic from CIDRs; the gateway only from the ALB, services only from the gateway.
    ingress = root_module.resources["aws_vpc_security_group_ingress_rule"]
    assert {name for name, rule in ingress.items() if "cidr_ipv4" in rule} == {"alb_https"}
    assert ingress["alb_https"]["from_port"] == 443 and ingress["alb_https"]["to_port"] == 443
    assert ingress["gateway_from_alb"]["referenced_security_group_id"] == "${aws_security_group.alb.id}"
    assert (
        ingress["service_from_gateway"]["referenced_security_group_id"] == "${aws_security_group.gateway.id}"
    )
    assert (
        ingress["service_from_gateway"]["security_group_id"] == "${aws_security_group.service[each.key].id}"
    )
    for name, rule in root_module.resources["aws_vpc_security_group_egress_rule"].items():
        assert rule.get("from_port") not in (None, -1) and rule.get("ip_protocol") == "tcp", name


def test_network_module(network_module: TerraformModule) -> None:
    public = network_module.resource("aws_subnet", "public")
    private = network_module.resource("aws_subnet", "private")
    assert public["map_public_ip_on_launch"] is False
    assert "map_public_ip_on_launch" not in private
    route = network_module.resource("aws_route", "private_nat")
    assert "aws_nat_gateway.this" in route["nat_gateway_id"]
    assert network_module.resource("aws_flow_log", "this")["traffic_type"] == "ALL"
    assert network_module.resource("aws_default_security_group", "this").keys() <= {"vpc_id", "tags"}


def test_observability_and_cost(root_module: TerraformModule, service_module: TerraformModule) -> None:
    alarms = root_module.resources["aws_cloudwatch_metric_alarm"]
    assert (
        alarms["api_latency"]["threshold"] == 2
        and alarms["api_latency"]["metric_name"] == "TargetResponseTime"
    )
    assert alarms["error_rate"]["threshold"] == 1
    assert alarms["service_cpu"]["threshold"] == 80
    assert alarms["service_cpu"]["for_each"] == "${local.ecs_services}"
    assert set(root_module.locals["ecs_services"]) == set(SERVICES)
    assert "ThrottleEvents" in str(alarms["dynamodb_throttling"]["metric_query"])
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == ["${aws_sns_topic.alerts.arn}"]
    assert root_module.resource("aws_budgets_budget", "monthly")["time_unit"] == "MONTHLY"
    assert "aws_cloudwatch_dashboard" in root_module.resources
    # Log groups have retention; the ADOT sidecar forwards traces to X-Ray.
    for module in (root_module, service_module):
        for name, group in module.resources.get("aws_cloudwatch_log_group", {}).items():
            assert "retention_in_days" in group, name
    adot = service_module.locals["adot_container"]
    assert adot["image"] == "${var.adot_collector_image}"
    assert "${local.adot_container}" in service_module.locals["container_definitions"]
    assert "ecs-xray" in adot["command"][0]
    assert "aws-otel-collector" in root_module.defaults()["adot_collector_image"]
    # ECR repository per component, and the URLs as outputs.
    repos = root_module.resource("aws_ecr_repository", "service")
    assert all(svc in repos["for_each"] for svc in SERVICES)
    assert {"websocket_url", "web_url", "ecr_repository_urls", "alb_dns_name"} <= set(root_module.outputs)


def test_variables_are_documented(root_module: TerraformModule, service_module: TerraformModule) -> None:
    for module in (root_module, service_module):
        for name, spec in module.variables.items():
            assert spec.get("description"), f"variable {name} has no description"
            assert spec.get("type"), f"variable {name} has no type"
    # Only the certificate must be set; everything else has a default.
    required = {name for name, spec in root_module.variables.items() if "default" not in spec}
    assert required == {"certificate_arn"}
