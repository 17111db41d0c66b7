"""checkov over deploy/terraform: no failed checks, and every skipped check has its reason written in
deploy/checkov.yaml."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.deploy.conftest import REPO, DeployTools

CONFIG = REPO / "deploy" / "checkov.yaml"


def test_every_skip_has_a_reason() -> None:
    skips = yaml.safe_load(CONFIG.read_text())["skip-check"]
    assert skips, "no skips: then drop the list"
    lines = CONFIG.read_text().splitlines()
    for check in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check), f"skip {check!r} is not one check id"
        index = lines.index(f"  - {check}")
        reason = lines[index - 1].strip()
        assert reason.startswith("#") and len(reason) > 40, f"{check}: write its reason on the line above"


def test_checkov_passes(tools: DeployTools) -> None:
    result = subprocess.run(
        [str(tools.checkov), "--config-file", str(CONFIG), "--output", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = {r["check_type"]: r["summary"] for r in reports}
    assert "terraform" in summary, summary
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    # It really scanned the stack (guards against an empty directory or a parse failure passing).
    assert summary["terraform"]["passed"] > 300, summary
    assert summary["terraform"]["parsing_errors"] == 0, summary
    assert result.returncode == 0, result.stderr[-3000:]
