"""Amazon Transcribe streaming against a stand-in: the real amazon-transcribe client over HTTP/2 + TLS to a
local server that reads the signed audio event stream and answers TranscriptEvents. Batch jobs (moto)
are in test_transcribe_batch.py."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from services.common.audio import float_to_pcm16, pcm16_to_float, wav_bytes
from services.common.config import ConfigError
from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.fallback import FallbackSettings
from services.stt.backends.base import STTBackend
from services.stt.backends.transcribe import TranscribeBackend
from services.stt.backends.transcribe_settings import TranscribeSettings, load_transcribe_settings
from services.stt.backends.whisper import WhisperBackend, WhisperSettings
from services.stt.config import STTSettings
from services.stt.fallback import FallbackSTT
from services.stt.server import SpeechToTextServicer
from tests.aws.conftest import TranscribeStandIn, isolated_aws_env
from tests.conftest import require_model
from tests.servicetools import free_port, grpc_channel, start_grpc_service
from tests.speech import speech_pcm, words
from tests.test_stt_service import webm_opus

RATE = 16000
SCRIPT = "the quick brown fox jumps over the lazy dog"
SPOKEN = "Please book a table for two at seven tonight."


def tone_pcm(seconds: float, rate: int = RATE, seed: int = 7) -> bytes:
    """Deterministic non-silent PCM: a tone plus noise (content is irrelevant to the stand-in)."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, len(t))
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * 220 * t) + noise)


async def chunked(pcm: bytes, chunk_bytes: int = 3200, realtime: bool = False) -> AsyncIterator[bytes]:
    for i in range(0, len(pcm), chunk_bytes):
        yield pcm[i : i + chunk_bytes]
        # Real time where a test needs the stand-in to answer while audio is still arriving.
        await asyncio.sleep(chunk_bytes / 2 / RATE if realtime else 0)


def stream_config(**kw: object) -> stt_pb2.RecognitionConfig:
    return stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1), **kw
    )


def transcribe_settings(**kw: object) -> TranscribeSettings:
    return TranscribeSettings(**kw)  # type: ignore[arg-type]


def transcribe_backend(settings: TranscribeSettings) -> TranscribeBackend:
    return TranscribeBackend(STTSettings(backend="transcribe"), settings)


