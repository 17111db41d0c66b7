"""Each ECS task definition, as Terraform will register it, checked against botocore's ECS service model
(RegisterTaskDefinition) and against the ECS/Fargate rules botocore does not know.

The container definitions are plain HCL objects in modules/ecs_service (locals), so python-hcl2 reads
them as data. For each service the module's `var.*` references are resolved from that service's module
call in the root (and `var.*`/`local.*` there from the root defaults); values only known at apply time
(ARNs, the log group name) become placeholders of the type the ECS model expects, so the check still
covers every key, every literal value and every type.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, SERVICES, DeployTools, TerraformModule

REF = re.compile(r"\$\{((?:var|local)\.[A-Za-z0-9_.\[\]\"]+)\}")
WHOLE_REF = re.compile(r"^\$\{((?:var|local)\.[A-Za-z0-9_.\[\]\"]+)\}$")
UNKNOWN = object()  # known only after apply

# Fargate task sizes: cpu -> allowed memory (MiB).
FARGATE_SIZES = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
    8192: set(range(16384, 61441, 4096)),
    16384: set(range(32768, 122881, 8192)),
}


def _lookup(path: str, scopes: dict[str, dict]) -> object:
    parts = re.findall(r"[A-Za-z0-9_]+|\[\d+\]|\[\"[^\"]+\"\]", path)
    value: object = scopes.get(parts[0], {})
    for part in parts[1:]:
        if value is UNKNOWN or value is None:
            return UNKNOWN
        if part.startswith("[") and part[1:-1].isdigit():
            value = value[int(part[1:-1])] if isinstance(value, list) else UNKNOWN
        else:
            key = part.strip('[]"')
            value = value.get(key, UNKNOWN) if isinstance(value, dict) else UNKNOWN
    return value


def evaluate(value: object, scopes: dict[str, dict], depth: int = 0) -> object:
    """Resolve var./local. references; anything else in ${...} is UNKNOWN (or kept as text in strings)."""
    if depth > 20:
        return UNKNOWN
    if isinstance(value, dict):
        return {k: evaluate(v, scopes, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, scopes, depth + 1) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = WHOLE_REF.match(value)
    if whole:
        return evaluate(_lookup(whole.group(1), scopes), scopes, depth + 1)
    if value.startswith("${") and value.endswith("}") and value.count("${") == 1:
        return UNKNOWN  # a function call or resource attribute

    def text(match: re.Match[str]) -> str:
        found = evaluate("${" + match.group(1) + "}", scopes, depth + 1)
        return "UNKNOWN" if found is UNKNOWN or isinstance(found, (dict, list)) else str(found)

    return re.sub(
        r"\$\{[^{}]*\}", lambda m: text(REF.match(m.group(0))) if REF.match(m.group(0)) else "UNKNOWN", value
    )


def placeholders(value: object, shape: dict) -> object:
    """Replace UNKNOWN by a value of the type the ECS model expects there."""
    if value is UNKNOWN:
        return {"string": "UNKNOWN", "integer": 1, "boolean": True, "list": [], "structure": {}, "map": {}}[
            shape["type"]
        ]
    if isinstance(value, dict) and shape["type"] == "structure":
        return {k: placeholders(v, shape["members"].get(k, {"type": "string"})) for k, v in value.items()}
    if isinstance(value, dict) and shape["type"] == "map":
        return {k: placeholders(v, shape["value"]) for k, v in value.items()}
    if isinstance(value, list) and shape["type"] == "list":
        return [placeholders(v, shape["member"]) for v in value]
    return value


@pytest.fixture(scope="session")
def ecs_shapes() -> dict:
    """The ECS model's shapes we need, as plain dicts (read with the same botocore as the validator)."""
    script = (
        "import json, botocore.session as s\n"
        "m = s.get_session().get_service_model('ecs')\n"
        "def d(sh, seen=()):\n"
        "    if sh.name in seen: return {'type': sh.type_name}\n"
        "    out = {'type': sh.type_name}\n"
        "    if sh.type_name == 'structure':\n"
        "        out['members'] = {k: d(v, seen + (sh.name,)) for k, v in sh.members.items()}\n"
        "    if sh.type_name == 'list': out['member'] = d(sh.member, seen + (sh.name,))\n"
        "    if sh.type_name == 'map': out['value'] = d(sh.value, seen + (sh.name,))\n"
        "    return out\n"
        "print(json.dumps(d(m.operation_model('RegisterTaskDefinition').input_shape)))\n"
    )
    return json.loads(
        subprocess.run([_botocore_python()], input=script, capture_output=True, text=True, check=True).stdout
    )


def _botocore_python() -> str:
    """The project venv when it has botocore (the `aws` extra), else the deploy tools' venv."""
    probe = subprocess.run([sys.executable, "-c", "import botocore"], capture_output=True, check=False)
    if probe.returncode == 0:
        return sys.executable
    return str(Path(os.environ.get("ECHO_DEPLOY_TOOLS", REPO / ".venv-deploy")) / "tools" / "bin" / "python")


