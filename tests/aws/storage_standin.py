"""moto server prepared the way Echo's AWS storage expects it, for any test that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.aws.conftest import isolated_aws_env
from tests.aws.standins import start_moto


def aws_stand_in(log_dir: Path) -> tuple[object, dict[str, str]]:
    """moto server for DynamoDB and S3, with Echo's tables and bucket made by `echo-voice aws init`."""
    server, url = start_moto(log_dir, name="moto-storage")
    env = isolated_aws_env(url)
    init = subprocess.run(
        [sys.executable, "-m", "echo_voice.cli", "aws", "init"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert "table echo-conversations: created" in init.stdout and "bucket echo-audio: created" in init.stdout
    return server, env
