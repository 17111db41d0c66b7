"""The echo-voice command line against the running stack, as a user would run it."""

from __future__ import annotations

import subprocess
import sys
import wave

from tests.servicetools import ROOT
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
