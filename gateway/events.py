"""WebSocket protocol v1, defined once: every client message and server event as a typed class, the
stable error codes, and the JSON Schema the clients read (docs/protocol.md describes them for people).

The gateway parses client messages with ``parse_client_message`` and sends events with ``to_wire``;
the clients build messages from the same classes and read events with ``parse_server_event``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

INPUT_ENCODINGS = ("pcm_s16le",)
INPUT_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
INPUT_CHANNELS = (1, 2)
PLAYBACK_MODES = ("realtime", "none")
SERVICES = ("stt", "llm", "tts", "storage")


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` event: stable, one per documented cause (docs/protocol.md)."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    SESSION_NOT_STARTED = "session_not_started"
    SESSION_ALREADY_STARTED = "session_already_started"
    UNSUPPORTED_AUDIO_FORMAT = "unsupported_audio_format"
    FRAME_TOO_LARGE = "frame_too_large"
    TEXT_TOO_LONG = "text_too_long"
    EMPTY_INPUT = "empty_input"
    UNKNOWN_VOICE = "unknown_voice"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    STT_UNAVAILABLE = "stt_unavailable"
    LLM_UNAVAILABLE = "llm_unavailable"
    TTS_UNAVAILABLE = "tts_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    STT_TIMEOUT = "stt_timeout"
    LLM_TIMEOUT = "llm_timeout"
    TTS_TIMEOUT = "tts_timeout"
    STORAGE_TIMEOUT = "storage_timeout"
    STT_ERROR = "stt_error"
    LLM_ERROR = "llm_error"
    TTS_ERROR = "tts_error"
    STORAGE_ERROR = "storage_error"
    INTERNAL = "internal_error"
    # Identity and limits (docs/protocol.md, "Authentication" and "Quotas"). The first four answer an
    # HTTP request or the WebSocket upgrade; the last two are also error events on an open session.
    UNAUTHORIZED = "unauthorized"
    AUTH_UNAVAILABLE = "auth_unavailable"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    INVALID_HOST = "invalid_host"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"

    # A service name that is not one of SERVICES is a gateway bug: ValueError, not a made-up code.
    @staticmethod
    def unavailable(service: str) -> ErrorCode:
        return ErrorCode(f"{service}_unavailable")

    @staticmethod
    def timeout(service: str) -> ErrorCode:
        return ErrorCode(f"{service}_timeout")

    @staticmethod
    def failed(service: str) -> ErrorCode:
        return ErrorCode(f"{service}_error")


class ProtocolError(Exception):
    """A failure the client hears about as an ``error`` event with this code and message."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        turn_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.turn_id = turn_id
        self.retry_after_s = retry_after_s


def _type_is_required(schema: dict[str, Any]) -> None:
    # ``type`` has a default so code can write InputCommit(); on the wire it is always there.
    if "type" in schema.get("properties", {}):
        schema["required"] = ["type", *(name for name in schema.get("required", []) if name != "type")]


def _unsupported(message: str) -> PydanticCustomError:
    # The message goes in through the context: a template would read braces in the client's value.
    return PydanticCustomError("unsupported_audio_format", "{reason}", {"reason": message})


# ----- client messages ---------------------------------------------------------------------------


class _ClientModel(BaseModel):
    # Unknown fields are ignored, so newer clients still talk to this gateway; null means absent.
    model_config = ConfigDict(extra="ignore", json_schema_extra=_type_is_required)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class InputAudio(_ClientModel):
    encoding: StrictStr = Field("pcm_s16le", json_schema_extra={"enum": list(INPUT_ENCODINGS)})
    sample_rate: StrictInt = Field(16000, json_schema_extra={"enum": list(INPUT_SAMPLE_RATES)})
    channels: StrictInt = Field(1, json_schema_extra={"enum": list(INPUT_CHANNELS)})

    @field_validator("encoding", "sample_rate", "channels")
    @classmethod
    def _supported(cls, value: str | int, info: ValidationInfo) -> str | int:
        if info.field_name == "encoding" and value not in INPUT_ENCODINGS:
            raise _unsupported(
                f"audio encoding {value!r} is not supported; use one of {list(INPUT_ENCODINGS)}"
            )
        if info.field_name == "sample_rate" and value not in INPUT_SAMPLE_RATES:
            raise _unsupported(
                f"sample rate {value!r} is not supported; use one of {list(INPUT_SAMPLE_RATES)}"
            )
        if info.field_name == "channels" and value not in INPUT_CHANNELS:
            raise _unsupported(f"{value!r} channels; send 1 or 2")
        return value


