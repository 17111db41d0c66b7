"""LLM backend registry: name -> "module:Class", imported only when chosen."""

from __future__ import annotations

from services.common.registry import load_backend

BACKENDS = {
    "llamacpp": "services.llm.backends.llamacpp:LlamaCppBackend",
    # Ollama speaks the OpenAI chat-completions protocol, so one client serves both.
    "ollama": "services.llm.backends.openai_compat:OpenAICompatBackend",
    "openai": "services.llm.backends.openai_compat:OpenAICompatBackend",
    "bedrock": "services.llm.backends.bedrock:BedrockBackend",
    # Scripted and deterministic, for tests (services/llm/backends/fake.py).
    "fake": "services.llm.backends.fake:FakeLLMBackend",
}


def create(settings):  # type: ignore[no-untyped-def]
    return load_backend(BACKENDS, settings.backend, "ECHO_LLM_SERVICE", settings)
