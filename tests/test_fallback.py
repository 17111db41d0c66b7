"""services.common.fallback: ordered backends, cooldowns, recovery, no fallback after output, replayed
audio, and health. Backends here are real Protocol implementations (the fake backends, and small
ones below that fail with Echo's real ServiceError types); time is an injected clock, never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from echo.v1 import audio_pb2, llm_pb2, stt_pb2, stt_pb2_grpc, tts_pb2
from services.common.capabilities import BackendCapabilities, capabilities_message
from services.common.config import ConfigError
from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from services.common.fallback import FallbackSettings, is_availability_error
from services.common.grpc_server import follow_availability, serve
from services.llm.backends.fake import FakeLLMBackend, FakeLLMSettings
from services.llm.config import LLMSettings
from services.llm.fallback import FallbackLLM
from services.stt.backends.fake import FakeSTTBackend, FakeSTTSettings
from services.stt.config import STTSettings
from services.stt.fallback import FallbackSTT
from services.stt.server import SpeechToTextServicer
from services.tts.backends.fake import FakeTTSBackend, FakeTTSSettings
from services.tts.config import TTSSettings
from services.tts.fallback import FallbackTTS
from tests.servicetools import SERVICE_TOKEN, free_port, grpc_channel
from tests.virtual_clock import run_virtual

RATE = 16000
FINAL, PARTIAL = stt_pb2.TranscriptEvent.FINAL, stt_pb2.TranscriptEvent.PARTIAL
SETTINGS = FallbackSettings(cooldown_s=5.0, max_cooldown_s=40.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ScriptedSTT:
    """An STT backend that hears the audio it is given: it keeps every byte, sends a PARTIAL after
    ``fail_after`` bytes when asked, and then fails with ``error`` (if any) or ends with a FINAL."""

    capabilities = BackendCapabilities(streaming=True, word_timings=True)

    def __init__(
        self, name: str, error: Exception | None = None, fail_after: int = 0, partial: bool = False
    ) -> None:
        self.name = name
        self.error = error
        self.fail_after = fail_after
        self.partial = partial
        self.heard: list[bytes] = []  # the audio of each stream call
        self.configs: list[stt_pb2.RecognitionConfig] = []
        self.recognized: list[stt_pb2.RecognizeRequest] = []
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        self.configs.append(config)
        self.heard.append(b"")
        return self._stream(audio)

    async def _stream(self, audio: AsyncIterator[bytes]) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        async for chunk in audio:
            self.heard[-1] += chunk
            if self.error is not None and len(self.heard[-1]) >= self.fail_after:
                if self.partial:
                    yield stt_pb2.TranscriptEvent(kind=PARTIAL, text=f"{self.name} partial")
                raise self.error
        if self.error is not None:
            raise self.error
        yield stt_pb2.TranscriptEvent(kind=FINAL, text=self.name, audio_s=len(self.heard[-1]) / 2 / RATE)

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        self.recognized.append(request)
        if self.error is not None:
            raise self.error
        return stt_pb2.RecognizeResponse(text=self.name, language=request.config.language)


class HandingSTT(ScriptedSTT):
    """A backend that reads requests its own way and says how, as Transcribe does with its language."""

    def handoff_config(self, config: stt_pb2.RecognitionConfig) -> stt_pb2.RecognitionConfig:
        handed = stt_pb2.RecognitionConfig()
        handed.CopyFrom(config)
        handed.language = config.language or "fr-FR"
        return handed


class BrokenLLM:
    """Sends ``tokens`` deltas, then fails with ``error``; records whether its stream was closed."""

    capabilities = BackendCapabilities(streaming=True)

    def __init__(self, error: Exception, tokens: int = 0) -> None:
        self.name = "broken"
        self.error = error
        self.tokens = tokens
        self.calls = 0
        self.cleaned_up = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        self.calls += 1
        return self._generate()

    async def _generate(self) -> AsyncIterator[llm_pb2.GenerateEvent]:
        try:
            for i in range(self.tokens):
                yield llm_pb2.GenerateEvent(delta=f"t{i} ")
            raise self.error
        finally:
            self.cleaned_up += 1

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        self.calls += 1
        raise self.error

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        self.calls += 1
        raise self.error


def config(**kw: object) -> stt_pb2.RecognitionConfig:
    return stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1), **kw
    )


def speech(seconds: float = 1.0) -> bytes:
    return bytes(range(256)) * int(seconds * RATE * 2 / 256)


async def chunks(pcm: bytes, size: int = 3200) -> AsyncIterator[bytes]:
    for i in range(0, len(pcm), size):
        yield pcm[i : i + size]


async def transcribe(chain: FallbackSTT, pcm: bytes, **kw: object) -> list[stt_pb2.TranscriptEvent]:
    return [event async for event in chain.stream(config(**kw), chunks(pcm))]


def llm_request() -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="user", content="hi")])


# --- which errors count -----------------------------------------------------------------------------------


def test_availability_errors_are_the_backends_problem_only() -> None:
    for error in (Unavailable("x"), ResourceExhausted("x"), DeadlineExceeded("x"), TimeoutError()):
        assert is_availability_error(error), error
    for error in (InvalidArgument("x"), NotFound("x"), PermissionDenied("x"), ServiceError("x"), KeyError()):
        assert not is_availability_error(error), error


def test_bad_cooldown_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cooldown_s"):
        FallbackSettings(cooldown_s=0)
    with pytest.raises(ConfigError, match="max_cooldown_s"):
        FallbackSettings(cooldown_s=10, max_cooldown_s=5)


# --- order, skipping, recovery -----------------------------------------------------------------------------


async def test_the_first_backend_serves_while_it_works() -> None:
    first, second = ScriptedSTT("first"), ScriptedSTT("second")
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    await chain.start()
    assert first.started and second.started
    assert [e.text for e in await transcribe(chain, speech())] == ["first"]
    assert len(second.heard) == 0
    assert capabilities_message(chain) == audio_pb2.Capabilities(
        backend="first", streaming=True, word_timings=True, backends=["first", "second"]
    )
    await chain.close()
    assert first.closed and second.closed


async def test_a_down_backend_is_skipped_for_its_cooldown_then_tried_again() -> None:
    clock = Clock()
    first, second = ScriptedSTT("first", Unavailable("Transcribe is unreachable")), ScriptedSTT("second")
    chain = FallbackSTT([first, second], SETTINGS, clock)
    assert [e.text for e in await transcribe(chain, speech())] == ["second"]
    assert chain.name == "second"  # serving now
    assert capabilities_message(chain).backends == ["first", "second"]

    clock.now += 4.75  # still cooling down: not tried at all
    assert [e.text for e in await transcribe(chain, speech())] == ["second"]
    assert len(first.heard) == 1

    clock.now += 0.25  # cooldown over, and it works again: it serves, and its record is clean
    first.error = None
    assert chain.name == "first"
    assert [e.text for e in await transcribe(chain, speech())] == ["first"]
    first.error = ResourceExhausted("throttled")
    await transcribe(chain, speech())
    clock.now += 5.0  # back to the first cooldown, not a doubled one
    assert chain.name == "first"


async def test_cooldown_doubles_for_failures_in_a_row_up_to_the_maximum() -> None:
    clock = Clock()
    first, second = ScriptedSTT("first", ResourceExhausted("LimitExceededException")), ScriptedSTT("second")
    chain = FallbackSTT([first, second], SETTINGS, clock)
    for cooldown in (5.0, 10.0, 20.0, 40.0, 40.0):
        await transcribe(chain, speech(0.2))
        clock.now += cooldown - 0.25
        assert chain.name == "second", cooldown
        clock.now += 0.25
        assert chain.name == "first", cooldown
    assert len(first.heard) == 5


@pytest.mark.parametrize(
    "error",
    [InvalidArgument("bad vocabulary"), NotFound("no such voice"), PermissionDenied("not authorized")],
)
async def test_the_callers_errors_are_not_hidden_by_a_fallback(error: Exception) -> None:
    first, second = ScriptedSTT("first", error), ScriptedSTT("second")
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    with pytest.raises(type(error), match=str(error)):
        await transcribe(chain, speech())
    with pytest.raises(type(error)):
        await chain.recognize(stt_pb2.RecognizeRequest(config=config(), audio=speech()))
    assert second.heard == [] and second.recognized == []
    assert chain.name == "first" and chain.available()  # nothing marked down


async def test_recognize_falls_back_and_the_first_backend_reads_the_request_for_the_others() -> None:
    first = HandingSTT("transcribe", DeadlineExceeded("job still IN_PROGRESS"))
    second = ScriptedSTT("whisper")
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    reply = await chain.recognize(stt_pb2.RecognizeRequest(config=config(), audio=speech()))
    assert (reply.text, reply.language) == ("whisper", "fr-FR")
    assert second.recognized[0].audio == speech()
    # Even while the first is down and skipped, the others get its reading of the request.
    await transcribe(chain, speech(0.2))
    assert len(first.heard) == 0 and second.configs[-1].language == "fr-FR"


# --- streams: replayed audio, what commits ----------------------------------------------------------


async def test_stt_replays_the_whole_utterance_to_the_backend_taking_over() -> None:
    pcm = speech(1.0)
    first = ScriptedSTT(
        "transcribe", ResourceExhausted("Stream throttled mid-way"), fail_after=9600, partial=True
    )
    second = FakeSTTBackend(STTSettings(), FakeSTTSettings(transcripts="book a table", quiet_tail_s=10))
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    events = await transcribe(chain, pcm, interim_results=True)
    # Transcribe had part of the audio; its PARTIAL was provisional, so the fake could still take over.
    assert 0 < len(first.heard[0]) < len(pcm)
    assert events[0].text == "transcribe partial"
    final = events[-1]
    assert (final.kind, final.text) == (FINAL, "book a table")
    assert final.audio_s == pytest.approx(len(pcm) / 2 / RATE)  # every byte, from the first one


async def test_stt_replayed_audio_is_byte_identical() -> None:
    pcm = speech(0.7) + b"\x01"  # an odd byte at the end too
    first = ScriptedSTT("first", Unavailable("connection reset"), fail_after=5000)
    second = ScriptedSTT("second")
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    await transcribe(chain, pcm)
    assert second.heard == [pcm]


async def test_no_stt_fallback_once_the_final_has_been_sent() -> None:
    class FailsAfterFinal(ScriptedSTT):
        async def _stream(self, audio: AsyncIterator[bytes]) -> AsyncIterator[stt_pb2.TranscriptEvent]:
            async for _ in audio:
                pass
            yield stt_pb2.TranscriptEvent(kind=FINAL, text="done")
            raise Unavailable("connection lost while closing")

    second = ScriptedSTT("second")
    chain = FallbackSTT([FailsAfterFinal("first"), second], SETTINGS, Clock())
    seen = []
    with pytest.raises(Unavailable, match="while closing"):
        async for event in chain.stream(config(), chunks(speech(0.2))):
            seen.append(event.text)
    assert seen == ["done"] and second.heard == []
    assert chain.name == "second"  # it did fail: marked down all the same


async def test_a_broken_caller_stream_is_an_error_not_a_final() -> None:
    async def audio() -> AsyncIterator[bytes]:
        yield speech(0.2)
        raise InvalidArgument("config may only be sent once, first")

    chain = FallbackSTT([ScriptedSTT("first"), ScriptedSTT("second")], SETTINGS, Clock())
    with pytest.raises(InvalidArgument, match="only be sent once"):
        async for event in chain.stream(config(), audio()):
            assert event.kind != FINAL


async def test_no_llm_fallback_after_the_first_token() -> None:
    broken = BrokenLLM(Unavailable("Bedrock reset the stream"), tokens=2)
    fake = FakeLLMBackend(LLMSettings(), FakeLLMSettings())
    chain = FallbackLLM([broken, fake], SETTINGS, Clock())
    deltas = []
    with pytest.raises(Unavailable, match="reset the stream"):
        async for event in chain.generate(llm_request()):
            deltas.append(event.delta)
    assert deltas == ["t0 ", "t1 "]
    # Marked down all the same: the next reply comes from the fake, whole.
    events = [event async for event in chain.generate(llm_request())]
    assert events[-1].done and "".join(e.delta for e in events).strip()
    assert broken.calls == 1


async def test_llm_falls_back_before_output_and_for_unary_calls() -> None:
    broken = BrokenLLM(ResourceExhausted("ThrottlingException"))
    chain = FallbackLLM([broken, FakeLLMBackend(LLMSettings(), FakeLLMSettings())], SETTINGS, Clock())
    events = [event async for event in chain.generate(llm_request())]
    assert events[-1].done and events[-1].model
    models = await chain.list_models()
    assert models and broken.calls == 1  # list_models skipped the down backend


async def test_an_abandoned_stream_is_closed_at_once() -> None:
    # The caller stops reading (a barge-in cancels the reply): the backend's cleanup runs now.
    broken = BrokenLLM(Unavailable("never reached"), tokens=5)
    chain = FallbackLLM([broken], SETTINGS, Clock())
    replies = chain.generate(llm_request())
    assert (await anext(replies)).delta == "t0 "
    await replies.aclose()  # type: ignore[attr-defined]
    assert broken.cleaned_up == 1


async def test_tts_falls_back_before_its_first_response() -> None:
    class DownTTS:
        name = "polly"
        capabilities = BackendCapabilities(streaming=False, word_timings=True)

        async def start(self) -> None: ...

        async def close(self) -> None: ...

        async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]:
            raise Unavailable("Polly is unreachable")

        async def synthesize(
            self, request: tts_pb2.SynthesizeRequest
        ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
            raise Unavailable("Polly is unreachable")
            yield tts_pb2.SynthesizeResponse()

    chain = FallbackTTS([DownTTS(), FakeTTSBackend(TTSSettings(), FakeTTSSettings())], SETTINGS, Clock())
    assert chain.capabilities.word_timings
    replies = [r async for r in chain.synthesize(tts_pb2.SynthesizeRequest(text="Hello there."))]
    assert replies[0].format.sample_rate > 0 and any(r.audio for r in replies)
    assert [v.backend for v in await chain.voices()] == ["fake"]
    assert chain.capabilities == FakeTTSBackend.capabilities


# --- every backend down: fail fast, health, start ---------------------------------------------------


async def test_when_every_backend_is_down_requests_fail_at_once() -> None:
    clock = Clock()
    first = ScriptedSTT("first", Unavailable("unreachable"))
    second = ScriptedSTT("second", ResourceExhausted("throttled"))
    chain = FallbackSTT([first, second], SETTINGS, clock)
    with pytest.raises(ResourceExhausted, match="throttled"):  # the last backend's own error
        await transcribe(chain, speech(0.2))
    assert not chain.available()
    with pytest.raises(Unavailable, match="every stt backend is down: first: Unavailable: unreachable"):
        await transcribe(chain, speech(0.2))
    assert len(first.heard) == len(second.heard) == 1  # neither was tried again


def test_health_is_not_serving_while_every_backend_is_down_and_serving_after() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        first = ScriptedSTT("first", Unavailable("unreachable"))
        second = ScriptedSTT("second", Unavailable("unreachable"))
        chain = FallbackSTT([first, second], SETTINGS, loop.time)  # the virtual loop's clock
        servicer = health.aio.HealthServicer()
        follower = asyncio.create_task(follow_availability(chain, servicer, ["", "echo.v1.SpeechToText"]))

        async def status() -> str:
            for _ in range(5):  # let the follower run (virtual time does not move)
                await asyncio.sleep(0)
            reply = await servicer.Check(health_pb2.HealthCheckRequest(service="echo.v1.SpeechToText"), None)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        seen = [await status()]
        with pytest.raises(Unavailable):
            await transcribe(chain, speech(0.2))
        seen.append(await status())
        await asyncio.sleep(4.9)  # virtual seconds: both still cooling down
        seen.append(await status())
        await asyncio.sleep(0.2)  # a cooldown ended: requests are tried again
        seen.append(await status())
        with pytest.raises(Unavailable):  # and fail again: down for twice as long
            await transcribe(chain, speech(0.2))
        seen.append(await status())
        await asyncio.sleep(9.9)
        seen.append(await status())
        await asyncio.sleep(0.2)
        second.error = None  # recovered
        assert [e.text for e in await transcribe(chain, speech(0.2))] == ["second"]
        seen.append(await status())
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        return seen

    assert run_virtual(scenario()) == [
        "SERVING",
        "NOT_SERVING",
        "NOT_SERVING",
        "SERVING",
        "NOT_SERVING",
        "NOT_SERVING",
        "SERVING",
    ]


async def test_a_backend_unavailable_at_start_is_marked_down_not_fatal() -> None:
    class Unreachable(ScriptedSTT):
        async def start(self) -> None:
            raise Unavailable("Polly DescribeVoices: could not connect")

    second = ScriptedSTT("second")
    chain = FallbackSTT([Unreachable("first"), second], SETTINGS, Clock())
    await chain.start()
    assert chain.name == "second" and second.started
    with pytest.raises(Unavailable, match="no backend could start"):
        await FallbackSTT([Unreachable("a"), Unreachable("b")], SETTINGS, Clock()).start()

    class Misconfigured(ScriptedSTT):
        async def start(self) -> None:
            raise ConfigError("model whisper-huge is not pulled")

    with pytest.raises(ConfigError, match="not pulled"):
        await FallbackSTT([Misconfigured("a"), second], SETTINGS, Clock()).start()


async def test_a_backend_that_cannot_take_over_leaves_the_outage_as_the_error() -> None:
    # Whisper refusing an s3:// uri is not the caller's mistake: the outage of the first is what happened.
    first = ScriptedSTT("transcribe", Unavailable("Transcribe StartTranscriptionJob: unreachable"))
    second = ScriptedSTT("whisper", InvalidArgument("the whisper backend takes audio bytes, not a uri"))
    chain = FallbackSTT([first, second], SETTINGS, Clock())
    with pytest.raises(Unavailable) as error:
        await chain.recognize(stt_pb2.RecognizeRequest(config=config(), uri="s3://echo-audio/a.wav"))
    assert str(error.value) == (
        "Transcribe StartTranscriptionJob: unreachable "
        "(whisper cannot take over: the whisper backend takes audio bytes, not a uri)"
    )
    # Asked first (the other is down), the same refusal is the caller's own error again.
    with pytest.raises(InvalidArgument):
        await chain.recognize(stt_pb2.RecognizeRequest(config=config(), uri="s3://echo-audio/a.wav"))


async def test_the_served_health_follows_the_chain_over_grpc() -> None:
    # The real server skeleton: health NOT_SERVING once every backend is down, SERVING when one recovers.
    clock = Clock()
    first, second = ScriptedSTT("first", Unavailable("down")), ScriptedSTT("second", Unavailable("down"))
    chain = FallbackSTT([first, second], SETTINGS, clock)
    port = free_port()
    service = stt_pb2.DESCRIPTOR.services_by_name["SpeechToText"].full_name
    server = asyncio.create_task(
        serve(
            "stt",
            [service],
            lambda s: stt_pb2_grpc.add_SpeechToTextServicer_to_server(SpeechToTextServicer(chain), s),
            "127.0.0.1",
            port,
            on_start=chain.start,
            on_stop=chain.close,
            availability=chain,
            token=SERVICE_TOKEN,
        )
    )
    try:
        async with grpc_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=service), wait_for_ready=True, timeout=30
            )
            stub = stt_pb2_grpc.SpeechToTextStub(channel)

            async def next_status(wanted: int) -> None:
                async for reply in watch:
                    if reply.status == wanted:
                        return

            await next_status(health_pb2.HealthCheckResponse.SERVING)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Recognize(stt_pb2.RecognizeRequest(config=config(), audio=speech(0.2)), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            await next_status(health_pb2.HealthCheckResponse.NOT_SERVING)
            clock.now += 5.0  # the cooldowns are over, and the second backend is back
            second.error = None
            request = stt_pb2.RecognizeRequest(config=config(), audio=speech(0.2))
            reply = await stub.Recognize(request, timeout=10)
            assert reply.text == "second"
            await next_status(health_pb2.HealthCheckResponse.SERVING)
            capabilities = await stub.GetCapabilities(audio_pb2.CapabilitiesRequest(), timeout=10)
            assert (capabilities.backend, list(capabilities.backends)) == ("second", ["first", "second"])
            watch.cancel()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    assert first.closed and second.closed
