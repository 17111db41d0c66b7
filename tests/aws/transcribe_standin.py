"""Amazon Transcribe streaming stand-in: an ASGI app served by hypercorn over HTTP/2 + TLS.

The real ``amazon-transcribe`` client only speaks HTTP/2 over TLS, so this app runs behind hypercorn
with a certificate from a CA the test makes. It reads the client's signed audio event stream
(outer frames carrying ``:date`` and ``:chunk-signature``, each wrapping an ``AudioEvent`` frame) and
answers with encoded partial and final ``TranscriptEvent`` frames, as the service does.

What to say is scripted by a JSON control file (``STANDIN_CONTROL``): ``transcript``; ``mode`` (ok,
throttle, bad_request, midstream_error, access_denied, invalid_token, unavailable); ``filtered_words``
(what the vocabulary filter matches); ``vocabularies`` / ``vocabulary_filters`` (the names that exist,
when given; others are refused as the service refuses them); ``identified_language``; ``audio_path``
(where to write the PCM received, so a test can check what arrived is the speech it sent). Each request
is recorded as one JSON line in ``STANDIN_RECORD`` so tests can check what the client really sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

from tests.aws.eventstream import FrameReader, exception_frame
from tests.aws.eventstream import _serializer as serializer

PARTIAL_EVERY_S = 0.3


def _control() -> dict[str, Any]:
    path = os.environ.get("STANDIN_CONTROL", "")
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _record(entry: dict[str, Any]) -> None:
    path = os.environ.get("STANDIN_RECORD", "")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _write(path: str, data: bytes, mode: str) -> None:
    with open(path, mode) as f:
        f.write(data)


def _transcript_frame(result: dict[str, Any]) -> bytes:
    headers = {
        ":message-type": "event",
        ":event-type": "TranscriptEvent",
        ":content-type": "application/json",
    }
    return serializer.serialize(headers, json.dumps({"Transcript": {"Results": [result]}}).encode())


def _result(
    words: list[str],
    duration: float,
    partial: bool,
    result_id: str,
    language: str,
    speakers: bool,
    filtered: set[str],
    filter_method: str,
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    shown = []
    step = duration / max(1, len(words))
    for i, word in enumerate(words):
        bare = word.rstrip(".,!?")
        punctuation = word[len(bare) :]
        match = bare.lower() in filtered
        if match and filter_method == "remove":
            continue
        content = "***" if match and filter_method == "mask" else bare
        shown.append(content + punctuation)
        start, end = round(i * step, 3), round((i + 1) * step, 3)
        # As the service does: the word, then its punctuation as an item of its own.
        spoken: list[dict[str, Any]] = [
            {"StartTime": start, "EndTime": end, "Type": "pronunciation", "Content": content}
        ]
        if punctuation:
            spoken.append({"StartTime": end, "EndTime": end, "Type": "punctuation", "Content": punctuation})
        for item in spoken:
            item.update(VocabularyFilterMatch=match, Confidence=0.9, Stable=not partial)
            if speakers:
                # Two speakers taking turns by sentence, as a dialogue would be labelled.
                item["Speaker"] = str(sum(w.endswith((".", "?", "!")) for w in words[:i]) % 2)
        items += spoken
    result: dict[str, Any] = {
        "ResultId": result_id,
        "StartTime": 0.0,
        "EndTime": round(duration, 3),
        "IsPartial": partial,
        "Alternatives": [{"Transcript": " ".join(shown), "Items": items}],
        "ChannelId": "ch_0",
    }
    if language:
        result["LanguageCode"] = language
    return result


def _refusal(headers: dict[str, str], control: dict[str, Any]) -> str:
    """Why the service would refuse these request headers with a BadRequestException, or ''."""
    vocabulary = headers.get("x-amzn-transcribe-vocabulary-name", "")
    known = control.get("vocabularies")
    if vocabulary == "no-such-vocabulary" or (vocabulary and known is not None and vocabulary not in known):
        return f"The requested vocabulary {vocabulary!r} couldn't be found. Check the vocabulary name."
    vocab_filter = headers.get("x-amzn-transcribe-vocabulary-filter-name", "")
    known = control.get("vocabulary_filters")
    if vocab_filter and known is not None and vocab_filter not in known:
        return f"The requested vocabulary filter {vocab_filter!r} couldn't be found."
    method = headers.get("x-amzn-transcribe-vocabulary-filter-method", "")
    if method and method not in ("mask", "remove", "tag"):
        return f"VocabularyFilterMethod {method!r} is not valid."
    if headers.get("x-amzn-transcribe-identify-language", "").lower() == "true":
        if "x-amzn-transcribe-language-code" in headers:
            return "You can't set LanguageCode together with IdentifyLanguage."
        if len(headers.get("x-amzn-transcribe-language-options", "").split(",")) < 2:
            return "LanguageOptions must contain at least two languages."
    elif "x-amzn-transcribe-language-code" not in headers:
        return "You must set LanguageCode, IdentifyLanguage or IdentifyMultipleLanguages."
    if not 8000 <= int(headers.get("x-amzn-transcribe-sample-rate", "0")) <= 48000:
        return "MediaSampleRateHertz must be within 8000-48000 for pcm."
    return ""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    control = _control()
    entry: dict[str, Any] = {
        "path": scope["path"],
        "http_version": scope.get("http_version"),
        "authorization": headers.get("authorization", ""),
        "headers": {k: v for k, v in headers.items() if k.startswith("x-amzn-transcribe-")},
    }
    mode = control.get("mode", "ok")

    async def error(status: int, code: str, message: str) -> None:
        entry["error"] = code
        _record(entry)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"x-amzn-errortype", f"{code}:".encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps({"Message": message}).encode()})

    if scope["path"] != "/stream-transcription" or "AWS4-HMAC-SHA256" not in entry["authorization"]:
        await error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
        return
    if mode == "invalid_token":
        await error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
        return
    if mode == "access_denied":
        await error(
            403,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/echo is not authorized to perform: "
            "transcribe:StartStreamTranscription",
        )
        return
    if mode == "throttle":
        await error(
            429, "LimitExceededException", "You have exceeded the maximum number of concurrent streams."
        )
        return
    if mode == "unavailable":
        await error(503, "ServiceUnavailableException", "The service is currently unavailable.")
        return
    refusal = _refusal(headers, control)
    if refusal or mode == "bad_request":
        await error(400, "BadRequestException", refusal or "Your request was not valid.")
        return

    rate = int(headers.get("x-amzn-transcribe-sample-rate", "16000"))
    language = headers.get("x-amzn-transcribe-language-code", "")
    if headers.get("x-amzn-transcribe-identify-language", "").lower() == "true":
        options = headers.get("x-amzn-transcribe-language-options", "").split(",")
        language = (
            control.get("identified_language")
            or headers.get("x-amzn-transcribe-preferred-language")
            or options[0]
        )
    speakers = headers.get("x-amzn-transcribe-show-speaker-label", "").lower() == "true"
    filter_method = headers.get("x-amzn-transcribe-vocabulary-filter-method", "")
    filtered = (
        {w.lower() for w in control.get("filtered_words", [])}
        if headers.get("x-amzn-transcribe-vocabulary-filter-name")
        else set()
    )
    words = str(control.get("transcript", "hello from the transcribe stand-in")).split()
    response_headers = [(b"content-type", b"application/vnd.amazon.eventstream")]
    response_headers += [(b"x-amzn-request-id", str(uuid.uuid4()).encode())]
    response_headers += [(b"x-amzn-transcribe-session-id", str(uuid.uuid4()).encode())]
    response_headers += [(k.encode(), v.encode()) for k, v in entry["headers"].items()]
    await send({"type": "http.response.start", "status": 200, "headers": response_headers})

    outer, inner = FrameReader(), FrameReader()
    audio_path = control.get("audio_path", "")
    if audio_path:
        _write(audio_path, b"", "wb")
    audio = hashlib.sha256()
    received = 0
    events = 0
    signatures: list[str] = []
    bytes_per_partial = int(PARTIAL_EVERY_S * rate) * 2
    next_partial = bytes_per_partial
    partials = 0
    result_id = str(uuid.uuid4())
    ended = False
    while not ended:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        for frame in outer.feed(message.get("body", b"")):
            signatures.append(bytes(frame.headers.get(":chunk-signature", b"")).hex())
            entry.setdefault("has_date", ":date" in frame.headers)
            if not frame.payload:
                ended = True  # the empty signed frame that ends the audio stream
                continue
            for event in inner.feed(frame.payload):
                if event.headers.get(":event-type") != "AudioEvent":
                    continue
                events += 1
                audio.update(event.payload)
                if audio_path:
                    _write(audio_path, event.payload, "ab")
                received += len(event.payload)
            while received >= next_partial:
                next_partial += bytes_per_partial
                partials += 1
                if mode == "midstream_error" and partials == 2:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": exception_frame("LimitExceededException", "Stream throttled mid-way."),
                            "more_body": False,
                        }
                    )
                    entry.update(error="midstream LimitExceededException", audio_bytes=received)
                    _record(entry)
                    return
                shown = words[: min(len(words), partials)]
                frame_bytes = _transcript_frame(
                    _result(
                        shown,
                        received / 2 / rate,
                        True,
                        result_id,
                        language,
                        speakers,
                        filtered,
                        filter_method,
                    )
                )
                await send({"type": "http.response.body", "body": frame_bytes, "more_body": True})
        if not message.get("more_body", False):
            break
    duration = received / 2 / rate
    final = _result(words, duration, False, result_id, language, speakers, filtered, filter_method)
    entry.update(
        audio_sha256=audio.hexdigest(),
        audio_bytes=received,
        audio_events=events,
        partials=partials,
        distinct_signatures=len(set(signatures)),
        frames=len(signatures),
    )
    _record(entry)
    await send({"type": "http.response.body", "body": _transcript_frame(final), "more_body": False})