class OutputAudio(_ClientModel):
    encoding: StrictStr = Field("pcm_s16le", json_schema_extra={"enum": list(INPUT_ENCODINGS)})
    # 0: the voice's own rate.
    sample_rate: StrictInt = Field(0, json_schema_extra={"enum": [0, *INPUT_SAMPLE_RATES]})
    playback: Literal["realtime", "none"] = "realtime"

    @field_validator("encoding", "sample_rate")
    @classmethod
    def _supported(cls, value: str | int, info: ValidationInfo) -> str | int:
        if info.field_name == "encoding" and value not in INPUT_ENCODINGS:
            raise _unsupported(f"output encoding {value!r}; use 'pcm_s16le'")
        if info.field_name == "sample_rate" and value and value not in INPUT_SAMPLE_RATES:
            raise _unsupported(f"output sample rate {value!r} is not supported")
        return value


class SessionStart(_ClientModel):
    type: Literal["session.start"] = "session.start"
    audio: InputAudio = Field(default_factory=InputAudio)
    output_audio: OutputAudio = Field(default_factory=OutputAudio)
    voice: StrictStr | None = None
    language: StrictStr | None = None
    conversation_id: StrictStr | None = None


class InputText(_ClientModel):
    type: Literal["input.text"] = "input.text"
    # Absent or blank text is the documented empty_input, which the turn logic reports, not a type error.
    text: StrictStr = ""


class InputCommit(_ClientModel):
    type: Literal["input.commit"] = "input.commit"


class ResponseCancel(_ClientModel):
    type: Literal["response.cancel"] = "response.cancel"


class PlaybackPosition(_ClientModel):
    type: Literal["playback.position"] = "playback.position"
    turn_id: StrictStr
    ms: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]


class SessionEnd(_ClientModel):
    type: Literal["session.end"] = "session.end"


ClientMessage = Annotated[
    SessionStart | InputText | InputCommit | ResponseCancel | PlaybackPosition | SessionEnd,
    Field(discriminator="type"),
]

# ----- server events -----------------------------------------------------------------------------


class _ServerModel(BaseModel):
    # The gateway builds every event from these classes: a misspelt field is an error, not a silent
    # extra on the wire (and a client reading an event it does not know fails loudly).
    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_is_required)


class OutputAudioInfo(_ServerModel):
    encoding: str
    sample_rate: int
    channels: int
    playback: Literal["realtime", "none"]


class Limits(_ServerModel):
    max_frame_bytes: int
    max_text_chars: int
    max_utterance_s: float


class SessionStarted(_ServerModel):
    type: Literal["session.started"] = "session.started"
    session_id: str
    conversation_id: str
    output_audio: OutputAudioInfo
    voice: str
    resumed_turns: int
    limits: Limits


class SpeechStarted(_ServerModel):
    type: Literal["speech.started"] = "speech.started"
    at_ms: float


class SpeechStopped(_ServerModel):
    type: Literal["speech.stopped"] = "speech.stopped"
    at_ms: float


class TranscriptPartial(_ServerModel):
    type: Literal["transcript.partial"] = "transcript.partial"
    turn_id: str
    text: str


class TranscriptFinal(_ServerModel):
    type: Literal["transcript.final"] = "transcript.final"
    turn_id: str
    text: str


class ResponseTextDelta(_ServerModel):
    type: Literal["response.text.delta"] = "response.text.delta"
    turn_id: str
    delta: str


class ResponseAudioStart(_ServerModel):
    type: Literal["response.audio.start"] = "response.audio.start"
    turn_id: str
    encoding: str
    sample_rate: int
    channels: int