@pytest.fixture
def streaming_env(monkeypatch: pytest.MonkeyPatch, transcribe_standin: TranscribeStandIn) -> dict[str, str]:
    env = isolated_aws_env(
        AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING=transcribe_standin.url,
        AWS_CA_BUNDLE=str(transcribe_standin.ca_bundle),
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "ECHO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def speech_models() -> None:
    require_model("whisper-tiny.en")
    require_model("piper-joe")


async def started(settings: TranscribeSettings) -> TranscribeBackend:
    backend = transcribe_backend(settings)
    await backend.start()
    return backend


async def with_whisper(transcribe: TranscribeBackend) -> FallbackSTT:
    """ECHO_STT_SERVICE=transcribe,whisper: the fallback chain over Transcribe and local Whisper."""
    whisper = WhisperBackend(STTSettings(), WhisperSettings(model="whisper-tiny.en"))
    # A long cooldown: a slow decode on a busy machine must not end it while a test looks.
    chain = FallbackSTT([transcribe, whisper], FallbackSettings(600.0, 600.0))
    await chain.start()
    return chain


async def started_with_whisper(settings: TranscribeSettings) -> FallbackSTT:
    return await with_whisper(transcribe_backend(settings))


async def collect(
    backend: STTBackend, config: stt_pb2.RecognitionConfig, pcm: bytes, realtime: bool = False
) -> list[stt_pb2.TranscriptEvent]:
    return [event async for event in backend.stream(config, chunked(pcm, realtime=realtime))]


@asynccontextmanager
async def serving(backend: STTBackend) -> AsyncIterator[stt_pb2_grpc.SpeechToTextStub]:
    """The real STT servicer around ``backend`` on a gRPC server on 127.0.0.1: what a caller sees."""
    server = grpc.aio.server()
    stt_pb2_grpc.add_SpeechToTextServicer_to_server(SpeechToTextServicer(backend), server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield stt_pb2_grpc.SpeechToTextStub(channel)
    finally:
        await server.stop(None)
        await backend.close()


async def grpc_stream(
    stub: stt_pb2_grpc.SpeechToTextStub,
    config: stt_pb2.RecognitionConfig,
    pcm: bytes,
    realtime: bool = False,
) -> list[stt_pb2.TranscriptEvent]:
    """One utterance as a caller streams it, read while it is written.

    Tests of a refused stream send the config alone (``pcm=b""``): grpcio's asyncio client replaces the
    server's status with INTERNAL "Internal error from Core" when a write is in flight as the server
    ends the call (grpc/grpc#36066), a client-side race that says nothing about the service."""
    call = stub.StreamingRecognize(timeout=60)

    async def write() -> None:
        await call.write(stt_pb2.StreamingRecognizeRequest(config=config))
        async for chunk in chunked(pcm, realtime=realtime):
            await call.write(stt_pb2.StreamingRecognizeRequest(audio=chunk))
        await call.done_writing()

    writer = asyncio.create_task(write())
    try:
        events = [event async for event in call]
    finally:
        # A write after the server ended the call fails with that same status; the read reported it.
        await asyncio.gather(writer, return_exceptions=True)
    await writer
    return events


# --- streaming: partials, finals and what reaches the service ------------------------------------------


async def test_streaming_partials_and_final_through_real_client(streaming_env, transcribe_standin):
    transcribe_standin.script(transcript=SCRIPT)
    backend = await started(transcribe_settings())
    pcm = tone_pcm(1.6)
    events = await collect(backend, stream_config(interim_results=True), pcm)

    kinds = [e.kind for e in events]
    assert kinds[-1] == stt_pb2.TranscriptEvent.FINAL and kinds.count(stt_pb2.TranscriptEvent.FINAL) == 1
    partials = [e for e in events if e.kind == stt_pb2.TranscriptEvent.PARTIAL]
    assert len(partials) >= 3, [e.text for e in events]
    # Partials grow word by word, as the stand-in reveals them.
    assert partials[0].text == "the" and partials[1].text == "the quick"
    final = events[-1]
    assert final.text == SCRIPT
    assert final.language == "en-US"
    assert [w.text for w in final.words] == SCRIPT.split()
    assert final.audio_s == pytest.approx(1.6, abs=0.01)
    assert final.end_s == pytest.approx(1.6, abs=0.01)

    (record,) = transcribe_standin.records()
    assert record["http_version"] == "2"
    assert "Credential=AKIAECHOTESTKEY00000/" in record["authorization"]
    assert "/us-east-1/transcribe/aws4_request" in record["authorization"]
    assert record["headers"]["x-amzn-transcribe-language-code"] == "en-US"
    assert record["headers"]["x-amzn-transcribe-sample-rate"] == "16000"
    assert record["headers"]["x-amzn-transcribe-media-encoding"] == "pcm"
    # Every byte we were given arrived, in order, in signed frames each with its own signature.
    assert record["audio_bytes"] == len(pcm)
    assert record["audio_sha256"] == hashlib.sha256(pcm).hexdigest()
    assert record["has_date"] is True
    assert record["distinct_signatures"] == record["frames"] > 1


@pytest.mark.parametrize(
    ("configured", "requested"),
    [("auto", ""), ("auto", "auto"), ("en-US", "auto")],
    ids=["configured-auto", "both-auto", "requested-auto"],
)
async def test_automatic_language_identification(streaming_env, transcribe_standin, configured, requested):
    transcribe_standin.script(transcript="bonjour tout le monde", identified_language="fr-FR")
    backend = await started(
        transcribe_settings(
            transcribe_language_code=configured, transcribe_language_options="en-US, fr-FR,es"
        )
    )
    events = await collect(backend, stream_config(language=requested), tone_pcm(0.8))

    assert events[-1].text == "bonjour tout le monde"
    assert events[-1].language == "fr-FR"  # the language the service identified
    (record,) = transcribe_standin.records()
    headers = record["headers"]
    assert headers["x-amzn-transcribe-identify-language"].lower() == "true"
    assert headers["x-amzn-transcribe-language-options"] == "en-US,fr-FR,es-US"
    assert "x-amzn-transcribe-language-code" not in headers and "error" not in record


async def test_language_identification_needs_two_options(streaming_env, transcribe_standin):
    transcribe_standin.script()
    backend = await started(
        transcribe_settings(transcribe_language_code="auto", transcribe_language_options="en-US")
    )
    with pytest.raises(InvalidArgument, match="two or more language options"):
        await collect(backend, stream_config(), tone_pcm(0.3))
    assert transcribe_standin.records() == []  # refused before anything was sent


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        ("", "en-GB"),
        ("en", "en-GB"),
        ("EN", "en-GB"),
        ("en-AU", "en-AU"),
        ("fr", "fr-FR"),
        ("es-MX", "es-MX"),
    ],
)
async def test_request_language_and_configured_language_code(
    streaming_env, transcribe_standin, requested, sent
):
    # An empty request language means config.yaml's language_code; a bare "en" takes its region.
    transcribe_standin.script()
    backend = await started(transcribe_settings(transcribe_language_code="en-GB"))
    events = await collect(backend, stream_config(language=requested), tone_pcm(0.4))
    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-language-code"] == sent
    assert events[-1].language == sent


