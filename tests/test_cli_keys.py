"""`echo-voice keys` and `echo-voice users delete`, run as an operator runs them, against a real storage
service process (local backend)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import grpc
import pytest

from echo.v1 import storage_pb2, storage_pb2_grpc
from services.common import apikeys
from services.common.service_auth import blocking_service_channel
from tests.servicetools import SERVICE_TOKEN, free_port, start_grpc_service


@pytest.fixture(scope="module")
def storage_addr(log_dir, tmp_path_factory):
    env = {"ECHO_STORAGE_SERVICE": "local", "ECHO_DATA_DIR": str(tmp_path_factory.mktemp("cli-storage"))}
    proc, address = start_grpc_service("storage", env, log_dir)
    yield address
    proc.stop()


def cli(address: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echo_voice.cli", *args],
        env={**os.environ, "ECHO_STORAGE_ADDR": address, "ECHO_SERVICE_TOKEN": SERVICE_TOKEN},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stub_call(address: str, method: str, request: object) -> object:
    with blocking_service_channel(address, SERVICE_TOKEN) as channel:
        return getattr(storage_pb2_grpc.StorageStub(channel), method)(request, timeout=10)


def test_keys_create_list_revoke(storage_addr) -> None:
    created = cli(storage_addr, "keys", "create", "--user", "ada", "--label", "laptop")
    assert created.returncode == 0, created.stderr
    key = re.search(r"^key:\s+(ek_[0-9a-f]{12}_\S+)$", created.stdout, re.M).group(1)
    key_id = re.search(r"^key id:\s+(k_[0-9a-f]{12})", created.stdout, re.M).group(1)
    assert key_id == "k_" + key[3:15]
    assert "will not be shown again" in created.stdout
    # Storage has the hash, and knows the key by it.
    found = stub_call(
        storage_addr, "LookupApiKey", storage_pb2.LookupApiKeyRequest(key_sha256=apikeys.sha256_of(key))
    )
    assert (found.key_id, found.user_id, found.label, found.revoked_at) == (key_id, "ada", "laptop", "")

    cli(storage_addr, "keys", "create", "--user", "bob")
    listed = cli(storage_addr, "keys", "list")
    assert listed.returncode == 0 and key_id in listed.stdout and "bob" in listed.stdout
    assert key not in listed.stdout and key[16:] not in listed.stdout  # never the key itself
    only = cli(storage_addr, "keys", "list", "--user", "ada")
    assert [line.split()[0] for line in only.stdout.splitlines()] == [key_id]
    assert "active" in only.stdout and "laptop" in only.stdout

    revoked = cli(storage_addr, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked {key_id} (user ada)" in revoked.stdout
    assert "revoked 20" in cli(storage_addr, "keys", "list", "--user", "ada").stdout
    found = stub_call(
        storage_addr, "LookupApiKey", storage_pb2.LookupApiKeyRequest(key_sha256=apikeys.sha256_of(key))
    )
    assert found.revoked_at

    unknown = cli(storage_addr, "keys", "revoke", "k_000000000000")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no API key 'k_000000000000'")
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_users_delete(storage_addr) -> None:
    user = "leaving"
    turn = storage_pb2.Turn(
        user_id=user,
        conversation_id="cli-c",
        session_id="cli-s",
        turn_id="t1",
        timestamp="2026-01-01T10:00:00.000000Z",
        client_input="hello",
    )
    stub_call(storage_addr, "SaveTurn", turn)
    assert cli(storage_addr, "keys", "create", "--user", user).returncode == 0
    # Off a terminal, it does not ask: it refuses without --yes and deletes nothing.
    refused = cli(storage_addr, "users", "delete", user, stdin="y\n")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    request = storage_pb2.GetConversationRequest(user_id=user, conversation_id="cli-c")
    assert stub_call(storage_addr, "GetConversation", request).turns

    deleted = cli(storage_addr, "users", "delete", user, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert (
        f"deleted user {user}: 1 conversations, 1 turns, 0 audio objects, 0 sessions, 1 API keys"
        in deleted.stdout
    )
    with pytest.raises(grpc.RpcError) as err:
        stub_call(storage_addr, "GetConversation", request)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert user not in cli(storage_addr, "keys", "list").stdout


def test_unreachable_storage_is_one_clear_line() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("keys", "list"), ("keys", "create", "--user", "x"), ("users", "delete", "x", "--yes")):
        result = cli(address, *args)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert (
            line.startswith(f"error: cannot reach the storage service at {address}")
            and "ECHO_STORAGE_ADDR" in line
        )


def test_help_names_the_commands() -> None:
    top = cli("unused", "--help").stdout
    assert "keys" in top and "users" in top
    create = cli("unused", "keys", "create", "--help")
    assert create.returncode == 0 and "--user" in create.stdout and "--label" in create.stdout
    assert "--yes" in cli("unused", "users", "delete", "--help").stdout


def test_users_delete_asks_on_a_terminal(storage_addr) -> None:
    import pty

    user = "asked"
    turn = storage_pb2.Turn(
        user_id=user,
        conversation_id="asked-c",
        session_id="asked-s",
        turn_id="t1",
        timestamp="2026-01-01T10:00:00.000000Z",
    )
    stub_call(storage_addr, "SaveTurn", turn)
    request = storage_pb2.GetConversationRequest(user_id=user, conversation_id="asked-c")

    def on_a_terminal(answer: str) -> subprocess.CompletedProcess[str]:
        controller, terminal = pty.openpty()
        try:
            os.write(controller, answer.encode())
            return subprocess.run(
                [sys.executable, "-m", "echo_voice.cli", "users", "delete", user],
                env={**os.environ, "ECHO_STORAGE_ADDR": storage_addr, "ECHO_SERVICE_TOKEN": SERVICE_TOKEN},
                stdin=terminal,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            os.close(controller)
            os.close(terminal)

    declined = on_a_terminal("n\n")
    assert declined.returncode == 1 and "[y/N]" in declined.stdout and "nothing deleted" in declined.stdout
    assert stub_call(storage_addr, "GetConversation", request).turns
    confirmed = on_a_terminal("y\n")
    assert confirmed.returncode == 0 and f"deleted user {user}: 1 conversations" in confirmed.stdout
