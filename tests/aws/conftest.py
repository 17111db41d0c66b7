"""Fixtures for the AWS backends: local stand-ins that speak the AWS wire protocol, on 127.0.0.1."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws.standins import Server, _bin, _wait_port, start_moto
from tests.aws.tlsca import make_ca_and_server_cert
from tests.servicetools import ROOT, free_port

# Credentials for the stand-ins (moto accepts any); never real ones.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAECHOTESTKEY00000", "AWS_SECRET_ACCESS_KEY": "echo-test-secret"}


def isolated_aws_env(endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for an AWS client that can reach only the stand-ins and sees no local AWS config."""
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/echo-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/echo-aws-credentials",
        **FAKE_CREDENTIALS,
        **extra,
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


_AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> dict[str, str]:
    """This process's environment pointed at the moto server."""
    for name in list(os.environ):
        if name.startswith(_AWS_VARS):
            monkeypatch.delenv(name)
    env = isolated_aws_env(moto_url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(scope="session")
def moto_url(log_dir: Path) -> Iterator[str]:
    server, url = start_moto(log_dir)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@dataclass
class TranscribeStandIn:
    url: str
    ca_bundle: Path
    control_path: Path
    record_path: Path

    def script(self, **control: Any) -> None:
        self.control_path.write_text(json.dumps(control))
        self.record_path.write_text("")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record_path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def transcribe_standin(
    tls_files: tuple[Path, Path, Path], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TranscribeStandIn]:
    """hypercorn serving tests.aws.transcribe_standin over HTTP/2 + TLS on a free port."""
    ca, cert, key = tls_files
    folder = tmp_path_factory.mktemp("transcribe-standin")
    control, record = folder / "control.json", folder / "record.jsonl"
    control.write_text("{}")
    record.write_text("")
    port = free_port()
    server = Server(
        [
            _bin("hypercorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
            "--workers",
            "1",
            "tests.aws.transcribe_standin:app",
        ],
        log_dir / "transcribe-standin.log",
        env={
            "STANDIN_CONTROL": str(control),
            "STANDIN_RECORD": str(record),
            "PYTHONPATH": f"{ROOT}:{ROOT / 'protos'}",
        },
    )
    try:
        _wait_port(port, server.proc, server.log)
        yield TranscribeStandIn(f"https://localhost:{port}", ca, control, record)
    finally:
        server.stop()
