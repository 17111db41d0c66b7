"""LLM backends by ECHO_LLM_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.llm.backends.base import LLMBackend
from services.llm.config import LLMSettings

REGISTRY: Registry[LLMBackend] = Registry(
    "ECHO_LLM_SERVICE",
    LLMBackend,
    {
        "llamacpp": "services.llm.backends.llamacpp:LlamaCppBackend",
        # Ollama speaks the OpenAI chat-completions protocol, so one client serves both.
        "ollama": "services.llm.backends.openai_compat:OllamaBackend",
        "openai": "services.llm.backends.openai_compat:OpenAICompatBackend",
        "bedrock": "services.llm.backends.bedrock:BedrockBackend",
        # Scripted replies at a set pace, for deterministic tests.
        "fake": "services.llm.backends.fake:FakeLLMBackend",
    },
)


def create(settings: LLMSettings) -> LLMBackend:
    return REGISTRY.create_configured(settings.backend, settings)
