"""The fake backends through their real servicers, in process, on a virtual clock (no waits, no wall clock).

The STT fake's tests are in test_fake_stt.py; the storage fake also runs the whole storage contract as
a real process (tests/storage/test_contract.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest

from echo.v1 import audio_pb2, llm_pb2, storage_pb2, tts_pb2
from services.common.errors import ResourceExhausted
from services.llm.backends.fake import FakeLLMBackend, FakeLLMSettings
from services.llm.config import LLMSettings
from services.llm.server import LanguageModelServicer
from services.storage.backends.fake import FakeStorageBackend, FakeStorageSettings
from services.storage.config import StorageSettings
from services.storage.server import StorageServicer
from services.stt.backends.fake import FakeSTTBackend
from services.tts.backends.fake import FakeTTSBackend, FakeTTSSettings
from services.tts.config import TTSSettings
from services.tts.server import TextToSpeechServicer
from tests.virtual_clock import run_virtual


class Context:
    """The part of grpc.aio.ServicerContext the servicers use: abort records the status and raises."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError(f"{code}: {details}")


async def timed(events: AsyncIterator[Any]) -> list[tuple[float, Any]]:
    """(virtual time, event) for every event of a stream."""
    loop = asyncio.get_running_loop()
    return [(round(loop.time(), 6), event) async for event in events]


# --- LLM ---------------------------------------------------------------------------------------------


def llm(**fake: Any) -> FakeLLMBackend:
    return FakeLLMBackend(LLMSettings(), FakeLLMSettings(**fake))


def generate_request(*texts: str, max_tokens: int = 0, model: str = "") -> llm_pb2.GenerateRequest:
    roles = ["user", "assistant"]
    messages = [llm_pb2.ChatMessage(role=roles[i % 2], content=t) for i, t in enumerate(texts)]
    return llm_pb2.GenerateRequest(
        messages=messages, model=model, sampling=llm_pb2.SamplingParams(max_tokens=max_tokens)
    )


def test_llm_streams_scripted_words_at_its_pace() -> None:
    backend = llm()
    backend.script("Hello there, friend.")
    servicer = LanguageModelServicer(backend, LLMSettings())
    events = run_virtual(timed(servicer.Generate(generate_request("hi", "hey", "how are you?"), Context())))
    assert [(t, e.delta) for t, e in events[:-1]] == [(0.1, "Hello "), (0.15, "there, "), (0.2, "friend.")]
    done = events[-1][1]
    assert done.done and (done.model, done.stop_reason) == ("fake", "stop")
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cost_usd) == (5, 3, 0.0)
    assert done.timing.first_token_ms == pytest.approx(100) and done.timing.total_ms == pytest.approx(200)
    assert [m.content for m in backend.requests[0].messages] == ["hi", "hey", "how are you?"]


def test_llm_default_reply_echoes_the_last_user_message_and_max_tokens_cuts_it() -> None:
    backend = llm(first_token_delay_s=0, token_interval_s=0)
    servicer = LanguageModelServicer(backend, LLMSettings())
    events = run_virtual(timed(servicer.Generate(generate_request("what time is it"), Context())))
    assert "".join(e.delta for _, e in events) == "You said: what time is it."
    cut = run_virtual(timed(servicer.Generate(generate_request("one two three", max_tokens=2), Context())))
    assert [e.delta for _, e in cut[:-1]] == ["You ", "said: "]
    assert (cut[-1][1].stop_reason, cut[-1][1].usage.output_tokens) == ("length", 2)


def test_llm_replies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_LLM_FAKE_REPLIES", "First.|Second one.")
    monkeypatch.setenv("ECHO_LLM_FAKE_TOKEN_INTERVAL_S", "0.5")
    backend = FakeLLMBackend(LLMSettings())
    servicer = LanguageModelServicer(backend, LLMSettings())
    first = run_virtual(timed(servicer.Generate(generate_request("a"), Context())))
    second = run_virtual(timed(servicer.Generate(generate_request("b"), Context())))
    assert [e.delta for _, e in first[:-1]] == ["First."]
    assert [(t, e.delta) for t, e in second[:-1]] == [(0.1, "Second "), (0.6, "one.")]


