"""The service credential on ECS (deploy/terraform/secrets.tf): every task gets ECHO_SERVICE_TOKEN from
one Secrets Manager secret, the execution role may read exactly that secret, and each internal gRPC
service takes traffic from the gateway's security group only."""

from __future__ import annotations

from tests.deploy.conftest import GRPC_SERVICES, SERVICES, TerraformModule
from tests.deploy.test_ecs_definitions import build_requests
from tests.deploy.test_ecs_definitions import ecs_shapes as ecs_shapes  # the fixture, shared

SECRET_ARN = "${aws_secretsmanager_secret.service_token.arn}"
SECRET_VERSION_ARN = "${aws_secretsmanager_secret_version.service_token.arn}"


def test_the_token_is_a_generated_secret_encrypted_with_the_stack_key(root_module: TerraformModule) -> None:
    secret = root_module.resource("aws_secretsmanager_secret", "service_token")
    assert secret["kms_key_id"] == "${aws_kms_key.main.arn}"
    version = root_module.resource("aws_secretsmanager_secret_version", "service_token")
    assert version["secret_id"] == "${aws_secretsmanager_secret.service_token.id}"
    # Write-only from an ephemeral random value: the token is in neither the plan nor the state.
    assert "secret_string" not in version
    assert version["secret_string_wo"] == (
        "${ephemeral.aws_secretsmanager_random_password.service_token.random_password}"
    )
    assert root_module.locals["service_secrets"] == {"ECHO_SERVICE_TOKEN": SECRET_VERSION_ARN}


def test_every_task_gets_the_token_from_the_secret(
    root_module: TerraformModule, service_module: TerraformModule, ecs_shapes: dict
) -> None:
    for svc in SERVICES:
        assert root_module.modules[svc]["secrets"] == "${local.service_secrets}", svc
    assert service_module.locals["app_container"]["secrets"] == "${local.secrets}"
    # As registered: the app container's secrets name ECHO_SERVICE_TOKEN; never a plain variable.
    for svc, request in build_requests(root_module, service_module, ecs_shapes).items():
        app = request["containerDefinitions"][0]
        assert [s["name"] for s in app["secrets"]] == ["ECHO_SERVICE_TOKEN"], svc
        assert "ECHO_SERVICE_TOKEN" not in {e["name"] for e in app["environment"]}, svc


def test_the_execution_role_reads_exactly_that_secret(root_module: TerraformModule) -> None:
    policy = root_module.resource("aws_iam_role_policy", "execution_secrets")
    assert policy["role"] == "${aws_iam_role.execution.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.execution_secrets.json}"
    statements = root_module.data["aws_iam_policy_document"]["execution_secrets"]["statement"]
    reads = [s for s in statements if any(a.startswith("secretsmanager:") for a in s["actions"])]
    assert [(s["actions"], s["resources"]) for s in reads] == [
        (["secretsmanager:GetSecretValue"], [SECRET_ARN])
    ]
    (key,) = [s for s in statements if s not in reads]
    assert key["actions"] == ["kms:Decrypt"] and key["resources"] == ["${aws_kms_key.main.arn}"]
    assert key["condition"][0]["variable"] == "kms:ViaService"
    assert key["condition"][0]["values"] == ["secretsmanager.${var.aws_region}.amazonaws.com"]
    # No other policy document names the secret: the task roles (the apps) cannot read it.
    for name, document in root_module.data["aws_iam_policy_document"].items():
        if name != "execution_secrets":
            assert "secretsmanager" not in str(document), name


def test_internal_services_take_traffic_from_the_gateway_only(root_module: TerraformModule) -> None:
    for svc in GRPC_SERVICES:
        assert root_module.modules[svc]["security_group_id"] == f'${{aws_security_group.service["{svc}"].id}}'
    assert root_module.modules["gateway"]["security_group_id"] == "${aws_security_group.gateway.id}"
    assert root_module.resource("aws_security_group", "service")["for_each"] == "${local.grpc_ports}"
    assert set(root_module.locals["grpc_ports"]) == set(GRPC_SERVICES)  # type: ignore[arg-type]
    ingress = root_module.resources["aws_vpc_security_group_ingress_rule"]
    into_services = {
        name: rule
        for name, rule in ingress.items()
        if "aws_security_group.service" in rule["security_group_id"]
    }
    assert set(into_services) == {"service_from_gateway"}, "one rule, from the gateway, into the services"
    rule = into_services["service_from_gateway"]
    assert rule["for_each"] == "${local.grpc_ports}"
    assert rule["referenced_security_group_id"] == "${aws_security_group.gateway.id}"
    assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule and "prefix_list_id" not in rule
    assert rule["from_port"] == rule["to_port"] == "${each.value}"
    # Nothing else opens the service groups (no inline ingress blocks on the groups themselves).
    assert "ingress" not in root_module.resource("aws_security_group", "service")
