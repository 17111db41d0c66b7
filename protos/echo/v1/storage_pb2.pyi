from echo.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("session_id", "conversation_id", "created_at", "updated_at", "metadata_json", "ttl", "user_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    conversation_id: str
    created_at: str
    updated_at: str
    metadata_json: str
    ttl: int
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., metadata_json: _Optional[str] = ..., ttl: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id", "user_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("conversation_id", "timestamp", "session_id", "turn_id", "client_input", "agent_response", "metadata_json", "ttl", "input_audio_key", "output_audio_key", "interrupted", "user_id")
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
    USER_ID_FIELD_NUMBER: _ClassVar[int]
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
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., timestamp: _Optional[str] = ..., session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., client_input: _Optional[str] = ..., agent_response: _Optional[str] = ..., metadata_json: _Optional[str] = ..., ttl: _Optional[int] = ..., input_audio_key: _Optional[str] = ..., output_audio_key: _Optional[str] = ..., interrupted: _Optional[bool] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("conversation_id", "turns", "summary", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    summary: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., summary: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("limit", "session_id", "user_id", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    session_id: str
    user_id: str
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("conversations", "next_cursor")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSummary]
    next_cursor: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[ConversationSummary, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class PutAudioRequest(_message.Message):
    __slots__ = ("key", "data", "content_type", "user_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    data: bytes
    content_type: str
    user_id: str
    def __init__(self, key: _Optional[str] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class PutAudioResponse(_message.Message):
    __slots__ = ("key", "size")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class GetAudioRequest(_message.Message):
    __slots__ = ("key", "user_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    user_id: str
    def __init__(self, key: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("conversation_id", "summary", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    summary: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., summary: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class SaveSummaryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class DeleteResult(_message.Message):
    __slots__ = ("conversations", "turns", "audio_objects", "sessions", "api_keys")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    conversations: int
    turns: int
    audio_objects: int
    sessions: int
    api_keys: int
    def __init__(self, conversations: _Optional[int] = ..., turns: _Optional[int] = ..., audio_objects: _Optional[int] = ..., sessions: _Optional[int] = ..., api_keys: _Optional[int] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "user_id", "key_sha256", "label", "created_at", "revoked_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    user_id: str
    key_sha256: str
    label: str
    created_at: str
    revoked_at: str
    def __init__(self, key_id: _Optional[str] = ..., user_id: _Optional[str] = ..., key_sha256: _Optional[str] = ..., label: _Optional[str] = ..., created_at: _Optional[str] = ..., revoked_at: _Optional[str] = ...) -> None: ...

class LookupApiKeyRequest(_message.Message):
    __slots__ = ("key_sha256",)
    KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    key_sha256: str
    def __init__(self, key_sha256: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("user_id", "day", "audio_s", "cost_usd", "turns")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_S_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    day: str
    audio_s: float
    cost_usd: float
    turns: int
    def __init__(self, user_id: _Optional[str] = ..., day: _Optional[str] = ..., audio_s: _Optional[float] = ..., cost_usd: _Optional[float] = ..., turns: _Optional[int] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("user_id", "day")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    day: str
    def __init__(self, user_id: _Optional[str] = ..., day: _Optional[str] = ...) -> None: ...
