"""WebSocket protocol v1: message parsing and the stable error codes (docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

INPUT_ENCODINGS = ("pcm_s16le",)
INPUT_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
CLIENT_TYPES = (
    "session.start",
    "input.text",
    "input.commit",
    "response.cancel",
    "playback.position",
    "session.end",
)


class ErrorCode:
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    SESSION_NOT_STARTED = "session_not_started"
    SESSION_ALREADY_STARTED = "session_already_started"
    UNSUPPORTED_AUDIO_FORMAT = "unsupported_audio_format"
    FRAME_TOO_LARGE = "frame_too_large"
    MESSAGE_TOO_LARGE = "message_too_large"
    TEXT_TOO_LONG = "text_too_long"
    EMPTY_INPUT = "empty_input"
    UNKNOWN_VOICE = "unknown_voice"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    INTERNAL = "internal_error"

    @staticmethod
    def unavailable(service: str) -> str:
        return f"{service}_unavailable"

    @staticmethod
    def timeout(service: str) -> str:
        return f"{service}_timeout"

    @staticmethod
    def failed(service: str) -> str:
        return f"{service}_error"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class AudioSpec:
    encoding: str = "pcm_s16le"
    sample_rate: int = 16000
    channels: int = 1


def parse_message(text: str, max_bytes: int) -> dict[str, Any]:
    if len(text.encode()) > max_bytes:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"text frames are limited to {max_bytes} bytes")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {e.msg} at char {e.pos}") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a text frame must be a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the message has no string 'type'")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind!r}; expected one of {list(CLIENT_TYPES)}"
        )
    return message


def _field(message: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = message.get(name, default)
    if (value is not None and not isinstance(value, kind)) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{message['type']}: '{name}' must be {kind.__name__}")
    return value


def parse_input_audio(message: dict[str, Any]) -> AudioSpec:
    audio = message.get("audio", {})
    if not isinstance(audio, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "session.start: 'audio' must be an object")
    spec = AudioSpec(
        encoding=audio.get("encoding", "pcm_s16le"),
        sample_rate=audio.get("sample_rate", 16000),
        channels=audio.get("channels", 1),
    )
    if spec.encoding not in INPUT_ENCODINGS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            f"audio encoding {spec.encoding!r} is not supported; use one of {list(INPUT_ENCODINGS)}",
        )
    if spec.sample_rate not in INPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            f"sample rate {spec.sample_rate!r} is not supported; use one of {list(INPUT_SAMPLE_RATES)}",
        )
    if spec.channels not in (1, 2):
        raise ProtocolError(ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"{spec.channels!r} channels; send 1 or 2")
    return spec


PLAYBACK_MODES = ("realtime", "none")


def parse_output_audio(message: dict[str, Any]) -> tuple[int, bool]:
    """The requested output sample rate (0: the voice's own), and whether the client plays the reply's
    audio in real time as it arrives (``playback: "realtime"``, the default) or not at all (``"none"``)."""
    out = message.get("output_audio") or {}
    if not isinstance(out, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "session.start: 'output_audio' must be an object")
    if out.get("encoding", "pcm_s16le") != "pcm_s16le":
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"output encoding {out.get('encoding')!r}; use 'pcm_s16le'"
        )
    rate = out.get("sample_rate", 0)
    if rate and rate not in INPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"output sample rate {rate!r} is not supported"
        )
    playback = out.get("playback", "realtime")
    if playback not in PLAYBACK_MODES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"session.start: output_audio.playback {playback!r}; use one of {list(PLAYBACK_MODES)}",
        )
    return int(rate), playback == "realtime"


def string_field(message: dict[str, Any], name: str, default: str | None = None) -> str | None:
    return _field(message, name, str, default)


def number_field(message: dict[str, Any], name: str) -> float:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{message['type']}: '{name}' must be a number >= 0")
    return float(value)