async def test_speaker_labels_per_word_when_diarization_is_enabled(streaming_env, transcribe_standin):
    dialogue = "Hello there. Hi, how are you?"
    transcribe_standin.script(transcript=dialogue)
    backend = await started(transcribe_settings(transcribe_enable_speaker_diarization=True))
    events = await collect(backend, stream_config(interim_results=True), tone_pcm(1.2))
    final = events[-1]
    assert final.text == dialogue
    # Punctuation items are not words; each word keeps the speaker the service gave it.
    assert [(w.text, w.speaker) for w in final.words] == [
        ("Hello", "0"),
        ("there", "0"),
        ("Hi", "1"),
        ("how", "1"),
        ("are", "1"),
        ("you", "1"),
    ]
    assert all(w.end_s > w.start_s for w in final.words)
    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-show-speaker-label"].lower() == "true"

    # Recognize groups the words into one segment per speaker turn.
    async with serving(backend) as stub:
        transcribe_standin.script(transcript=dialogue)
        reply = await stub.Recognize(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.WAV)),
                audio=wav_bytes(tone_pcm(1.2), RATE),
            ),
            timeout=30,
        )
    assert reply.text == dialogue
    assert [(s.text, s.speaker) for s in reply.segments] == [("Hello there", "0"), ("Hi how are you", "1")]
    assert reply.duration_s == pytest.approx(1.2, abs=0.01)


async def test_speaker_labels_per_request_and_off_by_default(streaming_env, transcribe_standin):
    backend = await started(transcribe_settings())
    transcribe_standin.script(transcript="One. Two.")
    off = await collect(backend, stream_config(), tone_pcm(0.4))
    assert "x-amzn-transcribe-show-speaker-label" not in transcribe_standin.records()[0]["headers"]
    assert {w.speaker for w in off[-1].words} == {""}
    transcribe_standin.script(transcript="One. Two.")
    on = await collect(backend, stream_config(enable_speaker_labels=True), tone_pcm(0.4))
    assert (
        transcribe_standin.records()[0]["headers"]["x-amzn-transcribe-show-speaker-label"].lower() == "true"
    )
    assert [w.speaker for w in on[-1].words] == ["0", "1"]


@pytest.mark.parametrize("where", ["settings", "request"])
async def test_custom_vocabulary_by_name(streaming_env, transcribe_standin, where):
    transcribe_standin.script(transcript="call echo voice", vocabularies=["echo-terms"])
    settings = transcribe_settings(transcribe_vocabulary_name="echo-terms" if where == "settings" else "")
    backend = await started(settings)
    config = stream_config(vocabulary_name="echo-terms" if where == "request" else "")
    events = await collect(backend, config, tone_pcm(0.5))
    assert events[-1].text == "call echo voice"
    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-vocabulary-name"] == "echo-terms"


