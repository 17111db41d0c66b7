"""Amazon Transcribe backend against stand-ins: the real amazon-transcribe client over HTTP/2 + TLS to
a local streaming server, and moto (S3 + Transcribe control plane) for batch jobs."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from echo.v1 import audio_pb2, stt_pb2
from services.common.audio import float_to_pcm16
from services.stt.backends.transcribe import TranscribeBackend
from services.stt.config import STTSettings
from tests.aws.conftest import TranscribeStandIn, isolated_aws_env

RATE = 16000
SCRIPT = "the quick brown fox jumps over the lazy dog"


def tone_pcm(seconds: float, rate: int = RATE, seed: int = 7) -> bytes:
    """Deterministic non-silent PCM: a tone plus noise (content is irrelevant to the stand-in)."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, len(t))
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * 220 * t) + noise)


async def chunked(pcm: bytes, chunk_bytes: int = 3200) -> AsyncIterator[bytes]:
    for i in range(0, len(pcm), chunk_bytes):
        yield pcm[i : i + chunk_bytes]
        await asyncio.sleep(0)


def stream_config(**kw: object) -> stt_pb2.RecognitionConfig:
    return stt_pb2.RecognitionConfig(
        audio=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=RATE, channels=1), **kw
    )


@pytest.fixture
def streaming_env(monkeypatch: pytest.MonkeyPatch, transcribe_standin: TranscribeStandIn) -> dict[str, str]:
    env = isolated_aws_env(
        AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING=transcribe_standin.url,
        AWS_CA_BUNDLE=str(transcribe_standin.ca_bundle),
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


async def collect(backend: TranscribeBackend, config: stt_pb2.RecognitionConfig, pcm: bytes) -> list:
    return [event async for event in backend.stream(config, chunked(pcm))]


async def test_streaming_partials_and_final_through_real_client(streaming_env, transcribe_standin):
    transcribe_standin.script(transcript=SCRIPT)
    backend = TranscribeBackend(STTSettings(backend="transcribe"))
    await backend.start()
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
