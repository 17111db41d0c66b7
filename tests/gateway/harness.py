"""The turn engine in process, against the fake backends behind their real servicers, on virtual time.

A test talks to the engine as a client would (typed messages, audio frames) and reads what the
client would receive. Audio is fed at real-time pace on the virtual clock, so VAD silences, LLM token
pacing, playout and save retries all happen in virtual seconds: no sleeps, no wall-clock windows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from echo.v1 import llm_pb2, storage_pb2, stt_pb2, tts_pb2
from gateway import events as ev
from gateway.clients import Services
from gateway.config import GatewaySettings
from gateway.quotas import Quotas
from gateway.turn.engine import Disconnected, TurnEngine
from services.common.audio import float_to_pcm16
from services.llm.backends.fake import FakeLLMBackend, FakeLLMSettings
from services.llm.config import LLMSettings
from services.llm.server import LanguageModelServicer
from services.storage.backends.fake import FakeStorageBackend, FakeStorageSettings
from services.storage.config import StorageSettings
from services.storage.server import StorageServicer
from services.stt.backends.fake import FakeSTTBackend, FakeSTTSettings
from services.stt.config import STTSettings
from services.stt.server import SpeechToTextServicer
from services.tts.backends.fake import FakeTTSBackend, FakeTTSSettings
from services.tts.config import TTSSettings
from services.tts.server import TextToSpeechServicer
from tests.gateway.inprocess import InProcessStub

RATE = 16000
CHUNK_S = 0.02  # the client sends 20 ms frames
SYSTEM_PROMPT = "You are Echo, a helpful voice assistant."


class EnergyVad:
    """A fake VAD model for StreamingVAD: a frame is speech when it is loud (the harness's speech is
    a tone, its silence is zeros), so where turns start and end is exact."""

    def step(self, frame: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        loud = float(np.sqrt(np.mean(frame[-512:] ** 2))) > 0.01
        return (1.0 if loud else 0.0), h, c


class ScriptedTurnModel:
    """A fake Smart Turn: scripted probabilities, one per question (then: complete)."""

    def __init__(self, *probabilities: float) -> None:
        self.answers = list(probabilities)
        self.heard_s: list[float] = []  # seconds of audio each question carried

    def probability(self, audio: np.ndarray) -> float:
        self.heard_s.append(len(audio) / RATE)
        return self.answers.pop(0) if self.answers else 1.0


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Offload that runs the work right here: no threads, so virtual time stays exact."""
    return fn(*args)


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    samples = 0.3 * np.sin(2 * np.pi * 220 * t)
    if channels > 1:
        samples = np.repeat(samples, channels)
    return float_to_pcm16(samples)


def quiet(seconds: float, rate: int = RATE, channels: int = 1) -> bytes:
    return bytes(2 * channels * round(seconds * rate))