@pytest.mark.parametrize(
    ("method", "text", "flagged"),
    [
        ("mask", "well *** it works", "***"),
        ("remove", "well it works", None),
        ("tag", "well darn it works", "darn"),
    ],
)
async def test_vocabulary_filter(streaming_env, transcribe_standin, method, text, flagged):
    transcribe_standin.script(
        transcript="well darn it works", filtered_words=["darn"], vocabulary_filters=["profanity"]
    )
    backend = await started(
        transcribe_settings(
            transcribe_vocabulary_filter_name="profanity", transcribe_vocabulary_filter_method=method
        )
    )
    events = await collect(backend, stream_config(interim_results=True), tone_pcm(1.0))
    final = events[-1]
    assert final.text == text
    assert (flagged in [w.text for w in final.words]) if flagged else len(final.words) == 3
    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-vocabulary-filter-name"] == "profanity"
    assert record["headers"]["x-amzn-transcribe-vocabulary-filter-method"] == method


async def test_vocabulary_filter_per_request_overrides_settings(streaming_env, transcribe_standin):
    transcribe_standin.script(transcript="oh heck", filtered_words=["heck"])
    backend = await started(
        transcribe_settings(
            transcribe_vocabulary_filter_name="mild", transcribe_vocabulary_filter_method="mask"
        )
    )
    config = stream_config(vocabulary_filter_name="strict", vocabulary_filter_method="remove")
    events = await collect(backend, config, tone_pcm(0.4))
    assert events[-1].text == "oh"
    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-vocabulary-filter-name"] == "strict"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (stream_config(vocabulary_filter_name="profanity", vocabulary_filter_method="blur"), "blur"),
        (stream_config(vocabulary_filter_method="mask"), "needs a vocabulary_filter_name"),
        (stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.MP3)), "pcm_s16le"),
        (
            stt_pb2.RecognitionConfig(
                audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=12345)
            ),
            "sample rate",
        ),
    ],
    ids=["filter-method", "method-without-filter", "encoding", "rate"],
)
async def test_bad_stream_requests_are_refused_before_sending(
    streaming_env, transcribe_standin, config, message
):
    transcribe_standin.script()
    backend = await started(transcribe_settings())
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, config, b"")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert transcribe_standin.records() == []


async def test_second_config_mid_stream_is_an_error_not_a_final(streaming_env, transcribe_standin):
    transcribe_standin.script()
    backend = await started(transcribe_settings())

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stream_config())
        yield stt_pb2.StreamingRecognizeRequest(audio=tone_pcm(0.2))
        yield stt_pb2.StreamingRecognizeRequest(config=stream_config())

    async with serving(backend) as stub:
        call = stub.StreamingRecognize(requests(), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for event in call:
                assert event.kind != stt_pb2.TranscriptEvent.FINAL
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config may only be sent once" in err.value.details()


# --- errors a caller sees, with no fallback configured ---------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code", "message"),
    [
        (
            "invalid_token",
            grpc.StatusCode.UNAUTHENTICATED,
            "security token included in the request is invalid",
        ),
        ("access_denied", grpc.StatusCode.PERMISSION_DENIED, "not authorized to perform"),
        ("throttle", grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceededException"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "ServiceUnavailableException"),
        ("bad_request", grpc.StatusCode.INVALID_ARGUMENT, "BadRequestException"),
    ],
)
async def test_service_errors_reach_the_caller_as_specific_statuses(
    streaming_env, transcribe_standin, mode, code, message
):
    transcribe_standin.script(mode=mode)
    backend = await started(transcribe_settings())
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, stream_config(interim_results=True), b"")
    assert err.value.code() == code, err.value.details()
    assert "Transcribe StartStreamTranscription" in err.value.details()
    assert message in err.value.details()
    (record,) = transcribe_standin.records()
    assert record["error"]


