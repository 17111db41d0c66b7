"""LLM service settings (ECHO_LLM_*): what every backend shares (sampling defaults, limits, prices).
Each backend's own settings live in its module (services/llm/backends/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import load_settings


@dataclass
class LLMSettings:
    backend: str = field(
        default="llamacpp",
        metadata={
            "env": "ECHO_LLM_SERVICE",
            "help": "llamacpp | ollama | openai (OpenAI-compatible HTTP) | bedrock | fake; "
            "several comma-separated in fallback order",
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50052, metadata={"help": "gRPC port"})
    max_tokens: int = field(default=256, metadata={"help": "default reply length limit in tokens"})
    temperature: float = field(default=0.7, metadata={"help": "default sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "default nucleus sampling mass"})
    summary_max_tokens: int = field(default=160, metadata={"help": "default length limit of a summary"})
    max_prompt_chars: int = field(default=32000, metadata={"help": "longest prompt accepted, in characters"})
    prices_file: str = field(default="", metadata={"help": "price table (default: services/llm/prices.yaml)"})
    log_level: str = "INFO"


def load() -> LLMSettings:
    return load_settings(LLMSettings, prefix="ECHO_LLM_", section="llm")
