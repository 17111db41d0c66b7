"""The TTS service with a real Piper voice, as a real process; its audio is checked by real Whisper."""

from __future__ import annotations

import asyncio
import re

import grpc
import numpy as np
import pytest

from echo.v1 import audio_pb2, tts_pb2, tts_pb2_grpc
from services.common.audio import pcm16_to_float, rms_dbfs
from tests.conftest import require_model
from tests.servicetools import assert_credential_required, grpc_channel, start_grpc_service
from tests.speech import words


@pytest.fixture(scope="module")
def tts_service(log_dir):
    require_model("piper-joe")
    proc, address = start_grpc_service("tts", {"ECHO_TTS_VOICE": "piper-joe"}, log_dir)
    yield proc, address
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="module")
def tts_address(tts_service):
    return tts_service[1]


async def _synthesize(address: str, request: tts_pb2.SynthesizeRequest) -> list[tts_pb2.SynthesizeResponse]:
    async with grpc_channel(address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        return [r async for r in stub.Synthesize(request, timeout=120)]


async def test_synthesize_streams_one_chunk_per_sentence(tts_address):
    text = "Hello there. The second sentence is longer than the first one. Goodbye!"
    replies = await _synthesize(tts_address, tts_pb2.SynthesizeRequest(text=text))
    assert replies[0].format.encoding == audio_pb2.PCM_S16LE and replies[0].format.sample_rate == 22050
    audio = [r for r in replies if r.audio]
    assert [r.sentence_index for r in audio] == [0, 1, 2]
    assert replies[-1].usage.characters == len(text)
    pcm = b"".join(r.audio for r in audio)
    seconds = len(pcm) / 2 / 22050
    assert 2.0 < seconds < 12.0
    assert rms_dbfs(pcm) > -35, "speech should not be near-silent"
    # The middle sentence is the longest, so its chunk must be too: chunks follow the sentences.
    assert len(audio[1].audio) > len(audio[0].audio) and len(audio[1].audio) > len(audio[2].audio)


async def test_resamples_to_the_requested_rate(tts_address):
    request = tts_pb2.SynthesizeRequest(
        text="Testing sixteen kilohertz.", format=audio_pb2.AudioFormat(sample_rate=16000)
    )
    replies = await _synthesize(tts_address, request)
    assert replies[0].format.sample_rate == 16000
    samples = pcm16_to_float(b"".join(r.audio for r in replies))
    assert 0.8 < len(samples) / 16000 < 5 and float(np.abs(samples).max()) > 0.1


async def test_speech_is_intelligible_to_whisper(tts_address):
    from faster_whisper import WhisperModel

    from services.common import models

    text = "Echo can speak clearly to you."
    replies = await _synthesize(
        tts_address, tts_pb2.SynthesizeRequest(text=text, format=audio_pb2.AudioFormat(sample_rate=16000))
    )
    samples = pcm16_to_float(b"".join(r.audio for r in replies))
    model = WhisperModel(str(models.resolve("whisper-tiny.en")), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(samples, language="en", beam_size=5)
    heard = " ".join(s.text for s in segments)
    assert {"echo", "speak", "clearly"} <= words(heard), heard


async def test_list_voices_names_the_default(tts_address):
    async with grpc_channel(tts_address) as channel:
        reply = await tts_pb2_grpc.TextToSpeechStub(channel).ListVoices(
            tts_pb2.ListVoicesRequest(), timeout=10
        )
    assert [(v.name, v.is_default, v.sample_rate) for v in reply.voices] == [
        ("en_US-joe-medium", True, 22050)
    ]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            tts_pb2.SynthesizeRequest(text="Hi.", voice="nobody"),
            grpc.StatusCode.NOT_FOUND,
            "unknown voice 'nobody'",
        ),
        (tts_pb2.SynthesizeRequest(text="   "), grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
        (tts_pb2.SynthesizeRequest(text="x" * 5000), grpc.StatusCode.INVALID_ARGUMENT, "limit is 4000"),
        (
            tts_pb2.SynthesizeRequest(text="<speak>Hi</speak>", ssml=True),
            grpc.StatusCode.INVALID_ARGUMENT,
            "SSML",
        ),
        (
            tts_pb2.SynthesizeRequest(text="Hi.", format=audio_pb2.AudioFormat(encoding=audio_pb2.MP3)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pcm_s16le",
        ),
    ],
)
async def test_bad_requests_get_specific_errors(tts_address, request_, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _synthesize(tts_address, request_)
    assert err.value.code() == code
    assert message in err.value.details()


async def test_cancelling_a_synthesis_stops_it(tts_service):
    proc, address = tts_service
    text = " ".join(f"This is sentence number {i} of a long answer." for i in range(40))
    async with grpc_channel(address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=120)
        received = 0
        async for response in call:
            received += bool(response.audio)
            if received == 2:
                call.cancel()
                break
        # The service is free again at once: the cancelled work did not keep running.
        replies = await _synthesize(address, tts_pb2.SynthesizeRequest(text="Still here."))
        assert any(r.audio for r in replies)
    await asyncio.sleep(0.3)
    lines = [
        line
        for line in proc.log_path.read_text().splitlines()
        if "Synthesize cancelled by the client" in line
    ]
    assert lines, proc.log_tail()
    sent = int(re.search(r"(\d+) messages", lines[-1]).group(1))
    assert sent < 10, lines[-1]  # far fewer than the 40 sentences (+ format + usage) it was asked for


async def test_reflection_lists_and_describes_the_services(tts_address):
    """grpcurl-style discovery: the server lists its services over reflection and serves the
    descriptor of the TTS contract, methods included."""
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc_channel(tts_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="echo.v1.TextToSpeech"),
        ]
        replies = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=30)]
    listed = {s.name for s in replies[0].list_services_response.service}
    assert {
        "echo.v1.TextToSpeech",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= listed
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in replies[1].file_descriptor_response.file_descriptor_proto
    ]
    service = next(s for f in files for s in f.service if s.name == "TextToSpeech")
    assert {m.name for m in service.method} >= {"Synthesize", "ListVoices"}


async def test_calls_need_the_service_credential(tts_address):
    async def synthesize(channel: grpc.aio.Channel) -> list[tts_pb2.SynthesizeResponse]:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        return [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hi."), timeout=60)]

    service = "echo.v1.TextToSpeech"
    await assert_credential_required(
        tts_address, [f"/{service}/Synthesize", f"/{service}/ListVoices"], synthesize
    )
