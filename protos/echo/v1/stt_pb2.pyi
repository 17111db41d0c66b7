from echo.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecognitionConfig(_message.Message):
    __slots__ = ("audio", "language", "interim_results", "enable_speaker_labels", "vocabulary_name", "vocabulary_filter_name", "vocabulary_filter_method")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SPEAKER_LABELS_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_NAME_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_FILTER_NAME_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_FILTER_METHOD_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.AudioFormat
    language: str
    interim_results: bool
    enable_speaker_labels: bool
    vocabulary_name: str
    vocabulary_filter_name: str
    vocabulary_filter_method: str
    def __init__(self, audio: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ..., language: _Optional[str] = ..., interim_results: _Optional[bool] = ..., enable_speaker_labels: _Optional[bool] = ..., vocabulary_name: _Optional[str] = ..., vocabulary_filter_name: _Optional[str] = ..., vocabulary_filter_method: _Optional[str] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start_s", "end_s", "probability", "speaker")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_s: float
    end_s: float
    probability: float
    speaker: str
    def __init__(self, text: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., probability: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class TranscriptEvent(_message.Message):
    __slots__ = ("kind", "text", "start_s", "end_s", "words", "language", "decode_ms", "audio_s", "stable")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TranscriptEvent.Kind]
        PARTIAL: _ClassVar[TranscriptEvent.Kind]
        FINAL: _ClassVar[TranscriptEvent.Kind]
    KIND_UNSPECIFIED: TranscriptEvent.Kind
    PARTIAL: TranscriptEvent.Kind
    FINAL: TranscriptEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_S_FIELD_NUMBER: _ClassVar[int]
    STABLE_FIELD_NUMBER: _ClassVar[int]
    kind: TranscriptEvent.Kind
    text: str
    start_s: float
    end_s: float
    words: _containers.RepeatedCompositeFieldContainer[Word]
    language: str
    decode_ms: float
    audio_s: float
    stable: bool
    def __init__(self, kind: _Optional[_Union[TranscriptEvent.Kind, str]] = ..., text: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., language: _Optional[str] = ..., decode_ms: _Optional[float] = ..., audio_s: _Optional[float] = ..., stable: _Optional[bool] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio", "uri")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    uri: str
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., uri: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("text", "start_s", "end_s", "speaker")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_s: float
    end_s: float
    speaker: str
    def __init__(self, text: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("text", "segments", "language", "duration_s", "processing_ms")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    language: str
    duration_s: float
    processing_ms: float
    def __init__(self, text: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., language: _Optional[str] = ..., duration_s: _Optional[float] = ..., processing_ms: _Optional[float] = ...) -> None: ...
