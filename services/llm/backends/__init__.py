"""LLM backends by ECHO_LLM_SERVICE name, imported only when chosen."""

from __future__ import annotations

from services.common.registry import Registry
from services.llm.backends.base import LLMBackend
from services.llm.config import LLMSettings


def _chain(backends: list[LLMBackend]) -> LLMBackend:
    from services.common.fallback import load_fallback_settings
    from services.llm.fallback import FallbackLLM

    return FallbackLLM(backends, load_fallback_settings("llm"))


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
    chain=_chain,
)


def create(settings: LLMSettings) -> LLMBackend:
    return REGISTRY.create_configured(settings.backend, settings)