def test_llm_stops_when_the_consumer_goes_away() -> None:
    backend = llm()
    backend.script("a b c d e f")
    servicer = LanguageModelServicer(backend, LLMSettings())

    async def take_two_then_leave() -> list[str]:
        stream = servicer.Generate(generate_request("go"), Context())
        deltas = [(await anext(stream)).delta, (await anext(stream)).delta]
        await stream.aclose()
        # Closing the outer generator leaves the inner ones to the loop's async-generator finalizer.
        for _ in range(3):
            await asyncio.sleep(0)
        return deltas

    async def cancel_while_waiting() -> None:
        task = asyncio.create_task(timed(servicer.Generate(generate_request("go"), Context())))
        await asyncio.sleep(0.12)  # after the first token, during the wait for the second
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert run_virtual(take_two_then_leave()) == ["a ", "b "]
    assert backend.cancelled == 1
    run_virtual(cancel_while_waiting())
    assert backend.cancelled == 2


def test_llm_summary_models_and_unknown_model() -> None:
    backend = llm()
    servicer = LanguageModelServicer(backend, LLMSettings())
    request = llm_pb2.SummarizeRequest(
        messages=[
            llm_pb2.ChatMessage(role="user", content="Book a table. For two, please."),
            llm_pb2.ChatMessage(role="assistant", content="Done. Anything else?"),
            llm_pb2.ChatMessage(role="user", content="What is the weather? Sunny I hope."),
        ]
    )
    summary = run_virtual(servicer.Summarize(request, Context()))
    assert (summary.summary, summary.model) == ("Book a table. What is the weather?", "fake")
    models = run_virtual(servicer.ListModels(llm_pb2.ListModelsRequest(), Context()))
    assert [(m.name, m.is_default) for m in models.models] == [("fake", True)]
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        run_virtual(timed(servicer.Generate(generate_request("hi", model="gpt-9"), context)))
    assert context.code == grpc.StatusCode.NOT_FOUND


# --- TTS ---------------------------------------------------------------------------------------------


def tts(**fake: Any) -> FakeTTSBackend:
    return FakeTTSBackend(TTSSettings(), FakeTTSSettings(**fake))


def test_tts_tone_length_follows_the_text_in_piper_shaped_messages() -> None:
    backend = tts()
    servicer = TextToSpeechServicer(backend, max_chars=4000)
    request = tts_pb2.SynthesizeRequest(text="Hello.", voice="fake")
    events = [e for _, e in run_virtual(timed(servicer.Synthesize(request, Context())))]
    assert events[0].format == audio_pb2.AudioFormat(
        encoding=audio_pb2.PCM_S16LE, sample_rate=16000, channels=1
    )
    assert [len(e.audio) for e in events[1:-1]] == [6400, 3200]  # 6 chars x 50 ms = 0.3 s, 0.2 s chunks
    assert [e.sentence_index for e in events[1:-1]] == [0, 1]
    assert events[-1].usage.characters == 6 and not events[-1].audio
    samples = np.frombuffer(b"".join(e.audio for e in events), dtype="<i2") / 32768
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=5)
    assert np.abs(samples).max() == pytest.approx(0.3, abs=0.01)
    assert backend.requests[0].text == "Hello."


