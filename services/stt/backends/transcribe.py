"""Amazon Transcribe: streaming (amazon-transcribe, HTTP/2) with partials; batch jobs through S3.

Streaming sends PCM at ``transcribe_sample_rate``; Transcribe may close several result segments in one
utterance, so PARTIAL events carry everything said so far and the one FINAL joins every closed segment.
``Recognize`` streams short recordings and sends long ones (or an ``s3://`` uri) to a batch job.
A fallback to local Whisper (``ECHO_STT_SERVICE=transcribe,whisper``) is services/stt/fallback.py's
chain; ``handoff_config`` tells it the language Transcribe was asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from echo.v1 import audio_pb2, stt_pb2
from services.common import aws
from services.common.audio import PcmConverter, decode_to_mono16k, float_to_pcm16, wav_bytes
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError
from services.common.errors import InvalidArgument, Unavailable
from services.stt.backends.transcribe_settings import TranscribeSettings, load_transcribe_settings
from services.stt.backends.whisper import FILE_ENCODINGS, check_stream_format
from services.stt.config import STTSettings

log = logging.getLogger("echo.stt.transcribe")

# Short codes callers send ("en") to the locale Transcribe needs.
LOCALES = {
    "en": "en-US",
    "es": "es-US",
    "fr": "fr-FR",
    "de": "de-DE",
    "it": "it-IT",
    "pt": "pt-BR",
    "ja": "ja-JP",
    "ko": "ko-KR",
    "zh": "zh-CN",
    "hi": "hi-IN",
}
FILTER_METHODS = ("mask", "remove", "tag")
CHUNK_S = 0.1  # audio per streaming event when Recognize streams a recording
MEDIA_FORMATS = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "webm": "webm",
    "flac": "flac",
    "mp4": "mp4",
    "m4a": "mp4",
}


def locale(code: str) -> str:
    code = code.strip()
    return LOCALES.get(code.lower(), code) if code else ""


class TranscribeBackend:
    name = "transcribe"
    capabilities = BackendCapabilities(streaming=True, stable_partials=False, word_timings=True)

    requires = ("aioboto3", "amazon_transcribe")

    def __init__(self, service: STTSettings, settings: TranscribeSettings | None = None) -> None:
        self.service = service
        self.settings = settings = settings or load_transcribe_settings()
        if settings.transcribe_media_encoding != "pcm":
            raise ConfigError("transcribe media_encoding: Echo streams PCM to Transcribe; set it to 'pcm'")
        if settings.transcribe_vocabulary_filter_method not in FILTER_METHODS:
            raise ConfigError(f"transcribe vocabulary_filter_method must be one of {FILTER_METHODS}")
        if not 8000 <= settings.transcribe_sample_rate <= 48000:
            raise ConfigError("transcribe sample_rate must be within 8000-48000")
        # Exposed so tests can register botocore event handlers before the first call.
        self.session = aws.session(settings.region or None)

    async def start(self) -> None:
        log.info(
            "Transcribe backend in %s (endpoint %s)",
            aws.region(self.settings.region or None),
            aws.endpoint_url("Transcribe Streaming") or "AWS",
        )

    async def close(self) -> None:
        """Nothing held open: each call opens its own client."""

    # --- streaming ------------------------------------------------------------------------------

    def _streaming_client(self, credentials: Any) -> Any:
        import os

        from amazon_transcribe.auth import StaticCredentialResolver
        from amazon_transcribe.client import TranscribeStreamingClient
        from amazon_transcribe.endpoints import StaticEndpointResolver

        endpoint = aws.endpoint_url("Transcribe Streaming")
        client = TranscribeStreamingClient(
            region=aws.region(self.settings.region or None),
            endpoint_resolver=StaticEndpointResolver(endpoint) if endpoint else None,
            credential_resolver=StaticCredentialResolver(
                credentials.access_key, credentials.secret_key, credentials.token
            ),
        )
        ca_bundle = os.environ.get("AWS_CA_BUNDLE")
        if ca_bundle:
            # The SDK's AWS_CA_BUNDLE, which amazon-transcribe does not read itself: trust that CA.
            from awscrt import io

            options = io.TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
            client._session_manager._tls_ctx = io.ClientTlsContext(options)
        return client

    def _language(self, requested: str) -> str:
        """The locale to transcribe in, or "auto". An empty request means the configured language_code; a
        bare language that the configured locale refines keeps that locale ("en" with en-GB configured
        is en-GB, not en-US); any other request wins."""
        configured = locale(self.settings.transcribe_language_code)
        requested = requested.strip()
        if not requested:
            return configured
        if "-" not in requested and configured.lower().startswith(requested.lower() + "-"):
            return configured
        return locale(requested)

    def _language_options(self) -> list[str]:
        candidates = [locale(c) for c in self.settings.transcribe_language_options.split(",") if c.strip()]
        if len(candidates) < 2:
            raise InvalidArgument(
                "automatic language identification needs two or more language options "
                f"(transcribe language_options is {self.settings.transcribe_language_options!r})"
            )
        return candidates

    def _stream_options(self, config: stt_pb2.RecognitionConfig) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {"media_encoding": "pcm", "media_sample_rate_hz": s.transcribe_sample_rate}
        language = self._language(config.language)
        if language.lower() in ("", "auto"):
            candidates = self._language_options()
            options.update(identify_language=True, language_code=None, language_options=candidates)
        else:
            options["language_code"] = language
        if config.enable_speaker_labels or s.transcribe_enable_speaker_diarization:
            options["show_speaker_label"] = True
        vocabulary = config.vocabulary_name or s.transcribe_vocabulary_name
        if vocabulary:
            options["vocabulary_name"] = vocabulary
        vocab_filter = config.vocabulary_filter_name or s.transcribe_vocabulary_filter_name
        if vocab_filter:
            method = config.vocabulary_filter_method or s.transcribe_vocabulary_filter_method
            if method not in FILTER_METHODS:
                raise InvalidArgument(f"vocabulary_filter_method {method!r}: use one of {FILTER_METHODS}")
            options.update(vocab_filter_name=vocab_filter, vocab_filter_method=method)
        elif config.vocabulary_filter_method:
            raise InvalidArgument("vocabulary_filter_method needs a vocabulary_filter_name")
        return options

    async def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        check_stream_format(config.audio)
        options = self._stream_options(config)
        # One pump reads the caller's audio into a queue, so a broken caller stream ends the audio
        # cleanly and is reported instead of a FINAL.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for chunk in audio:
                    await queue.put(chunk)
            finally:
                await queue.put(None)

        pump_task = asyncio.create_task(pump())

        def caller_failed() -> None:
            # The caller's stream broke (a second config, say): that error, not a FINAL of half the audio.
            if pump_task.done() and not pump_task.cancelled() and pump_task.exception() is not None:
                raise pump_task.exception()  # type: ignore[misc]

        try:
            async for event in self._transcribe_stream(config, options, queue):
                if event.kind == stt_pb2.TranscriptEvent.FINAL:
                    caller_failed()
                yield event
        finally:
            pump_task.cancel()

    def handoff_config(self, config: stt_pb2.RecognitionConfig) -> stt_pb2.RecognitionConfig:
        """The request for a backend taking over (Whisper), in the language Transcribe was asked for (so a
        configured fr-FR stays French); "auto" is Transcribe's word, and Whisper detects the language
        when given none."""
        local = stt_pb2.RecognitionConfig()
        local.CopyFrom(config)
        language = self._language(config.language)
        local.language = "" if language.lower() == "auto" else language
        return local

    async def _transcribe_stream(
        self,
        config: stt_pb2.RecognitionConfig,
        options: dict[str, Any],
        queue: asyncio.Queue[bytes | None],
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        operation = "Transcribe StartStreamTranscription"
        dst_rate = self.settings.transcribe_sample_rate
        converter = PcmConverter(config.audio.sample_rate, config.audio.channels or 1, dst_rate)
        with aws.aws_errors(operation):
            credentials = await aws.frozen_credentials(self.session)
            client = self._streaming_client(credentials)
            started = time.perf_counter()
            stream = await client.start_stream_transcription(**options)

        sent_samples = 0

        async def send_audio() -> None:
            nonlocal sent_samples
            while (chunk := await queue.get()) is not None:
                # Bit-exact when the caller already sends what Transcribe takes.
                pcm = converter.convert_pcm16(chunk)
                if pcm:
                    sent_samples += len(pcm) // 2
                    await stream.input_stream.send_audio_event(audio_chunk=pcm)
            tail = float_to_pcm16(converter.flush())
            if tail:
                sent_samples += len(tail) // 2
                await stream.input_stream.send_audio_event(audio_chunk=tail)
            await stream.input_stream.end_stream()

        sender = asyncio.create_task(send_audio())
        closed: list[Any] = []  # finished (non-partial) results, in order
        language = ""
        try:
            with aws.aws_errors(operation):
                async for event in stream.output_stream:
                    for result in event.transcript.results:
                        if not result.alternatives:
                            continue
                        language = result.language_code or language
                        if result.is_partial:
                            if config.interim_results:
                                yield self._event(
                                    stt_pb2.TranscriptEvent.PARTIAL,
                                    [*closed, result],
                                    language,
                                    started,
                                    sent_samples / dst_rate,
                                )
                        else:
                            closed.append(result)
                            if config.interim_results:
                                yield self._event(
                                    stt_pb2.TranscriptEvent.PARTIAL,
                                    closed,
                                    language,
                                    started,
                                    sent_samples / dst_rate,
                                )
                await sender  # surfaces a failure to send
        finally:
            if not sender.done():
                sender.cancel()
        yield self._event(
            stt_pb2.TranscriptEvent.FINAL,
            closed,
            language or options.get("language_code") or "",
            started,
            sent_samples / dst_rate,
        )

    @staticmethod
    def _event(
        kind: stt_pb2.TranscriptEvent.Kind, results: list[Any], language: str, started: float, audio_s: float
    ) -> stt_pb2.TranscriptEvent:
        words = [
            stt_pb2.Word(
                text=item.content or "",
                start_s=item.start_time or 0.0,
                end_s=item.end_time or 0.0,
                probability=item.confidence or 0.0,
                speaker=item.speaker or "",
            )
            for result in results
            for item in result.alternatives[0].items or []
            if item.item_type != "punctuation"
        ]
        return stt_pb2.TranscriptEvent(
            kind=kind,
            text=" ".join(
                r.alternatives[0].transcript.strip() for r in results if r.alternatives[0].transcript
            ).strip(),
            start_s=results[0].start_time if results else 0.0,
            end_s=results[-1].end_time if results else 0.0,
            words=words,
            language=language,
            decode_ms=(time.perf_counter() - started) * 1000,
            audio_s=audio_s,
        )

    # --- Recognize: short audio streams, long audio or a uri goes through a batch job ---------------

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        started = time.perf_counter()
        if request.uri:
            return await self._batch(request.uri, request.config, started)
        if not request.audio:
            raise InvalidArgument("no audio in the request (send audio bytes or an s3:// uri)")
        fmt = request.config.audio
        encoding = FILE_ENCODINGS.get(fmt.encoding) or ("wav" if request.audio[:4] == b"RIFF" else "")
        if not encoding:
            raise InvalidArgument("say the audio encoding in config.audio.encoding")
        if encoding == "pcm_s16le":
            check_stream_format(fmt)
        # WebM/Opus from browsers, MP3, OGG: decoded to PCM with PyAV (faster-whisper's dependency).
        samples = await asyncio.to_thread(
            decode_to_mono16k, request.audio, encoding, fmt.sample_rate, fmt.channels or 1
        )
        duration = len(samples) / 16000
        if duration > self.settings.transcribe_batch_over_s:
            if not self.settings.s3_bucket_audio:
                raise InvalidArgument(
                    f"{duration:.0f} s of audio needs a batch job; set S3_BUCKET_AUDIO to enable it"
                )
            uri = await self._upload(wav_bytes(float_to_pcm16(samples), 16000))
            response = await self._batch(uri, request.config, started)
            response.duration_s = duration  # the recording's length, not the last word's end
            return response
        return await self._recognize_streaming(samples, request.config, started)

    async def _recognize_streaming(
        self, samples: np.ndarray, config: stt_pb2.RecognitionConfig, started: float
    ) -> stt_pb2.RecognizeResponse:
        stream_config = stt_pb2.RecognitionConfig()
        stream_config.CopyFrom(config)
        stream_config.audio.CopyFrom(
            audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=16000, channels=1)
        )
        stream_config.interim_results = False
        pcm = float_to_pcm16(samples)
        step = int(16000 * CHUNK_S) * 2

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(pcm), step):
                yield pcm[i : i + step]

        final = stt_pb2.TranscriptEvent()
        async for event in self.stream(stream_config, chunks()):
            if event.kind == stt_pb2.TranscriptEvent.FINAL:
                final = event
        return stt_pb2.RecognizeResponse(
            text=final.text,
            segments=_segments_from_words(final),
            language=final.language,
            duration_s=len(samples) / 16000,
            processing_ms=(time.perf_counter() - started) * 1000,
        )

    async def _upload(self, wav: bytes) -> str:
        bucket = self.settings.s3_bucket_audio
        key = f"transcribe-batch/{uuid.uuid4().hex}.wav"
        async with aws.client("s3", self.settings.region or None, self.session) as s3:
            with aws.aws_errors(f"S3 PutObject s3://{bucket}/{key}"):
                await s3.put_object(Bucket=bucket, Key=key, Body=wav, ContentType="audio/wav")
        return f"s3://{bucket}/{key}"

    def _batch_request(self, uri: str, config: stt_pb2.RecognitionConfig, job: str) -> dict[str, Any]:
        s = self.settings
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise InvalidArgument(f"uri {uri!r}: batch transcription takes s3://bucket/key")
        extension = uri.rsplit(".", 1)[-1].lower() if "." in uri.rsplit("/", 1)[-1] else ""
        if extension not in MEDIA_FORMATS:
            raise InvalidArgument(
                f"uri {uri!r}: cannot tell the media format; use one of {sorted(MEDIA_FORMATS)}"
            )
        params: dict[str, Any] = {
            "TranscriptionJobName": job,
            "Media": {"MediaFileUri": uri},
            "MediaFormat": MEDIA_FORMATS[extension],
        }
        language = self._language(config.language)
        if language.lower() in ("", "auto"):
            params["IdentifyLanguage"] = True
            params["LanguageOptions"] = self._language_options()
        else:
            params["LanguageCode"] = language
        settings: dict[str, Any] = {}
        if config.enable_speaker_labels or s.transcribe_enable_speaker_diarization:
            settings.update(ShowSpeakerLabels=True, MaxSpeakerLabels=max(2, s.transcribe_max_speakers))
        if config.vocabulary_name or s.transcribe_vocabulary_name:
            settings["VocabularyName"] = config.vocabulary_name or s.transcribe_vocabulary_name
        if config.vocabulary_filter_name or s.transcribe_vocabulary_filter_name:
            settings["VocabularyFilterName"] = (
                config.vocabulary_filter_name or s.transcribe_vocabulary_filter_name
            )
            settings["VocabularyFilterMethod"] = (
                config.vocabulary_filter_method or s.transcribe_vocabulary_filter_method
            )
        if settings:
            params["Settings"] = settings
        if s.s3_bucket_audio:
            # Our own bucket for the result, so fetching it needs only our S3 permissions.
            params["OutputBucketName"] = s.s3_bucket_audio
            params["OutputKey"] = f"transcribe-batch/{job}.json"
        return params

    async def _batch(
        self, uri: str, config: stt_pb2.RecognitionConfig, started: float
    ) -> stt_pb2.RecognizeResponse:
        job = f"echo-{uuid.uuid4().hex}"
        params = self._batch_request(uri, config, job)
        region = self.settings.region or None
        async with aws.client("transcribe", region, self.session) as transcribe:
            with aws.aws_errors("Transcribe StartTranscriptionJob"):
                await transcribe.start_transcription_job(**params)
            deadline = time.monotonic() + self.settings.transcribe_batch_timeout_s
            while True:
                with aws.aws_errors("Transcribe GetTranscriptionJob"):
                    reply = await transcribe.get_transcription_job(TranscriptionJobName=job)
                status = reply["TranscriptionJob"]["TranscriptionJobStatus"]
                if status == "COMPLETED":
                    break
                if status == "FAILED":
                    reason = reply["TranscriptionJob"].get("FailureReason", "no reason given")
                    raise InvalidArgument(f"Transcribe job {job} failed: {reason}")
                if time.monotonic() > deadline:
                    waited = self.settings.transcribe_batch_timeout_s
                    raise Unavailable(f"Transcribe job {job} still {status} after {waited:.0f} s")
                await asyncio.sleep(self.settings.transcribe_poll_interval_s)
        transcript_uri = reply["TranscriptionJob"].get("Transcript", {}).get("TranscriptFileUri", "")
        document = await self._fetch_transcript(params, transcript_uri)
        return _response_from_batch(document, reply["TranscriptionJob"], started)

    async def _fetch_transcript(self, params: dict[str, Any], transcript_uri: str) -> dict[str, Any]:
        if "OutputBucketName" in params:
            bucket, key = params["OutputBucketName"], params["OutputKey"]
            async with aws.client("s3", self.settings.region or None, self.session) as s3:
                with aws.aws_errors(f"S3 GetObject s3://{bucket}/{key} (Transcribe result)"):
                    reply = await s3.get_object(Bucket=bucket, Key=key)
                    body = await reply["Body"].read()
        else:
            if not transcript_uri:
                raise Unavailable("Transcribe job completed without a transcript file")
            import aiohttp

            try:
                async with aiohttp.ClientSession() as http, http.get(transcript_uri) as reply:
                    reply.raise_for_status()
                    body = await reply.read()
            except (aiohttp.ClientError, OSError) as e:
                raise Unavailable(f"cannot fetch the Transcribe result {transcript_uri}: {e}") from e
        try:
            return json.loads(body)
        except ValueError as e:
            raise Unavailable(f"the Transcribe result is not JSON: {e}") from e


def _segments_from_words(event: stt_pb2.TranscriptEvent) -> list[stt_pb2.Segment]:
    """Group words into segments by speaker change (one segment without speaker labels)."""
    segments: list[stt_pb2.Segment] = []
    for word in event.words:
        if segments and segments[-1].speaker == word.speaker:
            segments[-1].text += " " + word.text
            segments[-1].end_s = word.end_s
        else:
            segments.append(
                stt_pb2.Segment(text=word.text, start_s=word.start_s, end_s=word.end_s, speaker=word.speaker)
            )
    if not segments and event.text:
        segments.append(stt_pb2.Segment(text=event.text, start_s=event.start_s, end_s=event.end_s))
    return segments


def _response_from_batch(
    document: dict[str, Any], job: dict[str, Any], started: float
) -> stt_pb2.RecognizeResponse:
    """A batch transcript JSON (results.transcripts, items, speaker_labels) as a RecognizeResponse."""
    try:
        results = document["results"]
        text = " ".join(t["transcript"] for t in results["transcripts"]).strip()
    except (KeyError, TypeError) as e:
        raise Unavailable(f"the Transcribe result has no transcripts: {e!r}") from e
    word = stt_pb2.TranscriptEvent()
    for item in results.get("items", []):
        if item.get("type") == "punctuation":
            continue
        alt = (item.get("alternatives") or [{}])[0]
        word.words.append(
            stt_pb2.Word(
                text=alt.get("content", ""),
                start_s=float(item.get("start_time", 0)),
                end_s=float(item.get("end_time", 0)),
                probability=float(alt.get("confidence", 0)),
                speaker=item.get("speaker_label", ""),
            )
        )
    word.text = text
    segments = _segments_from_words(word)
    duration = max((w.end_s for w in word.words), default=0.0)
    return stt_pb2.RecognizeResponse(
        text=text,
        segments=segments,
        language=job.get("LanguageCode", "") or results.get("language_code", ""),
        duration_s=duration,
        processing_ms=(time.perf_counter() - started) * 1000,
    )
