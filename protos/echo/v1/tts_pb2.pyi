from echo.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SynthesizeRequest(_message.Message):
    __slots__ = ("text", "voice", "format", "language", "rate", "ssml", "pitch", "speech_marks")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    SSML_FIELD_NUMBER: _ClassVar[int]
    PITCH_FIELD_NUMBER: _ClassVar[int]
    SPEECH_MARKS_FIELD_NUMBER: _ClassVar[int]
    text: str
    voice: str
    format: _audio_pb2.AudioFormat
    language: str
    rate: float
    ssml: bool
    pitch: float
    speech_marks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., voice: _Optional[str] = ..., format: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ..., language: _Optional[str] = ..., rate: _Optional[float] = ..., ssml: _Optional[bool] = ..., pitch: _Optional[float] = ..., speech_marks: _Optional[_Iterable[str]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("format", "audio", "sentence_index", "sentence_text", "usage", "speech_marks_json")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_TEXT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_MARKS_JSON_FIELD_NUMBER: _ClassVar[int]
    format: _audio_pb2.AudioFormat
    audio: bytes
    sentence_index: int
    sentence_text: str
    usage: _audio_pb2.Usage
    speech_marks_json: str
    def __init__(self, format: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ..., audio: _Optional[bytes] = ..., sentence_index: _Optional[int] = ..., sentence_text: _Optional[str] = ..., usage: _Optional[_Union[_audio_pb2.Usage, _Mapping]] = ..., speech_marks_json: _Optional[str] = ...) -> None: ...

class ListVoicesRequest(_message.Message):
    __slots__ = ("language",)
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    language: str
    def __init__(self, language: _Optional[str] = ...) -> None: ...

class VoiceInfo(_message.Message):
    __slots__ = ("name", "language", "sample_rate", "backend", "is_default", "aliases")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    sample_rate: int
    backend: str
    is_default: bool
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., sample_rate: _Optional[int] = ..., backend: _Optional[str] = ..., is_default: _Optional[bool] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices",)
    VOICES_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[VoiceInfo]
    def __init__(self, voices: _Optional[_Iterable[_Union[VoiceInfo, _Mapping]]] = ...) -> None: ...