class ResponseAudioEnd(_ServerModel):
    type: Literal["response.audio.end"] = "response.audio.end"
    turn_id: str


class AudioMs(_ServerModel):
    sent: float
    heard: float


class ResponseDone(_ServerModel):
    type: Literal["response.done"] = "response.done"
    turn_id: str
    text: str
    interrupted: bool
    interrupt_reason: str | None = None
    cancelled_calls: list[str] | None = None
    usage: dict[str, Any]
    timings_ms: dict[str, float]
    audio_ms: AudioMs
    error: str | None = None
    speculative: bool | None = None


class Speculation(_ServerModel):
    started: int
    used: int
    discarded: int


class SessionEnded(_ServerModel):
    type: Literal["session.ended"] = "session.ended"
    session_id: str
    unsaved_turns: int
    speculation: Speculation


class Error(_ServerModel):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    turn_id: str | None = None
    # rate_limited and quota_exceeded: when trying again can succeed.
    retry_after_s: float | None = None


ServerEvent = Annotated[
    SessionStarted
    | SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | ResponseTextDelta
    | ResponseAudioStart
    | ResponseAudioEnd
    | ResponseDone
    | SessionEnded
    | Error,
    Field(discriminator="type"),
]

# ----- derived tables ----------------------------------------------------------------------------


def _classes(union: Any) -> tuple[type[BaseModel], ...]:
    return get_args(get_args(union)[0])


def _type_of(cls: type[BaseModel]) -> str:
    return str(cls.model_fields["type"].default)


CLIENT_MESSAGES: dict[str, type[BaseModel]] = {_type_of(c): c for c in _classes(ClientMessage)}
SERVER_EVENTS: dict[str, type[BaseModel]] = {_type_of(c): c for c in _classes(ServerEvent)}
CLIENT_TYPES: tuple[str, ...] = tuple(CLIENT_MESSAGES)
SERVER_TYPES: tuple[str, ...] = tuple(SERVER_EVENTS)

_CLIENT_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_SERVER_ADAPTER: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)

# ----- parsing and sending -----------------------------------------------------------------------


def decode_frame(text: str, max_bytes: int) -> dict[str, Any]:
    """A text frame as a JSON object with a known client ``type``, or the documented ProtocolError."""
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
    if kind not in CLIENT_MESSAGES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind!r}; expected one of {list(CLIENT_TYPES)}"
        )
    return message


def parse_client_message(text: str, max_bytes: int) -> ClientMessage:
    """One text frame from a client as its message class, or ProtocolError with the documented code."""
    message = decode_frame(text, max_bytes)
    try:
        return _CLIENT_ADAPTER.validate_python(message)
    except ValidationError as e:
        raise _field_error(message["type"], e) from None


def _field_error(kind: str, error: ValidationError) -> ProtocolError:
    # The first problem, in field order (input audio before output audio before the rest).
    first = error.errors(include_url=False)[0]
    if first["type"] == "unsupported_audio_format":
        return ProtocolError(ErrorCode.UNSUPPORTED_AUDIO_FORMAT, first["msg"])
    where = ".".join(str(part) for part in first["loc"][1:])  # loc[0] is the union's tag
    return ProtocolError(ErrorCode.INVALID_MESSAGE, f"{kind}: '{where}': {first['msg']}")


def to_wire(event: BaseModel) -> str:
    """An event (or message) as its JSON text frame; absent optional fields are left out."""
    return event.model_dump_json(exclude_none=True)


def parse_server_event(text: str | bytes) -> ServerEvent:
    """A text frame from the gateway as its event class; pydantic's ValidationError when it is not one."""
    return _SERVER_ADAPTER.validate_json(text)


def protocol_schema() -> dict[str, Any]:
    """JSON Schema of every client message and server event, plus the type names and error codes, as
    served at GET /v1/protocol.schema.json."""
    return {
        "version": 1,
        "client": _CLIENT_ADAPTER.json_schema(),
        "server": _SERVER_ADAPTER.json_schema(mode="serialization"),
        "client_types": list(CLIENT_TYPES),
        "server_types": list(SERVER_TYPES),
        "error_codes": [code.value for code in ErrorCode],
    }
