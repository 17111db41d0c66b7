"""Gateway settings (ECHO_GATEWAY_*, plus the service addresses ECHO_<SVC>_ADDR)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class GatewaySettings:
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=8080, metadata={"help": "HTTP/WebSocket port"})
    stt_addr: str = field(default="127.0.0.1:50051", metadata={"env": "ECHO_STT_ADDR", "help": "stt service"})
    llm_addr: str = field(default="127.0.0.1:50052", metadata={"env": "ECHO_LLM_ADDR", "help": "llm service"})
    tts_addr: str = field(default="127.0.0.1:50053", metadata={"env": "ECHO_TTS_ADDR", "help": "tts service"})
    storage_addr: str = field(
        default="127.0.0.1:50054", metadata={"env": "ECHO_STORAGE_ADDR", "help": "storage service"}
    )
    # Limits that protect the session (documented in docs/protocol.md).
    max_frame_bytes: int = field(default=65536, metadata={"help": "largest binary audio frame"})
    max_text_chars: int = field(default=2000, metadata={"help": "longest input.text"})
    max_message_bytes: int = field(default=16384, metadata={"help": "largest JSON text frame"})
    max_utterance_s: float = field(default=30.0, metadata={"help": "a longer utterance is cut here"})
    # Turn-taking.
    vad_threshold: float = field(default=0.5, metadata={"help": "Silero speech probability for speech"})
    end_silence_ms: int = field(default=500, metadata={"help": "silence that ends a user turn (silence)"})
    turn_detection: str = field(
        default="smart",
        metadata={"help": "smart: Smart Turn decides at each short pause; silence: end_silence_ms alone"},
    )
    turn_pause_ms: int = field(default=200, metadata={"help": "pause after which Smart Turn is asked"})
    max_end_silence_ms: int = field(
        default=1800, metadata={"help": "smart: the silence that ends a turn Smart Turn calls incomplete"}
    )
    turn_threshold: float = field(default=0.5, metadata={"help": "smart: probability that ends the turn"})
    continue_window_ms: int = field(
        default=1500,
        metadata={
            "help": "voice again within this long of a turn's end continues that turn: its reply is "
            "stopped and the whole turn answered once (0: every such voice is a barge-in)"
        },
    )
    min_speech_ms: int = field(default=150, metadata={"help": "shorter blips are not speech"})
    barge_in: bool = field(default=True, metadata={"help": "user speech interrupts Echo's reply"})
    prefill: bool = field(
        default=True, metadata={"help": "evaluate the turn so far into the LLM's context while you speak"}
    )
    speculate: bool = field(
        default=True, metadata={"help": "start replying while the end-of-turn silence is still running"}
    )
    # The reply.
    system_prompt_file: str = field(default="", metadata={"help": "persona template (default: built-in)"})
    llm_model: str = field(default="", metadata={"help": "model name passed to the llm service"})
    max_tokens: int = field(default=200, metadata={"help": "reply length cap in tokens"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    history_turns: int = field(default=8, metadata={"help": "most past turns sent to the LLM"})
    voice: str = field(default="", metadata={"help": "default voice (empty: the tts service's)"})
    # Deadlines for gRPC calls, seconds.
    llm_timeout_s: float = 90.0
    tts_timeout_s: float = 60.0
    stt_timeout_s: float = 90.0
    storage_timeout_s: float = 10.0
    # Who may call (gateway/auth.py, gateway/guard.py; docs/protocol.md "Authentication").
    jwt_issuer: str = field(
        default="", metadata={"help": "OIDC issuer whose JWTs are accepted (empty: API keys only)"}
    )
    jwt_audience: str = field(default="", metadata={"help": "required aud (or Cognito client_id) of JWTs"})
    jwt_jwks_url: str = field(
        default="", metadata={"help": "JWKS URL (default: ISSUER/.well-known/jwks.json)"}
    )
    jwt_algorithms: list[str] = field(
        default_factory=lambda: ["RS256"], metadata={"help": "accepted JWT algorithms"}
    )
    key_grace_s: float = field(
        default=600.0, metadata={"help": "while storage is down, accept API keys it confirmed this recently"}
    )
    jwt_leeway_s: float = field(default=30.0, metadata={"help": "clock skew allowed on exp/nbf"})
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={"help": "Host names served, besides localhost, 127.0.0.1 and ::1 (DNS rebinding guard)"},
    )
    allowed_origins: list[str] = field(
        default_factory=list,
        metadata={
            "help": "WebSocket origins allowed besides the allowed hosts' own (e.g. https://app.example)"
        },
    )
    # Per-user limits (gateway/quotas.py); 0 turns a limit off.
    sessions_per_user: int = field(default=4, metadata={"help": "concurrent voice sessions per user"})
    turns_per_minute: int = field(default=20, metadata={"help": "turns per user per rolling minute"})
    audio_s_per_day: float = field(
        default=3600.0, metadata={"help": "seconds of spoken input per user per UTC day"}
    )
    spend_usd_per_day: float = field(default=5.0, metadata={"help": "USD of model cost per user per UTC day"})
    requests_per_minute: int = field(
        default=300, metadata={"help": "REST requests per user per rolling minute"}
    )
    web_client: bool = field(default=True, metadata={"help": "serve the web voice client at /"})
    # On SIGTERM uvicorn closes the open WebSockets and gives their sessions this long to finish (save
    # their last turns). ECS allows a gateway task 120 s (stopTimeout) before SIGKILL; this stays under it.
    shutdown_timeout_s: float = field(
        default=110.0, metadata={"help": "after SIGTERM, how long open sessions get to finish"}
    )
    # The open-session count as a CloudWatch metric for the gateway's scaling (gateway/cloudwatch_metrics.py).
    metrics_namespace: str = field(
        default="", metadata={"help": "CloudWatch namespace for ActiveSessions (empty: not published)"}
    )
    metrics_service_name: str = field(
        default="echo-gateway", metadata={"help": "the metric's ServiceName dimension"}
    )
    metrics_interval_s: float = field(default=60.0, metadata={"help": "seconds between datapoints"})
    log_level: str = "INFO"


def load() -> GatewaySettings:
    return load_settings(GatewaySettings, prefix="ECHO_GATEWAY_", section="gateway")
