"""The STT service with real faster-whisper, as a real process."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest

from echo.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from services.common.audio import wav_bytes
from tests.conftest import require_model
from tests.servicetools import assert_credential_required, grpc_channel, start_grpc_service
from tests.speech import speech_pcm, words

PHRASE = "The weather in Paris is sunny today."


def webm_opus(pcm: bytes, rate: int = 48000) -> bytes:
    """A real WebM/Opus file, as a browser's MediaRecorder makes, encoded with PyAV."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2")[None, :], format="s16", layout="mono")
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stt_address(log_dir):
    require_model("whisper-tiny.en")
    proc, address = start_grpc_service("stt", {"ECHO_STT_MODEL": "whisper-tiny.en"}, log_dir)
    yield address
    assert proc.stop() == 0, proc.log_tail()


def _config(
    rate: int = 16000, interim: bool = False, encoding: int = audio_pb2.PCM_S16LE, language: str = "en"
):
    return stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=encoding, sample_rate=rate, channels=1),
        language=language,
        interim_results=interim,
    )


async def _stream(address: str, config, pcm: bytes, chunk: int = 3200, realtime: bool = False):
    bytes_per_s = 2 * (config.audio.sample_rate or 16000)

    async def requests():
        yield stt_pb2.StreamingRecognizeRequest(config=config)
        for i in range(0, len(pcm), chunk):
            yield stt_pb2.StreamingRecognizeRequest(audio=pcm[i : i + chunk])
            if realtime:  # as a microphone would: partials only exist while audio is still coming
                await asyncio.sleep(chunk / bytes_per_s)

    async with grpc_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        return [event async for event in stub.StreamingRecognize(requests(), timeout=120)]


async def test_streaming_transcribes_speech_with_partials_before_final(stt_address):
    # Trailing quiet: on a loaded CI machine a partial decode may still be running when the
    # speech ends, and partials only exist while audio is still arriving.
    pcm = speech_pcm(PHRASE, 16000, tail_s=1.5)
    events = await _stream(stt_address, _config(interim=True), pcm, realtime=True)
    kinds = [e.kind for e in events]
    assert kinds[-1] == stt_pb2.TranscriptEvent.FINAL and kinds.count(stt_pb2.TranscriptEvent.FINAL) == 1
    assert stt_pb2.TranscriptEvent.PARTIAL in kinds[:-1]
    final = events[-1]
    assert {"weather", "paris", "sunny"} <= words(final.text), final.text
    assert final.audio_s == pytest.approx(len(pcm) / 32000, abs=0.05)


async def test_streaming_resamples_other_rates(stt_address):
    pcm = speech_pcm(PHRASE, 48000)
    events = await _stream(stt_address, _config(rate=48000), pcm, chunk=9600)
    assert {"weather", "paris"} <= words(events[-1].text), events[-1].text


async def test_unary_recognize_reads_a_wav_file(stt_address):
    data = wav_bytes(speech_pcm("Please remind me to buy milk.", 22050), 22050)
    async with grpc_channel(stt_address) as channel:
        reply = await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(
            stt_pb2.RecognizeRequest(config=_config(encoding=audio_pb2.WAV, rate=0), audio=data), timeout=60
        )
    assert {"remind", "buy", "milk"} <= words(reply.text), reply.text
    assert reply.segments and reply.duration_s > 1.0


async def test_unary_recognize_decodes_webm_opus_from_a_browser(stt_address):
    data = webm_opus(speech_pcm("Please remind me to buy milk.", 48000))
    assert data[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a Matroska/WebM container
    async with grpc_channel(stt_address) as channel:
        reply = await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(
            stt_pb2.RecognizeRequest(config=_config(encoding=audio_pb2.WEBM_OPUS, rate=0), audio=data),
            timeout=60,
        )
    assert {"remind", "buy", "milk"} <= words(reply.text), reply.text


async def test_corrupt_webm_is_invalid_argument(stt_address):
    data = webm_opus(speech_pcm("Please remind me to buy milk.", 48000))
    async with grpc_channel(stt_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(
                stt_pb2.RecognizeRequest(
                    config=_config(encoding=audio_pb2.WEBM_OPUS, rate=0), audio=data[:40] + b"\0" * 200
                ),
                timeout=30,
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode webm audio" in err.value.details()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config(rate=12345), "sample rate"),
        (_config(encoding=audio_pb2.MP3), "pcm_s16le"),
        (_config(language="de"), "English-only"),
    ],
)
async def test_bad_stream_config_is_invalid_argument(stt_address, config, message):
    # Config alone: audio written after the server has already refused would race its answer.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stream(stt_address, config, b"")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


async def test_audio_before_config_is_invalid_argument(stt_address):
    async def requests():
        yield stt_pb2.StreamingRecognizeRequest(audio=b"\0" * 320)

    async with grpc_channel(stt_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stt_pb2_grpc.SpeechToTextStub(channel).StreamingRecognize(requests(), timeout=30):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_garbage_file_is_invalid_argument(stt_address):
    async with grpc_channel(stt_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(
                stt_pb2.RecognizeRequest(config=_config(encoding=audio_pb2.WAV), audio=b"RIFFnonsense"),
                timeout=30,
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_final_reuses_the_decode_made_when_speech_went_quiet(stt_address):
    # Real time, with trailing silence: the full-beam decode starts while the caller is still
    # waiting out the silence, and the final is that decode (no decode time after the stream ends).
    pcm = speech_pcm(PHRASE, 16000, tail_s=1.5)
    events = await _stream(stt_address, _config(interim=True), pcm, realtime=True)
    final = events[-1]
    assert {"weather", "paris", "sunny"} <= words(final.text), final.text
    assert final.decode_ms == 0.0
    # Speech up to the last byte: nothing to reuse, the final is decoded after the stream ends.
    samples = np.frombuffer(speech_pcm(PHRASE, 16000), dtype="<i2")
    cut = samples[: int(np.nonzero(np.abs(samples) > 3000)[0][-1])].tobytes()
    events = await _stream(stt_address, _config(interim=True), cut, realtime=True)
    assert events[-1].decode_ms > 0 and {"weather", "paris"} <= words(events[-1].text)


async def test_calls_need_the_service_credential(stt_address):
    """Refused without the credential or with a wrong one (both call kinds), served with it."""

    async def streaming(channel: grpc.aio.Channel) -> list[stt_pb2.TranscriptEvent]:
        async def requests():
            yield stt_pb2.StreamingRecognizeRequest(config=_config())
            yield stt_pb2.StreamingRecognizeRequest(audio=bytes(3200))

        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        return [event async for event in stub.StreamingRecognize(requests(), timeout=60)]

    service = "echo.v1.SpeechToText"
    await assert_credential_required(
        stt_address, [f"/{service}/StreamingRecognize", f"/{service}/Recognize"], streaming
    )
