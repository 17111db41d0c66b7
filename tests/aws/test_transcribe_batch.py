"""Amazon Transcribe batch jobs against moto in server mode: the S3 upload, StartTranscriptionJob,
polling GetTranscriptionJob, fetching the transcript, and the errors a caller sees.

moto runs Transcribe's control plane (jobs go QUEUED -> IN_PROGRESS -> COMPLETED, one step per
GetTranscriptionJob) but writes no transcript file. ``TranscribeOutput`` plays that part of the service:
when moto reports a job COMPLETED, it puts a transcript document in the format Transcribe writes at the
TranscriptFileUri moto names, in moto's own S3, before Echo's code reads the reply."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aioboto3
import grpc
import pytest

from echo.v1 import audio_pb2, stt_pb2
from services.common.audio import read_wav, wav_bytes
from services.stt.backends.transcribe import TranscribeBackend
from tests.aws.conftest import isolated_aws_env
from tests.aws.standins import HttpStandIn, Reply, Request, start_moto
from tests.aws.test_transcribe import (  # noqa: F401
    serving,
    speech_models,
    tone_pcm,
    transcribe_backend,
    transcribe_settings,
    with_whisper,
)
from tests.servicetools import free_port
from tests.speech import speech_pcm, words

DIALOGUE = "Hello there. Hi, how are you?"


def transcript_document(job: str, text: str, language: str = "en-US") -> dict[str, Any]:
    """A batch transcript as Transcribe writes it: transcripts, items (punctuation apart, times as
    strings) and speaker labels changing at each sentence."""
    items: list[dict[str, Any]] = []
    speaker, t = 0, 0.0
    for word in text.split():
        bare = word.rstrip(".,!?")
        label = f"spk_{speaker}"
        items.append(
            {
                "start_time": f"{t:.2f}",
                "end_time": f"{t + 0.4:.2f}",
                "alternatives": [{"confidence": "0.98", "content": bare}],
                "type": "pronunciation",
                "speaker_label": label,
            }
        )
        t += 0.5
        if bare != word:
            items.append(
                {
                    "alternatives": [{"confidence": "0.0", "content": word[len(bare) :]}],
                    "type": "punctuation",
                    "speaker_label": label,
                }
            )
            speaker = (speaker + word.endswith((".", "?", "!"))) % 2
    return {
        "jobName": job,
        "accountId": "123456789012",
        "status": "COMPLETED",
        "results": {"language_code": language, "transcripts": [{"transcript": text}], "items": items},
    }


@dataclass(eq=False)  # registered as botocore event handlers: hashed by identity
class TranscribeOutput:
    """Writes a job's transcript when moto says it is COMPLETED; records what Echo asked and saw."""

    text: str | None = DIALOGUE
    body: bytes | None = None  # raw bytes to write instead of a document
    # Where a job without an output bucket has its transcript: the service's own bucket, reached by the
    # presigned https URL in TranscriptFileUri. moto names AWS's host there, so a local server stands in.
    service_bucket: ServiceBucket | None = None
    started: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def register(self, backend: TranscribeBackend) -> None:
        events = backend.session.events
        events.register("before-parameter-build.transcribe.StartTranscriptionJob", self.on_start)
        events.register("after-call.transcribe.GetTranscriptionJob", self.on_get)

    def on_start(self, params: dict[str, Any], **_: Any) -> None:
        self.started.append(json.loads(json.dumps(params)))

    async def on_get(self, parsed: dict[str, Any], **_: Any) -> None:
        job = parsed.get("TranscriptionJob") or {}
        self.statuses.append(job.get("TranscriptionJobStatus", ""))
        if job.get("TranscriptionJobStatus") != "COMPLETED" or (self.text is None and self.body is None):
            return
        # https://s3.<region>.amazonaws.com/<bucket>/<key>: where the service put the transcript.
        bucket, key = urlparse(job["Transcript"]["TranscriptFileUri"]).path.lstrip("/").split("/", 1)
        body = (
            self.body
            or json.dumps(transcript_document(job["TranscriptionJobName"], self.text or "")).encode()
        )
        if self.service_bucket is not None:
            job["Transcript"]["TranscriptFileUri"] = self.service_bucket.put(key, body)
            return
        async with aioboto3.Session().client("s3") as s3:
            await s3.put_object(Bucket=bucket, Key=key, Body=body)


