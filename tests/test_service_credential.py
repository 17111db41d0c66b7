"""The service credential: storage's calls need it (stt, llm and tts are checked in their own
suites, against the processes those start), and no service starts without one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import grpc
import pytest

from echo.v1 import storage_pb2, storage_pb2_grpc
from services.common.config import ConfigError
from services.common.service_auth import TOKEN_ENV, TOKEN_FILE_ENV, ensure_local_token, service_token
from tests.servicetools import ROOT, SERVICE_TOKEN, assert_credential_required, start_grpc_service


@pytest.fixture(scope="module")
def storage_address(log_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("credential-storage")
    proc, address = start_grpc_service(
        "storage", {"ECHO_STORAGE_SERVICE": "local", "ECHO_DATA_DIR": str(data_dir)}, log_dir
    )
    yield address
    assert proc.stop() == 0, proc.log_tail()


async def test_a_forged_turn_is_refused(storage_address):
    async def save_turn(channel: grpc.aio.Channel) -> storage_pb2.Turn:
        turn = storage_pb2.Turn(
            conversation_id="c1",
            timestamp="2026-01-01T00:00:00.000000Z",
            session_id="s1",
            turn_id="t1",
            user_id="u1",
        )
        return await storage_pb2_grpc.StorageStub(channel).SaveTurn(turn, timeout=10)

    await assert_credential_required(storage_address, ["/echo.v1.Storage/SaveTurn"], save_turn)


async def test_overwriting_audio_is_refused(storage_address):
    """A stream-unary call: the refusal comes on the headers, before the service reads any audio."""

    async def put_audio(channel: grpc.aio.Channel) -> storage_pb2.PutAudioResponse:
        async def messages():
            yield storage_pb2.PutAudioRequest(key="c1/t1.wav", content_type="audio/wav", user_id="u1")
            yield storage_pb2.PutAudioRequest(data=b"RIFF" + bytes(100))

        return await storage_pb2_grpc.StorageStub(channel).PutAudio(messages(), timeout=10)

    methods = ["/echo.v1.Storage/PutAudio", "/echo.v1.Storage/GetAudio", "/echo.v1.Storage/DeleteUser"]
    await assert_credential_required(storage_address, methods, put_audio)


@pytest.mark.parametrize("service", ["stt", "llm", "tts", "storage"])
def test_a_service_without_a_token_refuses_to_start(service, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, TOKEN_FILE_ENV)}
    # Not even the token `echo-voice run` keeps for the user: a service needs it set explicitly.
    env |= {"XDG_CONFIG_HOME": str(tmp_path), "ECHO_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "service-token").write_text("kept-by-echo-voice-run\n")
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"services.common.config.ConfigError: {TOKEN_ENV} is not set"), result.stderr
    assert "no unauthenticated mode" in last


def test_the_token_file_setting_is_read(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text(SERVICE_TOKEN + "\n")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv(TOKEN_FILE_ENV, str(path))
    assert service_token() == SERVICE_TOKEN
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        service_token()


def test_echo_voice_run_keeps_one_private_token(tmp_path, monkeypatch):
    for name in (TOKEN_ENV, TOKEN_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=f"{TOKEN_ENV} is not set"):
        service_token()  # nothing yet: a CLI command says how to get one
    first = ensure_local_token()
    path = tmp_path / "echo" / "service-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40 and ensure_local_token() == first == service_token()
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert ensure_local_token() == "from-the-environment" == service_token()