def _validate(requests: dict[str, dict]) -> dict[str, list[str]]:
    result = subprocess.run(
        [_botocore_python(), str(Path(__file__).with_name("ecs_validate.py"))],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["problems"]


def build_requests(root: TerraformModule, module: TerraformModule, shapes: dict) -> dict[str, dict]:
    """RegisterTaskDefinition parameters per service, as the module renders them."""
    root_scopes = {"var": root.defaults(), "local": {}}
    root_scopes["local"] = evaluate(root.locals, root_scopes)
    requests = {}
    for svc in SERVICES:
        call = evaluate(root.modules[svc], root_scopes)
        assert isinstance(call, dict)
        variables = {**module.defaults(), **call}
        scopes: dict = {"var": variables, "local": {}}
        scopes["local"] = evaluate(module.locals, scopes)
        # local.environment is a for-expression over merge(var.environment, telemetry env): same here.
        merged = {**variables["environment"], **scopes["local"]["telemetry_environment"]}
        scopes["local"]["environment"] = [{"name": k, "value": merged[k]} for k in sorted(merged)]
        # local.secrets: the same for var.secrets (name -> Secrets Manager ARN).
        secrets = variables.get("secrets") or {}
        scopes["local"]["secrets"] = [{"name": k, "valueFrom": secrets[k]} for k in sorted(secrets)]
        scopes["local"]["app_container"] = evaluate(module.locals["app_container"], scopes)
        containers = evaluate(module.locals["container_definitions"], scopes)
        task = module.resource("aws_ecs_task_definition", "this")
        params = {
            "family": evaluate(task["family"], scopes),
            "taskRoleArn": UNKNOWN,
            "executionRoleArn": UNKNOWN,
            "networkMode": task["network_mode"],
            "requiresCompatibilities": task["requires_compatibilities"],
            "cpu": str(evaluate(task["cpu"], scopes)),
            "memory": str(evaluate(task["memory"], scopes)),
            "runtimePlatform": {
                "operatingSystemFamily": task["runtime_platform"][0]["operating_system_family"],
                "cpuArchitecture": task["runtime_platform"][0]["cpu_architecture"],
            },
            "volumes": [{"name": v["name"]} for v in task["volume"]],
            "containerDefinitions": containers,
        }
        requests[svc] = placeholders(params, shapes)
    return requests


@pytest.fixture(scope="session")
def requests(
    root_module: TerraformModule, service_module: TerraformModule, ecs_shapes: dict
) -> dict[str, dict]:
    return build_requests(root_module, service_module, ecs_shapes)


def test_task_definitions_match_the_ecs_model(tools: DeployTools, requests: dict[str, dict]) -> None:
    problems = _validate(requests)
    assert set(problems) == set(SERVICES)
    assert all(not p for p in problems.values()), json.dumps(problems, indent=1)


def test_the_validator_catches_mistakes(tools: DeployTools, requests: dict[str, dict]) -> None:
    broken = copy.deepcopy(requests["stt"])
    broken["containerDefinitions"][0]["portMapping"] = broken["containerDefinitions"][0].pop("portMappings")
    broken["containerDefinitions"][0]["essential"] = "yes"
    problems = _validate({"broken": broken})["broken"]
    assert any("portMapping" in p for p in problems), problems
    assert any("essential" in p for p in problems), problems


def test_task_definitions_follow_ecs_rules(requests: dict[str, dict]) -> None:
    for svc, params in requests.items():
        cpu, memory = int(params["cpu"]), int(params["memory"])
        assert memory in FARGATE_SIZES.get(cpu, set()), (
            f"{svc}: {cpu} CPU / {memory} MiB is not a Fargate size"
        )
        containers = params["containerDefinitions"]
        names = [c["name"] for c in containers]
        assert len(set(names)) == len(names) and names[0] == svc
        volumes = {v["name"] for v in params["volumes"]}
        app = containers[0]
        assert app["essential"] is True and app["readonlyRootFilesystem"] is True
        assert all(m["sourceVolume"] in volumes for m in app["mountPoints"])
        assert all(d["containerName"] in names for d in app["dependsOn"])
        health = app["healthCheck"]
        assert health["command"][0] == "CMD" and len(health["command"]) > 2
        assert (
            5 <= health["interval"] <= 300 and 2 <= health["timeout"] <= 120 and 1 <= health["retries"] <= 10
        )
        assert 0 <= health["startPeriod"] <= 300
        assert app["stopTimeout"] <= 120, "Fargate caps stopTimeout at 120 s"
        (port,) = app["portMappings"]
        assert port["name"] in ("grpc", "http") and port["appProtocol"] in ("grpc", "http")
        env = {e["name"]: e["value"] for e in app["environment"]}
        assert len(env) == len(app["environment"]), f"{svc}: duplicate environment names"
        assert all(isinstance(v, str) for v in env.values()), f"{svc}: environment values must be strings"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
        if svc != "gateway":
            assert env[f"ECHO_{svc.upper()}_HOST"] == "0.0.0.0"
            assert int(env[f"ECHO_{svc.upper()}_PORT"]) == port["containerPort"]
        assert app["logConfiguration"]["logDriver"] == "awslogs"
        # The tracing sidecar.
        adot = containers[1]
        assert adot["name"] == "adot-collector" and adot["essential"] is False
        assert "aws-otel-collector" in adot["image"]
    assert requests["gateway"]["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 8080
    storage_env = {
        e["name"]: e["value"] for e in requests["storage"]["containerDefinitions"][0]["environment"]
    }
    assert storage_env["ECHO_STORAGE_SERVICE"] == "aws"
    assert {"DYNAMODB_TABLE_CONVERSATIONS", "DYNAMODB_TABLE_SESSIONS", "S3_BUCKET_AUDIO"} <= set(storage_env)