@dataclass
class ServiceBucket:
    """Transcribe's service-managed output bucket: objects behind presigned-looking https URLs (plain HTTP
    on 127.0.0.1 here). ``missing`` drops what is put, as an expired or revoked URL would."""

    url: str
    objects: dict[str, bytes] = field(default_factory=dict)
    missing: bool = False

    def put(self, key: str, body: bytes) -> str:
        if not self.missing:
            self.objects[key] = body
        return f"{self.url}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900&X-Amz-Signature=0f"


@pytest.fixture
def service_bucket() -> Iterator[ServiceBucket]:
    store = ServiceBucket("")

    def get(request: Request) -> Reply:
        body = store.objects.get(request.path.split("?", 1)[0].lstrip("/"))
        if request.method != "GET" or body is None:
            return Reply(
                403, {"Content-Type": "application/xml"}, [b"<Error><Code>AccessDenied</Code></Error>"]
            )
        return Reply(200, {"Content-Type": "application/json"}, [body])

    server = HttpStandIn(get)
    store.url = server.url
    try:
        yield store
    finally:
        server.stop()


@pytest.fixture
async def bucket(aws_env: dict[str, str]) -> str:
    name = f"echo-audio-{uuid.uuid4().hex[:12]}"
    async with aioboto3.Session().client("s3") as s3:
        await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
async def vocabulary(moto_url: str) -> str:
    """A custom vocabulary that exists in moto's Transcribe (jobs naming another one are refused)."""
    env = isolated_aws_env(moto_url)
    session = aioboto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]
    )
    async with session.client("transcribe", region_name="us-east-1", endpoint_url=moto_url) as transcribe:
        await transcribe.create_vocabulary(
            VocabularyName="echo-terms", LanguageCode="en-US", Phrases=["Echo"]
        )
    return "echo-terms"


async def backend_for(**settings: Any) -> tuple[TranscribeBackend, TranscribeOutput]:
    output = TranscribeOutput(**settings.pop("output", {}))
    settings.setdefault("transcribe_batch_over_s", 1.0)
    backend = transcribe_backend(transcribe_settings(transcribe_poll_interval_s=0.01, **settings))
    output.register(backend)
    await backend.start()
    return backend, output


def wav_request(seconds: float = 2.0, rate: int = 22050, **config: Any) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(
        config=stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.WAV), **config),
        audio=wav_bytes(tone_pcm(seconds, rate), rate),
    )