async def test_unknown_vocabulary_names_the_vocabulary(streaming_env, transcribe_standin):
    transcribe_standin.script(vocabularies=["echo-terms"])
    backend = await started(transcribe_settings())
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, stream_config(vocabulary_name="echo-typo"), b"")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'echo-typo' couldn't be found" in err.value.details()


async def test_missing_credentials_are_unauthenticated(streaming_env, transcribe_standin, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    transcribe_standin.script()
    backend = await started(transcribe_settings())
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, stream_config(), b"")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no AWS credentials found" in err.value.details()
    assert transcribe_standin.records() == []


async def test_midstream_throttle_without_fallback(streaming_env, transcribe_standin):
    transcribe_standin.script(mode="midstream_error", transcript=SCRIPT)
    backend = await started(transcribe_settings())
    seen: list[stt_pb2.TranscriptEvent] = []
    with pytest.raises(ResourceExhausted, match="Stream throttled mid-way"):
        async for event in backend.stream(stream_config(interim_results=True), chunked(tone_pcm(2.0))):
            seen.append(event)
    assert [e.text for e in seen] == ["the"]  # the partial before the exception frame, then the error


# --- fallback to local Whisper, with real speech ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["throttle", "midstream_error", "unavailable"])
async def test_fallback_to_whisper_transcribes_the_real_speech(
    streaming_env, transcribe_standin, speech_models, mode
):
    transcribe_standin.script(mode=mode, transcript="scripted words that must not appear")
    backend = await started_with_whisper(transcribe_settings())
    pcm = speech_pcm(SPOKEN, RATE, tail_s=0.3)
    # Real time when Transcribe breaks mid-way, so it has only heard part of the utterance by then.
    realtime = mode == "midstream_error"
    async with serving(backend) as stub:
        config = stream_config(interim_results=True, language="auto")
        events = await grpc_stream(stub, config, pcm, realtime=realtime)
        # Transcribe is down for its cooldown: the next utterance goes straight to Whisper.
        assert backend.name == "whisper"
        again = await grpc_stream(stub, stream_config(), pcm)
    assert {"book", "table", "tonight"} <= words(again[-1].text), again[-1].text

    final = events[-1]
    assert final.kind == stt_pb2.TranscriptEvent.FINAL
    assert {"please", "book", "table", "seven", "tonight"} <= words(final.text), final.text
    assert "scripted" not in final.text
    # Nothing said before Transcribe failed is lost: Whisper heard the whole utterance.
    assert final.audio_s == pytest.approx(len(pcm) / 2 / RATE, abs=0.05)
    (record,) = transcribe_standin.records()  # one call: the second utterance skipped Transcribe
    assert record["error"]
    if mode == "midstream_error":
        assert 0 < record["audio_bytes"] < len(pcm)  # Transcribe had part of it when the stream broke


async def test_the_fallback_keeps_the_language_transcribe_was_asked_for(
    streaming_env, transcribe_standin, speech_models
):
    # fr-FR configured for Transcribe reaches Whisper as fr-FR; an English-only Whisper cannot take
    # that over, and the caller hears of the outage (RESOURCE_EXHAUSTED), with the reason.
    transcribe_standin.script(mode="throttle")
    backend = await started_with_whisper(transcribe_settings(transcribe_language_code="fr-FR"))
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, stream_config(), b"")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "LimitExceededException" in err.value.details()
    assert "whisper cannot take over" in err.value.details()
    assert "English-only; language 'fr-FR'" in err.value.details()


