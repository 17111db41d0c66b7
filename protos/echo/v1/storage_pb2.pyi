from echo.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("session_id", "conversation_id", "created_at", "updated_at", "metadata_json", "ttl")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    conversation_id: str
    created_at: str
    updated_at: str
    metadata_json: str
    ttl: int
    def __init__(self, session_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., metadata_json: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("conversation_id", "timestamp", "session_id", "turn_id", "client_input", "agent_response", "metadata_json", "ttl", "input_audio_key", "output_audio_key", "interrupted")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_INPUT_FIELD_NUMBER: _ClassVar[int]
    AGENT_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_AUDIO_KEY_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    timestamp: str
    session_id: str
    turn_id: str
    client_input: str
    agent_response: str
    metadata_json: str
    ttl: int
    input_audio_key: str
    output_audio_key: str
    interrupted: bool
    def __init__(self, conversation_id: _Optional[str] = ..., timestamp: _Optional[str] = ..., session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., client_input: _Optional[str] = ..., agent_response: _Optional[str] = ..., metadata_json: _Optional[str] = ..., ttl: _Optional[int] = ..., input_audio_key: _Optional[str] = ..., output_audio_key: _Optional[str] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("conversation_id", "turns", "summary")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    summary: str
    def __init__(self, conversation_id: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., summary: _Optional[str] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("limit", "session_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    session_id: str
    def __init__(self, limit: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class ConversationSummary(_message.Message):
    __slots__ = ("conversation_id", "first_timestamp", "last_timestamp", "turn_count", "summary", "last_client_input")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TURN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    LAST_CLIENT_INPUT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    first_timestamp: str
    last_timestamp: str
    turn_count: int
    summary: str
    last_client_input: str
    def __init__(self, conversation_id: _Optional[str] = ..., first_timestamp: _Optional[str] = ..., last_timestamp: _Optional[str] = ..., turn_count: _Optional[int] = ..., summary: _Optional[str] = ..., last_client_input: _Optional[str] = ...) -> None: ...

class ListConversationsResponse(_message.Message):
    __slots__ = ("conversations",)
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSummary]
    def __init__(self, conversations: _Optional[_Iterable[_Union[ConversationSummary, _Mapping]]] = ...) -> None: ...

class PutAudioRequest(_message.Message):
    __slots__ = ("key", "data", "content_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    data: bytes
    content_type: str
    def __init__(self, key: _Optional[str] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class PutAudioResponse(_message.Message):
    __slots__ = ("key", "size")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class GetAudioRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class AudioUrl(_message.Message):
    __slots__ = ("url", "expires_in_s")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    url: str
    expires_in_s: int
    def __init__(self, url: _Optional[str] = ..., expires_in_s: _Optional[int] = ...) -> None: ...

class SaveSummaryRequest(_message.Message):
    __slots__ = ("conversation_id", "summary")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    summary: str
    def __init__(self, conversation_id: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class SaveSummaryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