async def objects(bucket: str, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
    async with aioboto3.Session().client("s3") as s3:
        listing = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        for entry in listing.get("Contents", []):
            reply = await s3.get_object(Bucket=bucket, Key=entry["Key"])
            yield entry["Key"], await reply["Body"].read()


async def moto_job(name: str) -> dict[str, Any]:
    async with aioboto3.Session().client("transcribe") as transcribe:
        return (await transcribe.get_transcription_job(TranscriptionJobName=name))["TranscriptionJob"]


async def test_long_recording_goes_through_upload_job_poll_and_fetch(bucket, vocabulary):
    backend, output = await backend_for(
        s3_bucket_audio=bucket,
        transcribe_enable_speaker_diarization=True,
        transcribe_vocabulary_name=vocabulary,
    )
    async with serving(backend) as stub:
        reply = await stub.Recognize(wav_request(2.0), timeout=60)

    assert reply.text == DIALOGUE
    assert [(s.text, s.speaker) for s in reply.segments] == [
        ("Hello there", "spk_0"),
        ("Hi how are you", "spk_1"),
    ]
    assert reply.language == "en-US"
    assert reply.duration_s == pytest.approx(2.0, abs=0.01)  # the recording's length, not the last word's

    # The recording landed in the bucket as 16 kHz mono WAV of the same length.
    uploads = [item async for item in objects(bucket, "transcribe-batch/")]
    audio = [(key, body) for key, body in uploads if key.endswith(".wav")]
    assert len(audio) == 1
    key, body = audio[0]
    pcm, rate, channels = read_wav(body)
    assert (rate, channels) == (16000, 1) and len(pcm) / 2 / rate == pytest.approx(2.0, abs=0.01)

    # The job as moto holds it: our upload, its format, language, speakers and vocabulary.
    (params,) = output.started
    job = await moto_job(params["TranscriptionJobName"])
    assert job["Media"]["MediaFileUri"] == f"s3://{bucket}/{key}"
    assert job["MediaFormat"] == "wav"
    assert job["LanguageCode"] == "en-US"
    assert job["Settings"]["ShowSpeakerLabels"] is True and job["Settings"]["MaxSpeakerLabels"] == 2
    assert job["Settings"]["VocabularyName"] == vocabulary
    assert params["OutputBucketName"] == bucket
    assert job["Transcript"]["TranscriptFileUri"].endswith(f"/{bucket}/{params['OutputKey']}")
    # It polled through moto's states until the job completed, and stopped there.
    assert output.statuses == ["QUEUED", "IN_PROGRESS", "COMPLETED"]


async def test_s3_uri_with_language_identification(bucket):
    backend, output = await backend_for(
        s3_bucket_audio=bucket,
        transcribe_language_code="auto",
        transcribe_language_options="en-GB,fr-FR",
        output={"text": "Good morning."},
    )
    async with serving(backend) as stub:
        reply = await stub.Recognize(
            stt_pb2.RecognizeRequest(uri=f"s3://{bucket}/calls/2024-05-01/meeting.MP3"), timeout=60
        )
    assert reply.text == "Good morning."
    assert reply.language == "en-GB"  # what moto's job identified (the first option)
    (params,) = output.started
    job = await moto_job(params["TranscriptionJobName"])
    assert job["Media"]["MediaFileUri"] == f"s3://{bucket}/calls/2024-05-01/meeting.MP3"
    assert job["MediaFormat"] == "mp3"
    assert job["IdentifyLanguage"] is True and job["LanguageOptions"] == ["en-GB", "fr-FR"]
    assert "LanguageCode" not in params
    # Nothing was uploaded: the recording was already in S3.
    assert [key async for key, _ in objects(bucket) if key.endswith(".wav")] == []


@pytest.mark.parametrize("missing", [False, True])
async def test_transcript_from_the_service_bucket_url(aws_env, service_bucket, missing):
    # No S3_BUCKET_AUDIO: the job writes to Transcribe's own bucket; Echo fetches the URL it is given.
    service_bucket.missing = missing
    backend, output = await backend_for(s3_bucket_audio="", output={"service_bucket": service_bucket})
    request = stt_pb2.RecognizeRequest(uri="s3://their-recordings/call.wav")
    async with serving(backend) as stub:
        if missing:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Recognize(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "cannot fetch the Transcribe result" in err.value.details()
            assert "403" in err.value.details()
            return
        reply = await stub.Recognize(request, timeout=60)
    assert reply.text == DIALOGUE and [s.speaker for s in reply.segments] == ["spk_0", "spk_1"]
    (params,) = output.started
    assert "OutputBucketName" not in params and "OutputKey" not in params
    assert len(service_bucket.objects) == 1


async def test_short_recording_streams_instead(bucket, transcribe_standin, monkeypatch):
    # Below transcribe_batch_over_s, Recognize streams: no upload, no job.
    monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING", transcribe_standin.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(transcribe_standin.ca_bundle))
    transcribe_standin.script(transcript="short one")
    backend, output = await backend_for(s3_bucket_audio=bucket, transcribe_batch_over_s=5.0)
    async with serving(backend) as stub:
        reply = await stub.Recognize(wav_request(1.0), timeout=60)
    assert reply.text == "short one"
    assert output.started == [] and [key async for key, _ in objects(bucket)] == []


@pytest.mark.parametrize(
    ("request_", "settings", "code", "message"),
    [
        (
            stt_pb2.RecognizeRequest(uri="https://example.com/a.wav"),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch transcription takes s3://bucket/key",
        ),
        (
            stt_pb2.RecognizeRequest(uri="s3://bucket-only"),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch transcription takes s3://bucket/key",
        ),
        (
            stt_pb2.RecognizeRequest(uri="s3://b/recording"),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "cannot tell the media format",
        ),
        (stt_pb2.RecognizeRequest(), {}, grpc.StatusCode.INVALID_ARGUMENT, "no audio in the request"),
        (
            wav_request(3.0),
            {"s3_bucket_audio": ""},
            grpc.StatusCode.INVALID_ARGUMENT,
            "set S3_BUCKET_AUDIO",
        ),
        (
            wav_request(2.0),
            {"s3_bucket_audio": "echo-no-such-bucket"},
            grpc.StatusCode.NOT_FOUND,
            "S3 PutObject s3://echo-no-such-bucket/",
        ),
        (
            wav_request(2.0, vocabulary_name="echo-typo"),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "StartTranscriptionJob failed: BadRequestException: The requested vocabulary couldn't be found",
        ),
        (
            wav_request(2.0),
            {"transcribe_batch_timeout_s": 0.0},
            grpc.StatusCode.UNAVAILABLE,
            "still QUEUED after 0 s",
        ),
        (
            wav_request(2.0),
            {"output": {"text": None}},
            grpc.StatusCode.NOT_FOUND,
            "(Transcribe result) failed: NoSuchKey",
        ),
        (
            wav_request(2.0),
            {"output": {"body": b"<html>not a transcript</html>"}},
            grpc.StatusCode.UNAVAILABLE,
            "the Transcribe result is not JSON",
        ),
        (
            wav_request(2.0),
            {"output": {"body": b'{"results": {"items": []}}'}},
            grpc.StatusCode.UNAVAILABLE,
            "the Transcribe result has no transcripts",
        ),
    ],
    ids=[
        "not-s3",
        "no-key",
        "no-extension",
        "empty",
        "long-without-bucket",
        "missing-bucket",
        "unknown-vocabulary",
        "job-timeout",
        "no-transcript-file",
        "transcript-not-json",
        "transcript-without-transcripts",
    ],
)
async def test_batch_errors_reach_the_caller(bucket, request_, settings, code, message):
    settings = {"s3_bucket_audio": bucket, **settings}
    backend, _ = await backend_for(**settings)
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(request_, timeout=60)
    assert err.value.code() == code, err.value.details()
    assert message in err.value.details()


async def test_batch_without_credentials_is_unauthenticated(bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    backend, _ = await backend_for(s3_bucket_audio=bucket)
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(wav_request(2.0), timeout=60)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no usable AWS credentials" in err.value.details()


@pytest.mark.usefixtures("speech_models")
async def test_batch_falls_back_to_whisper_when_s3_is_unreachable(bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    transcribe, output = await backend_for(s3_bucket_audio=bucket, transcribe_language_code="auto")
    # ECHO_STT_SERVICE=transcribe,whisper; "auto" reaches Whisper as no language (it detects one).
    backend = await with_whisper(transcribe)
    pcm = speech_pcm("Remind me to water the plants on Sunday.", 16000)
    async with serving(backend) as stub:
        reply = await stub.Recognize(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(audio=audio_pb2.AudioFormat(encoding=audio_pb2.WAV)),
                audio=wav_bytes(pcm, 16000),
            ),
            timeout=120,
        )
    assert {"remind", "water", "plants", "sunday"} <= words(reply.text), reply.text
    assert output.started == []  # the upload failed first: no job was started
    assert backend.name == "whisper"  # Transcribe is down for its cooldown


# --- IAM enforced: a moto of our own that checks signatures and policies -----------------------------


@dataclass
class IamMoto:
    url: str
    allowed: dict[str, str]  # credentials of a user allowed S3 but not transcribe:StartTranscriptionJob
    bucket: str


@pytest.fixture(scope="module")
def iam_moto(log_dir: Path) -> Any:
    """moto with IAM on after its first three requests, which create the user, its key and policy."""
    import boto3

    server, url = start_moto(log_dir, "moto-iam", {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        env = isolated_aws_env(url)
        admin = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        admin.create_user(UserName="echo-stt")
        key = admin.create_access_key(UserName="echo-stt")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["transcribe:GetTranscriptionJob"], "Resource": "*"},
            ],
        }
        admin.put_user_policy(UserName="echo-stt", PolicyName="stt", PolicyDocument=json.dumps(policy))
        allowed = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        bucket = "echo-iam-audio"
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=allowed["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=allowed["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)
        yield IamMoto(url, allowed, bucket)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("who", "code", "message"),
    [
        ("allowed", grpc.StatusCode.PERMISSION_DENIED, "not authorized to perform: transcribe:StartTransc"),
        ("unknown-key", grpc.StatusCode.UNAUTHENTICATED, "S3 PutObject"),
        ("wrong-secret", grpc.StatusCode.UNAUTHENTICATED, "SignatureDoesNotMatch"),
    ],
)
async def test_access_denied_and_bad_credentials_with_iam_enforced(iam_moto, monkeypatch, who, code, message):
    creds = dict(iam_moto.allowed)
    if who == "unknown-key":
        creds["AWS_ACCESS_KEY_ID"] = "AKIAECHONOSUCHKEY000"
    elif who == "wrong-secret":
        creds["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    for k, v in isolated_aws_env(iam_moto.url, **creds).items():
        monkeypatch.setenv(k, v)
    backend, _ = await backend_for(s3_bucket_audio=iam_moto.bucket)
    async with serving(backend) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(wav_request(2.0), timeout=60)
    assert err.value.code() == code, err.value.details()
    assert message in err.value.details()