async def test_fallback_when_transcribe_is_unreachable(streaming_env, speech_models, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING", f"https://localhost:{free_port()}")
    backend = await started_with_whisper(transcribe_settings())
    pcm = speech_pcm(SPOKEN, RATE, tail_s=0.3)
    events = await collect(backend, stream_config(), pcm)
    assert [e.kind for e in events] == [stt_pb2.TranscriptEvent.FINAL]
    assert {"book", "table", "tonight"} <= words(events[-1].text), events[-1].text
    await backend.close()


async def test_fallback_does_not_hide_access_denied(streaming_env, transcribe_standin, speech_models):
    # Credentials and permissions are for an operator to fix: a fallback would only hide them.
    transcribe_standin.script(mode="access_denied")
    backend = await started_with_whisper(transcribe_settings())
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await grpc_stream(stub, stream_config(), b"")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- WebM/Opus from browsers ----------------------------------------------------------------------------


async def test_webm_opus_reaches_transcribe_as_16k_pcm_of_the_same_speech(
    streaming_env, transcribe_standin, speech_models, tmp_path: Path
):
    received = tmp_path / "received.pcm"
    transcribe_standin.script(transcript="a table for two", audio_path=str(received))
    pcm48 = speech_pcm(SPOKEN, 48000, tail_s=0.2)
    data = webm_opus(pcm48)
    assert data[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (Matroska/WebM) file
    backend = await started(transcribe_settings())
    async with serving(backend) as stub:
        reply = await stub.Recognize(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.WEBM_OPUS)),
                audio=data,
            ),
            timeout=60,
        )
    assert reply.text == "a table for two"
    seconds = len(pcm48) / 2 / 48000
    assert reply.duration_s == pytest.approx(seconds, abs=0.05)

    (record,) = transcribe_standin.records()
    assert record["headers"]["x-amzn-transcribe-sample-rate"] == "16000"
    pcm = received.read_bytes()
    assert len(pcm) == record["audio_bytes"] and len(pcm) / 2 / RATE == pytest.approx(seconds, abs=0.05)
    assert np.abs(pcm16_to_float(pcm)).max() > 0.1  # speech, not silence
    # What Transcribe received is the speech that was sent: Whisper hears the words in it.
    whisper = WhisperBackend(STTSettings(), WhisperSettings(model="whisper-tiny.en"))
    await whisper.start()
    heard = await whisper.recognize(stt_pb2.RecognizeRequest(config=stream_config(language="en"), audio=pcm))
    assert {"book", "table", "seven", "tonight"} <= words(heard.text), heard.text


# --- config.yaml's aws.transcribe block -------------------------------------------------------------------

CONFIG_YAML = """\
aws:
  transcribe:
    language_code: en-GB
    media_encoding: pcm
    sample_rate: 8000
    enable_speaker_diarization: true
    vocabulary_name: echo-terms
"""


def test_config_yaml_transcribe_block_loads_into_settings(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_YAML)
    monkeypatch.setenv("ECHO_CONFIG", str(path))
    monkeypatch.delenv("ECHO_STT_TRANSCRIBE_LANGUAGE_CODE", raising=False)
    settings = load_transcribe_settings()
    assert settings.transcribe_language_code == "en-GB"
    assert settings.transcribe_media_encoding == "pcm"
    assert settings.transcribe_sample_rate == 8000
    assert settings.transcribe_enable_speaker_diarization is True
    assert settings.transcribe_vocabulary_name == "echo-terms"
    # The environment wins over the file.
    monkeypatch.setenv("ECHO_STT_TRANSCRIBE_LANGUAGE_CODE", "en-AU")
    assert load_transcribe_settings().transcribe_language_code == "en-AU"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("aws:\n  transcribe:\n    language: en-GB\n", "unknown keys ['language']"),
        ("aws:\n  transcribe:\n    sample_rate: fast\n", "expected a number"),
        ("aws:\n  transcribe:\n    enable_speaker_diarization: maybe\n", "expected true/false"),
        ("aws:\n  transcribe: [en-GB]\n", "must be a mapping"),
    ],
)
def test_bad_config_yaml_is_a_clear_error(tmp_path, monkeypatch, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    monkeypatch.setenv("ECHO_CONFIG", str(path))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_transcribe_settings()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"transcribe_media_encoding": "flac"}, "set it to 'pcm'"),
        ({"transcribe_sample_rate": 96000}, "8000-48000"),
        ({"transcribe_vocabulary_filter_method": "blur"}, "vocabulary_filter_method"),
    ],
)
def test_unusable_transcribe_settings_fail_at_startup(setting, message):
    with pytest.raises(ConfigError, match=message):
        transcribe_backend(transcribe_settings(**setting))


