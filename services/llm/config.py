"""LLM service settings (ECHO_LLM_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class LLMSettings:
    backend: str = field(
        default="llamacpp",
        metadata={
            "env": "ECHO_LLM_SERVICE",
            "help": "llamacpp | ollama | openai (OpenAI-compatible HTTP) | bedrock",
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50052, metadata={"help": "gRPC port"})
    model: str = field(
        default="qwen2.5-coder-0.5b",
        metadata={"help": "model name or .gguf path (llamacpp); the remote model name (HTTP backends)"},
    )
    base_url: str = field(
        default="http://127.0.0.1:11434", metadata={"help": "Ollama / OpenAI-compatible server URL"}
    )
    api_key: str = field(default="", metadata={"help": "bearer token for the HTTP backend, if it needs one"})
    threads: int = field(default=2, metadata={"help": "CPU threads for llama.cpp"})
    context_tokens: int = field(default=2048, metadata={"help": "context window (prompt + reply) in tokens"})
    max_tokens: int = field(default=256, metadata={"help": "default reply length limit in tokens"})
    temperature: float = field(default=0.7, metadata={"help": "default sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "default nucleus sampling mass"})
    summary_max_tokens: int = field(default=160, metadata={"help": "default length limit of a summary"})
    max_prompt_chars: int = field(default=32000, metadata={"help": "longest prompt accepted, in characters"})
    request_timeout_s: float = field(default=60.0, metadata={"help": "HTTP backend: read timeout per call"})
    # ECHO_LLM_SERVICE=bedrock (roadmap names). Endpoints come from the SDK's own variables.
    bedrock_model_id: str = field(default="", metadata={"env": "BEDROCK_MODEL_ID", "help": "the quick model"})
    bedrock_region: str = field(default="", metadata={"env": "BEDROCK_REGION", "help": "Bedrock region"})
    bedrock_models_file: str = field(
        default="",
        metadata={"help": "purpose -> model/fallback table (default: services/llm/bedrock_models.yaml)"},
    )
    prices_file: str = field(default="", metadata={"help": "price table (default: services/llm/prices.yaml)"})
    log_level: str = "INFO"


def load() -> LLMSettings:
    return load_settings(LLMSettings, prefix="ECHO_LLM_", section="llm")