@dataclass
class Received:
    at: float  # virtual time
    event: dict[str, Any] | None = None  # a JSON event, or None for an audio frame
    audio: bytes = b""


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[Received] = []
        self.changed = asyncio.Event()
        self.fail = False  # the client vanished: sends fail as a closed socket's do

    async def send_text(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("the client went away")
        self.frames.append(Received(asyncio.get_running_loop().time(), json.loads(text)))
        self.changed.set()

    async def send_bytes(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("the client went away")
        self.frames.append(Received(asyncio.get_running_loop().time(), audio=data))
        self.changed.set()


@dataclass
class Fakes:
    stt: FakeSTTSettings = field(default_factory=FakeSTTSettings)
    llm: FakeLLMSettings = field(default_factory=FakeLLMSettings)
    tts: FakeTTSSettings = field(default_factory=FakeTTSSettings)
    storage: FakeStorageSettings = field(default_factory=FakeStorageSettings)


def slow_llm(first_token_delay_s: float = 3.0) -> Fakes:
    """Fakes whose LLM takes a while to answer: the reply stays in `thinking` that long."""
    fakes = Fakes()
    fakes.llm.first_token_delay_s = first_token_delay_s
    return fakes


class Harness:
    def __init__(
        self,
        fakes: Fakes | None = None,
        turn_model: ScriptedTurnModel | None = None,
        quotas: Callable[[], datetime] | None = None,
        user_id: str = "local",
        **settings: Any,
    ) -> None:
        """``quotas``: enforce the per-user limits, with this wall clock for the UTC day."""
        fakes = fakes or Fakes()
        self.stt = FakeSTTBackend(STTSettings(), fakes.stt)
        self.llm = FakeLLMBackend(LLMSettings(), fakes.llm)
        self.tts = FakeTTSBackend(TTSSettings(), fakes.tts)
        self.storage = FakeStorageBackend(StorageSettings(), fakes.storage)
        self.services = Services(
            stt=InProcessStub(
                SpeechToTextServicer(self.stt), stt_pb2.DESCRIPTOR.services_by_name["SpeechToText"]
            ),
            llm=InProcessStub(
                LanguageModelServicer(self.llm, LLMSettings()),
                llm_pb2.DESCRIPTOR.services_by_name["LanguageModel"],
            ),
            tts=InProcessStub(
                TextToSpeechServicer(self.tts, TTSSettings().max_chars),
                tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"],
            ),
            storage=InProcessStub(
                StorageServicer(self.storage, StorageSettings().max_audio_bytes),
                storage_pb2.DESCRIPTOR.services_by_name["Storage"],
            ),
            channels={},
        )  # type: ignore[arg-type]
        self.settings = replace(GatewaySettings(), **settings)
        self.sink = RecordingSink()
        self.user_id = user_id
        self.quotas = Quotas(self.settings, self.services.storage, quotas) if quotas else None  # type: ignore[arg-type]
        self.engine = TurnEngine(
            self.services,  # type: ignore[arg-type]
            self.settings,
            EnergyVad(),  # type: ignore[arg-type]
            SYSTEM_PROMPT,
            self.sink,
            inline,
            turn_model,
            user_id=user_id,
            quotas=self.quotas,
        )
        self.task: asyncio.Task[None] | None = None
        self.cursor = 0  # next() reads events after this index

    # ----- the client's side --------------------------------------------------------------------

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.engine.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.engine.signal(Disconnected())
            await asyncio.wait_for(self.task, 60)

    def send(self, message: ev.BaseModel | dict[str, Any] | bytes) -> None:
        """A client frame: typed message, raw JSON object (parsed as the gateway does) or audio."""
        if isinstance(message, dict):
            message = ev.parse_client_message(json.dumps(message), self.settings.max_message_bytes)
        self.engine.signal(message)

    async def start(self, **fields: Any) -> dict[str, Any]:
        self.send(ev.SessionStart(**fields))
        return await self.next("session.started")

    async def stream(self, pcm: bytes, rate: int = RATE, channels: int = 1) -> None:
        """Send audio as a real-time client does: a 20 ms frame every 20 ms."""
        step = 2 * channels * round(CHUNK_S * rate)
        for i in range(0, len(pcm), step):
            self.send(pcm[i : i + step])
            await asyncio.sleep(CHUNK_S)

    async def say(self, seconds: float, then_quiet: float = 1.0) -> None:
        await self.stream(tone(seconds) + quiet(then_quiet))

    # ----- what the client received --------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f.event for f in self.sink.frames if f.event is not None]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def audio(self, turn_id: str | None = None) -> bytes:
        return b"".join(f.audio for f in self.sink.frames if f.event is None)

    def at(self, predicate: Callable[[dict[str, Any]], bool]) -> float:
        """Virtual time of the first event matching ``predicate``."""
        return next(f.at for f in self.sink.frames if f.event is not None and predicate(f.event))

    async def next(self, kind: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        """The next event of ``kind`` (and matching fields) after the last one next() returned."""

        async def find() -> dict[str, Any]:
            while True:
                frames = self.sink.frames
                for i in range(self.cursor, len(frames)):
                    event = frames[i].event
                    if event and event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                        self.cursor = i + 1
                        return event
                self.sink.changed.clear()
                await self.sink.changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def conversation(self, conversation_id: str) -> storage_pb2.Conversation:
        """The conversation as the storage service has it."""
        request = storage_pb2.GetConversationRequest(conversation_id=conversation_id, user_id=self.user_id)
        return await self.services.storage.GetConversation(request, timeout=5)

    async def idle(self, seconds: float) -> None:
        """Let virtual time pass with the client silent (sending nothing)."""
        await asyncio.sleep(seconds)