async def test_config_yaml_reaches_the_request_through_the_service_process(
    streaming_env, transcribe_standin, tmp_path, log_dir
):
    # The real `python -m services.stt` reading config.yaml, streaming 16 kHz: the stand-in sees the
    # block's language, 8 kHz PCM (resampled by Echo), speaker labels and the vocabulary.
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_YAML)
    received = tmp_path / "received.pcm"
    transcribe_standin.script(transcript="Good morning. Morning!", audio_path=str(received))
    proc, address = start_grpc_service(
        "stt", {**streaming_env, "ECHO_STT_SERVICE": "transcribe", "ECHO_CONFIG": str(path)}, log_dir
    )
    try:
        pcm = tone_pcm(1.0)
        async with grpc_channel(address) as channel:
            events = await grpc_stream(
                stt_pb2_grpc.SpeechToTextStub(channel), stream_config(language=""), pcm
            )
    finally:
        assert proc.stop() == 0, proc.log_tail()
    final = events[-1]
    assert final.language == "en-GB"
    assert [w.speaker for w in final.words] == ["0", "0", "1"]
    (record,) = transcribe_standin.records()
    headers = record["headers"]
    assert headers["x-amzn-transcribe-language-code"] == "en-GB"
    assert headers["x-amzn-transcribe-sample-rate"] == "8000"
    assert headers["x-amzn-transcribe-media-encoding"] == "pcm"
    assert headers["x-amzn-transcribe-show-speaker-label"].lower() == "true"
    assert headers["x-amzn-transcribe-vocabulary-name"] == "echo-terms"
    # Resampled, not relabelled: half the samples, the same tone.
    sent = pcm16_to_float(received.read_bytes())
    assert len(sent) == pytest.approx(len(pcm) / 4, abs=8)
    spectrum = np.abs(np.fft.rfft(sent))
    assert np.argmax(spectrum) * 8000 / len(sent) == pytest.approx(220, abs=5)
    assert final.audio_s == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    "spelling",
    [
        {"ECHO_STT_SERVICE": "transcribe,whisper"},
        {"ECHO_STT_SERVICE": "transcribe", "ECHO_STT_FALLBACK": "whisper"},
    ],
    ids=["list", "older-fallback-setting"],
)
async def test_the_service_process_falls_back_and_says_who_serves(
    streaming_env, transcribe_standin, speech_models, log_dir, spelling
):
    # `python -m services.stt` with the fallback list (or its older spelling): a throttled Transcribe hands
    # the utterance to Whisper, GetCapabilities then names Whisper with its stable partials, and health
    # stays SERVING because Whisper is up.
    transcribe_standin.script(mode="throttle")
    cooldown = {"ECHO_STT_FALLBACK_COOLDOWN_S": "600", "ECHO_STT_FALLBACK_MAX_COOLDOWN_S": "600"}
    env = {**streaming_env, **spelling, **cooldown, "ECHO_STT_MODEL": "whisper-tiny.en"}
    proc, address = start_grpc_service("stt", env, log_dir)
    try:
        async with grpc_channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextStub(channel)
            before = await stub.GetCapabilities(audio_pb2.CapabilitiesRequest(), timeout=10)
            pcm = speech_pcm(SPOKEN, RATE, tail_s=0.3)
            events = await grpc_stream(stub, stream_config(), pcm)
            after = await stub.GetCapabilities(audio_pb2.CapabilitiesRequest(), timeout=10)
            health_reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="echo.v1.SpeechToText"), timeout=10
            )
    finally:
        assert proc.stop() == 0, proc.log_tail()
    assert {"book", "table", "tonight"} <= words(events[-1].text), events[-1].text
    assert before == audio_pb2.Capabilities(
        backend="transcribe", streaming=True, word_timings=True, backends=["transcribe", "whisper"]
    )
    assert after == audio_pb2.Capabilities(
        backend="whisper", streaming=True, stable_partials=True, backends=["transcribe", "whisper"]
    )
    assert health_reply.status == health_pb2.HealthCheckResponse.SERVING
