"""The echo-voice command line against the running stack, as a user would run it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import grpc
import httpx
import pytest

from echo.v1 import storage_pb2, storage_pb2_grpc
from tests.conftest import require_model
from tests.servicetools import ROOT, free_port
from tests.speech import speech_wav, words


def run_cli(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echo_voice.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "serve", "models", "talk", "chat"):
        assert command in result.stdout


def test_models_list_shows_the_defaults_as_pulled():
    result = run_cli("models", "list")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("whisper-tiny.en"))
    assert "pulled" in line and "(default)" in line


def test_models_pull_rejects_an_unknown_name():
    result = run_cli("models", "pull", "gpt-17")
    assert result.returncode == 1 and "unknown model 'gpt-17'" in result.stderr


def test_talk_sends_a_wav_and_saves_the_spoken_reply(stack, tmp_path):
    question = speech_wav("What is the capital of Germany?", tmp_path / "question.wav")
    out = tmp_path / "reply.wav"
    result = run_cli("talk", str(question), "--out", str(out), "--fast", "--url", stack.ws)
    assert result.returncode == 0, result.stdout + result.stderr
    you = next(line for line in result.stdout.splitlines() if line.startswith("you:"))
    assert {"capital", "germany"} <= words(you)
    assert "echo:" in result.stdout and "voice_to_voice=" in result.stdout
    with wave.open(str(out)) as w:
        assert w.getnframes() > w.getframerate() // 2


def test_chat_takes_typed_turns(stack, tmp_path):
    result = run_cli("chat", "--url", stack.ws, "--out-dir", str(tmp_path), stdin="Say hello.\n\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "echo:" in result.stdout
    assert (tmp_path / "reply-001.wav").stat().st_size > 1000


def test_talk_in_real_time_commits_when_the_vad_never_ends_the_turn(gateway_with, tmp_path):
    """A gateway whose VAD never hears speech (threshold above any probability): in real time the
    client commits the turn itself once the audio has ended, instead of waiting forever."""
    base = gateway_with(env={"ECHO_GATEWAY_VAD_THRESHOLD": "1.01"})
    question = speech_wav("What is the capital of Germany?", tmp_path / "question.wav")
    ws = base.replace("http://", "ws://") + "/v1/voice"
    result = run_cli("talk", str(question), "--url", ws, "--timeout", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    you = next(line for line in result.stdout.splitlines() if line.startswith("you:"))
    assert {"capital", "germany"} <= words(you)
    assert "echo:" in result.stdout


async def test_a_turn_that_never_finishes_is_a_clear_error(stack, gateway_with, stalling, tmp_path):
    llm = await stalling(stack.addresses["llm"], {"Generate"})  # the reply never comes
    base = gateway_with(env={"ECHO_LLM_ADDR": llm.address})
    ws = base.replace("http://", "ws://") + "/v1/voice"
    # The CLI runs as its own process while this event loop serves the stalling relay.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echo_voice.cli",
        "chat",
        "--url",
        ws,
        "--out-dir",
        str(tmp_path),
        "--timeout",
        "3",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(b"Hello?\n\n"), 120)
    assert proc.returncode == 1, stdout + stderr
    assert stderr.decode().strip().splitlines()[-1] == (
        "error: gave up on the turn after 3 s: the gateway sent no transcript and no reply"
    )
    assert b"Traceback" not in stderr


class Launched:
    """`echo-voice run` as a user starts it, in its own process group, on free ports with the test
    models; its output is read by a thread so the test can wait for a line."""

    def __init__(self, tmp_path: Path) -> None:
        for model in ("whisper-tiny.en", "smollm2-135m", "piper-joe"):
            require_model(model)
        self.ports = {name: free_port() for name in ("stt", "llm", "tts", "storage", "gateway")}
        env = {
            k: v
            for k, v in os.environ.items()
            if not re.fullmatch(r"ECHO_\w+_(ADDR|PORT|HOST)|ECHO_SERVICE_TOKEN(_FILE)?", k)
        }
        env |= {f"ECHO_{name.upper()}_PORT": str(port) for name, port in self.ports.items()}
        env |= {
            "ECHO_STT_MODEL": "whisper-tiny.en",
            "ECHO_LLM_MODEL": "smollm2-135m",
            "ECHO_TTS_VOICE": "piper-joe",
            "ECHO_DATA_DIR": str(tmp_path / "data"),
            "ECHO_STORAGE_DATA_DIR": str(tmp_path / "data"),
            # Where `run` keeps the service credential it generates: not the developer's own.
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        self.token_file = tmp_path / "config" / "echo" / "service-token"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "echo_voice.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, (
                f"echo-voice run exited with {self.proc.returncode}:\n{self.output}"
            )
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        found = (re.search(r"Echo: started (\w+) \(pid (\d+)\)", line) for line in self.lines)
        return {m[1]: int(m[2]) for m in found if m}

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code

    def group_is_empty(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def kill(self) -> None:
        if not self.group_is_empty():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def port_is_free(port: int) -> bool:
    """Nothing listens there any more (closed connections may linger in TIME_WAIT: allowed)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_run_starts_the_stack_and_sigterm_stops_every_process(tmp_path):
    launched = Launched(tmp_path)
    try:
        launched.wait_for("Echo is up")
        assert set(launched.pids()) == {"storage", "tts", "stt", "llm", "gateway"}, launched.output
        # "up" is printed only once the gateway says every service is ready.
        ready = httpx.get(f"http://127.0.0.1:{launched.ports['gateway']}/readyz", timeout=10)
        assert ready.status_code == 200 and set(ready.json()["services"].values()) == {"SERVING"}
        assert f"ws://127.0.0.1:{launched.ports['gateway']}/v1/voice" in launched.output
        # It generated the service credential, private to the user, and gave it to every process.
        assert stat.S_IMODE(launched.token_file.stat().st_mode) == 0o600
        token = launched.token_file.read_text().strip()
        with grpc.insecure_channel(f"127.0.0.1:{launched.ports['storage']}") as channel:
            stub = storage_pb2_grpc.StorageStub(channel)
            request = storage_pb2.ListConversationsRequest(user_id="local")
            stub.ListConversations(request, metadata=[("authorization", f"Bearer {token}")], timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListConversations(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The local user's API key: made on first start, in the printed link and the credentials file.
        credentials = launched.token_file.with_name("credentials.json")
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        key = json.loads(credentials.read_text())["api_key"]
        assert f"/?token={key}" in launched.output
        gateway = f"http://127.0.0.1:{launched.ports['gateway']}"
        listed = httpx.get(
            f"{gateway}/v1/conversations", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert listed.status_code == 200 and listed.json()["conversations"] == []
        assert httpx.get(f"{gateway}/v1/conversations", timeout=10).status_code == 401
        os.kill(launched.proc.pid, signal.SIGTERM)
        assert launched.finish() == 0, launched.output
        assert "Echo: stopped." in launched.output
        assert launched.group_is_empty(), "processes of the stack were left running"
        assert [name for name, port in launched.ports.items() if not port_is_free(port)] == []
    finally:
        launched.kill()


def test_run_exits_non_zero_naming_the_process_that_died(tmp_path):
    launched = Launched(tmp_path)
    try:
        launched.wait_for("Echo is up")
        os.kill(launched.pids()["storage"], signal.SIGKILL)
        assert launched.finish() == 1, launched.output
        assert "Echo: the storage process exited unexpectedly (exit code -9)" in launched.output
        assert launched.group_is_empty(), "the other processes were left running"
    finally:
        launched.kill()
