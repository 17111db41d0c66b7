"""echo_voice's client and CLI against a scripted gateway: a real WebSocket server on 127.0.0.1 that
speaks the protocol with gateway/events.py's classes, so each case is exactly the situation named
(a failed turn, a VAD that ends the turn or never does, a malformed event) without the model stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from echo_voice.client import InvalidServerEvent, TurnTimeout, VoiceClient
from gateway import events
from gateway.events import (
    AudioMs,
    ErrorCode,
    InputCommit,
    InputText,
    Limits,
    OutputAudioInfo,
    ResponseDone,
    ResponseTextDelta,
    SessionEnd,
    SessionEnded,
    SessionStart,
    SessionStarted,
    Speculation,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    to_wire,
)
from tests.servicetools import ROOT


@dataclass
class ScriptedGateway:
    """Typed turns: text containing "fail" gets llm_unavailable, anything else "OK.". Spoken turns:
    with ``vad`` the turn ends (speech.started/stopped) once ``vad_bytes`` of audio arrived; without
    it, only input.commit ends it."""

    vad: bool = True
    vad_bytes: int = 3200
    received: list[str] = field(default_factory=list)  # the client messages' types, in order
    frames: list[dict[str, Any]] = field(default_factory=list)  # and the messages as sent
    url: str = ""

    async def reply(self, ws: ServerConnection, turn_id: str, text: str, error: str | None = None) -> None:
        if error is None:
            await ws.send(to_wire(ResponseTextDelta(turn_id=turn_id, delta=text)))
        done = ResponseDone(
            turn_id=turn_id,
            text="" if error else text,
            interrupted=False,
            usage={},
            timings_ms={"total": 1.0},
            audio_ms=AudioMs(sent=0, heard=0),
            error=error,
        )
        await ws.send(to_wire(done))

    async def handle(self, ws: ServerConnection) -> None:
        audio, turn = 0, 0
        async for frame in ws:
            if isinstance(frame, bytes):
                audio += len(frame)
                if self.vad and audio >= self.vad_bytes:
                    audio = -(10**9)  # one turn per connection is enough here
                    await self.end_spoken_turn(ws, vad=True)
                continue
            self.frames.append(json.loads(frame))
            message = events.parse_client_message(frame, 16384)
            self.received.append(message.type)
            turn += 1
            if isinstance(message, SessionStart):
                await ws.send(to_wire(self.started()))
            elif isinstance(message, InputText) and "fail" in message.text:
                error = ErrorCode.LLM_UNAVAILABLE
                await ws.send(to_wire(events.Error(code=error, message="down", turn_id=f"t{turn}")))
                await self.reply(ws, f"t{turn}", "", error=error)
            elif isinstance(message, InputText):
                await self.reply(ws, f"t{turn}", "OK.")
            elif isinstance(message, InputCommit):
                await self.end_spoken_turn(ws, vad=False)
            elif isinstance(message, SessionEnd):
                speculation = Speculation(started=0, used=0, discarded=0)
                await ws.send(to_wire(SessionEnded(session_id="s", unsaved_turns=0, speculation=speculation)))
                await ws.close()

    async def end_spoken_turn(self, ws: ServerConnection, vad: bool) -> None:
        if vad:
            await ws.send(to_wire(SpeechStarted(at_ms=0)))
            await ws.send(to_wire(SpeechStopped(at_ms=100)))
        await ws.send(to_wire(TranscriptFinal(turn_id="v1", text="hello")))
        await self.reply(ws, "v1", "Hi.")

    @staticmethod
    def started() -> SessionStarted:
        return SessionStarted(
            session_id="s",
            conversation_id="c",
            output_audio=OutputAudioInfo(
                encoding="pcm_s16le", sample_rate=22050, channels=1, playback="none"
            ),
            voice="v",
            resumed_turns=0,
            limits=Limits(max_frame_bytes=65536, max_text_chars=2000, max_utterance_s=30),
        )


@pytest.fixture()
async def gateway() -> AsyncIterator[ScriptedGateway]:
    scripted = ScriptedGateway()
    async with serve(scripted.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        scripted.url = f"ws://127.0.0.1:{port}/v1/voice"
        yield scripted


async def run_cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    # Its own process (the CLI runs its own event loop) while this loop serves the scripted gateway.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echo_voice.cli",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_chat_exits_1_with_one_line_when_a_turn_failed(gateway, tmp_path):
    code, out, err = await run_cli(
        "chat", "--url", gateway.url, "--out-dir", str(tmp_path), stdin="Say OK.\nplease fail\nSay OK.\n\n"
    )
    assert code == 1, out + err
    assert "error:  [llm_unavailable] down" in err
    assert err.strip().splitlines()[-1] == "error: 1 of 3 turns failed"
    assert out.count("echo:") == 3 and "Traceback" not in err
    assert gateway.received == ["session.start", "input.text", "input.text", "input.text", "session.end"]


async def test_chat_exits_0_when_every_turn_worked(gateway, tmp_path):
    code, out, err = await run_cli("chat", "--url", gateway.url, "--out-dir", str(tmp_path), stdin="Hi\n\n")
    assert code == 0 and err == "", out + err
    assert "echo:   OK." in out


async def test_a_spoken_turn_ended_by_the_vad_sends_no_commit(gateway):
    async with VoiceClient(gateway.url) as client:
        started = await client.start(16000, output_audio={"playback": "none"})
        assert started["output_audio"]["playback"] == "none"
        result = await client.talk(b"\1\0" * 1600, 16000, realtime=True, silence_s=0.1)
    assert result.vad_ended_turn and not result.committed_by_client
    assert result.transcript == "hello" and result.reply_text == "Hi."
    assert "input.commit" not in gateway.received


async def test_without_the_opt_in_the_client_never_commits_for_the_vad(gateway):
    gateway.vad = False
    async with VoiceClient(gateway.url) as client:
        await client.start()
        with pytest.raises(TurnTimeout):
            await client.talk(b"\1\0" * 1600, 16000, realtime=True, silence_s=0.1, timeout=0.5)
    assert "input.commit" not in gateway.received


async def test_with_the_opt_in_the_client_commits_and_says_so(gateway):
    gateway.vad = False
    async with VoiceClient(gateway.url) as client:
        await client.start()
        result = await client.talk(b"\1\0" * 1600, 16000, realtime=True, silence_s=0.1, commit_grace_s=0.05)
    assert result.committed_by_client and not result.vad_ended_turn
    assert result.reply_text == "Hi." and gateway.received == ["session.start", "input.commit"]


async def test_the_client_sends_what_the_classes_build(gateway):
    async with VoiceClient(gateway.url) as client:
        await client.start(48000, voice="piper-joe")
        await client.send({"type": "input.text", "text": "raw dicts still go out as they are"})
        result = await client.collect_turn()
    assert result.done["type"] == "response.done" and "_received_at" in result.events[0]
    assert gateway.received == ["session.start", "input.text"]
    start = gateway.frames[0]
    assert start["audio"] == {"encoding": "pcm_s16le", "sample_rate": 48000, "channels": 1}
    assert start["voice"] == "piper-joe" and "language" not in start  # absent, not null


async def test_a_malformed_server_event_is_an_error_not_silence():
    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "speech.started", "at_ms": 1, "surprise": True}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with VoiceClient(f"ws://127.0.0.1:{port}") as client:
            with pytest.raises(InvalidServerEvent, match="surprise"):
                await client.next_event(10)


async def test_expect_refuses_a_type_the_server_never_sends(gateway):
    async with VoiceClient(gateway.url) as client:
        with pytest.raises(ValueError, match="not a server event"):
            await client.expect("session.begun")


def test_aws_init_without_the_aws_extra_says_how_to_install_it():
    # The extra's modules made unimportable, as when it was never installed.
    script = (
        "import sys; sys.modules['aioboto3'] = sys.modules['botocore'] = None; "
        "from echo_voice.cli import main; main(['aws', 'init'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "aws extra" in line and "aioboto3" in line
    assert ".venv/bin/pip install -e '.[aws]'" in line