def test_tts_paces_chunks_and_honours_rate_and_sample_rate() -> None:
    servicer = TextToSpeechServicer(tts(chunk_delay_s=0.1), max_chars=4000)
    request = tts_pb2.SynthesizeRequest(
        text="x" * 8, rate=2.0, format=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=24000)
    )
    events = run_virtual(timed(servicer.Synthesize(request, Context())))
    audio = [(t, len(e.audio)) for t, e in events if e.audio]
    assert audio == [(0.1, 9600)]  # 8 x 50 ms / 2 = 0.2 s at 24 kHz: one chunk
    assert events[0][1].format.sample_rate == 24000


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (tts_pb2.SynthesizeRequest(text="hi", voice="piper-joe"), grpc.StatusCode.NOT_FOUND),
        (tts_pb2.SynthesizeRequest(text="hi", ssml=True), grpc.StatusCode.INVALID_ARGUMENT),
        (tts_pb2.SynthesizeRequest(text="hi", rate=9), grpc.StatusCode.INVALID_ARGUMENT),
        (
            tts_pb2.SynthesizeRequest(text="hi", format=audio_pb2.AudioFormat(encoding=audio_pb2.MP3)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (tts_pb2.SynthesizeRequest(text="   "), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_tts_refuses_like_piper(request_: tts_pb2.SynthesizeRequest, code: grpc.StatusCode) -> None:
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        run_virtual(timed(TextToSpeechServicer(tts(), max_chars=4000).Synthesize(request_, context)))
    assert context.code == code


def test_tts_voices() -> None:
    servicer = TextToSpeechServicer(tts(), max_chars=4000)
    voices = run_virtual(servicer.ListVoices(tts_pb2.ListVoicesRequest(), Context())).voices
    assert [(v.name, list(v.aliases), v.is_default, v.sample_rate) for v in voices] == [
        ("fake-tone", ["fake"], True, 16000)
    ]
    spanish = run_virtual(servicer.ListVoices(tts_pb2.ListVoicesRequest(language="es"), Context()))
    assert not spanish.voices


# --- Storage -----------------------------------------------------------------------------------------


def test_storage_fail_next_injects_an_outage_then_recovers() -> None:
    backend = FakeStorageBackend(StorageSettings(), FakeStorageSettings())
    servicer = StorageServicer(backend, max_audio_bytes=1024)
    turn = storage_pb2.Turn(
        user_id="u1",
        conversation_id="c1",
        session_id="s1",
        timestamp="2026-01-01T10:00:00.000000Z",
        turn_id="t1",
    )
    session = storage_pb2.Session(user_id="u1", session_id="s1", conversation_id="c1")

    async def scenario() -> list[grpc.StatusCode | None]:
        backend.fail_next(2, methods={"save_turn"})
        codes = []
        for _ in range(3):
            await servicer.SaveSession(session, Context())  # not a save_turn: unaffected
            context = Context()
            try:
                await servicer.SaveTurn(turn, context)
            except grpc.aio.AbortError:
                pass
            codes.append(context.code)
        backend.fail_next(1, ResourceExhausted("throttled"))
        context = Context()
        with pytest.raises(grpc.aio.AbortError):
            await servicer.GetConversation(
                storage_pb2.GetConversationRequest(user_id="u1", conversation_id="c1"), context
            )
        codes.append(context.code)
        conversation = await servicer.GetConversation(
            storage_pb2.GetConversationRequest(user_id="u1", conversation_id="c1"), Context()
        )
        assert [t.turn_id for t in conversation.turns] == ["t1"]
        return codes

    assert run_virtual(scenario()) == [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAVAILABLE,
        None,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ]
    assert backend.faults.raised == 3
    assert backend.faults.calls.count("save_turn") == 3


def test_storage_times_come_from_a_logical_clock() -> None:
    def saved_times() -> list[tuple[str, str]]:
        backend = FakeStorageBackend(StorageSettings(), FakeStorageSettings())
        session = storage_pb2.Session(user_id="u1", session_id="s1", conversation_id="c1")

        async def save_twice() -> list[tuple[str, str]]:
            first = await backend.conversations.save_session(session)
            await backend.conversations.save_session(session)
            again = await backend.conversations.get_session("u1", "s1")
            return [(first.created_at, first.updated_at), (again.created_at, again.updated_at)]

        return run_virtual(save_twice())

    assert (
        saved_times()
        == saved_times()
        == [
            ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z"),
            ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000001Z"),
        ]
    )


# --- Selection by name --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("stt", FakeSTTBackend),
        ("llm", FakeLLMBackend),
        ("tts", FakeTTSBackend),
        ("storage", FakeStorageBackend),
    ],
)
def test_service_variable_selects_the_fake(
    monkeypatch: pytest.MonkeyPatch, service: str, expected: type
) -> None:
    import importlib

    monkeypatch.setenv(f"ECHO_{service.upper()}_SERVICE", "fake")
    config = importlib.import_module(f"services.{service}.config")
    backends = importlib.import_module(f"services.{service}.backends")
    backend = backends.create(config.load())
    assert type(backend) is expected and backend.name == "fake"
