"""Amazon Bedrock through the Converse API (ConverseStream), with a model per purpose and a fallback.

A request names a model, or a purpose ("quick", "complex", "summarize", "cheap") that the table in
bedrock_models.yaml maps to a model and a fallback. The fallback answers when the first model is
throttled or fails before producing any text; once text has streamed, a failure is reported instead
(replaying a reply from another model would repeat words the user already heard).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from echo.v1 import llm_pb2
from services.common import aws
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import NotFound, ResourceExhausted, ServiceError, Unavailable
from services.llm import summary
from services.llm.backends.base import done_event, no_prefill, sampling_value
from services.llm.config import LLMSettings
from services.llm.prices import PriceTable

log = logging.getLogger("echo.llm.bedrock")


@dataclass
class BedrockSettings:
    """Roadmap names (BEDROCK_MODEL_ID, BEDROCK_REGION); endpoints come from the SDK's own variables."""

    bedrock_model_id: str = field(default="", metadata={"env": "BEDROCK_MODEL_ID", "help": "the quick model"})
    bedrock_region: str = field(default="", metadata={"env": "BEDROCK_REGION", "help": "Bedrock region"})
    bedrock_models_file: str = field(
        default="",
        metadata={"help": "purpose -> model/fallback table (default: services/llm/bedrock_models.yaml)"},
    )
    request_timeout_s: float = field(default=60.0, metadata={"help": "read timeout per call"})


def load_bedrock_settings() -> BedrockSettings:
    return load_settings(BedrockSettings, prefix="ECHO_LLM_", section="llm")


DEFAULT_MODELS = Path(__file__).resolve().parent.parent / "bedrock_models.yaml"
PURPOSES = ("quick", "complex", "summarize", "cheap")


def load_model_table(path: str | Path = "") -> dict[str, tuple[str, str]]:
    path = Path(path or DEFAULT_MODELS)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the Bedrock model table {path}: {e}") from e
    table = {}
    for purpose in PURPOSES:
        row = (data.get("purposes") or {}).get(purpose) or {}
        if not row.get("model"):
            raise ConfigError(f"{path}: purpose {purpose!r} needs a model")
        table[purpose] = (str(row["model"]), str(row.get("fallback") or ""))
    return table


def converse_messages(
    messages: list[llm_pb2.ChatMessage],
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Echo's chat messages as Converse wants them: system prompts apart, and user/assistant turns
    alternating and starting with the user (consecutive messages of one role are merged)."""
    system = [{"text": m.content} for m in messages if m.role == "system" and m.content.strip()]
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system" or not m.content.strip():
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"][0]["text"] += "\n" + m.content
        else:
            turns.append({"role": m.role, "content": [{"text": m.content}]})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns, system


class BedrockBackend:
    name = "bedrock"
    capabilities = BackendCapabilities(streaming=True)

    requires = ("aioboto3",)

    def __init__(self, service: LLMSettings, settings: BedrockSettings | None = None) -> None:
        self.service = service
        self.settings = settings = settings or load_bedrock_settings()
        self.table = load_model_table(settings.bedrock_models_file)
        if settings.bedrock_model_id:
            _, fallback = self.table["quick"]
            self.table["quick"] = (settings.bedrock_model_id, fallback)
        self.prices = PriceTable.load(service.prices_file)
        self.client: Any = None
        self._stack = AsyncExitStack()
        self._region = settings.bedrock_region or None

    async def start(self) -> None:
        self.client = await self._stack.enter_async_context(
            aws.client(
                "bedrock-runtime",
                self._region,
                read_timeout=self.settings.request_timeout_s,
                # No SDK retries (with their backoff): a throttled or failing model goes straight to its
                # fallback model, which is the retry a live conversation can wait for.
                retries={"max_attempts": 0, "mode": "standard"},
            )
        )
        log.info("Bedrock in %s; models by purpose: %s", aws.region(self._region), self.table)

    async def close(self) -> None:
        await self._stack.aclose()

    def _models(self, request: llm_pb2.GenerateRequest) -> list[str]:
        if request.model:
            return [request.model]
        model, fallback = self.table.get(request.purpose or "quick", self.table["quick"])
        return [m for m in (model, fallback) if m]

    async def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        messages, system = converse_messages(list(request.messages))
        sampling = request.sampling
        inference: dict[str, Any] = {"maxTokens": sampling.max_tokens or self.service.max_tokens}
        inference["temperature"] = sampling_value(sampling, "temperature", self.service.temperature)
        inference["topP"] = sampling_value(sampling, "top_p", self.service.top_p)
        if sampling.stop:
            inference["stopSequences"] = list(sampling.stop)
        models = self._models(request)
        failures: list[str] = []
        for attempt, model in enumerate(models):
            started = time.perf_counter()
            produced = False
            try:
                async for event in self._stream(model, messages, system, inference, started):
                    produced = produced or bool(event.delta)
                    yield event
                return
            except (ResourceExhausted, Unavailable) as e:
                # Throttled, or the model failed (ModelError/ModelTimeout/ModelNotReady/ServiceUnavailable,
                # mapped to Unavailable): another model may well answer. Not after text has streamed.
                if produced:
                    raise
                failures.append(str(e))
                if attempt == len(models) - 1:
                    if len(failures) == 1:
                        raise
                    raise type(e)(f"every model for this request failed: {'; then '.join(failures)}") from e
                log.warning("%s failed (%s); falling back to %s", model, e, models[attempt + 1])

    async def _stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        system: list[dict[str, str]],
        inference: dict[str, Any],
        started: float,
    ) -> AsyncIterator[llm_pb2.GenerateEvent]:
        kwargs: dict[str, Any] = {"modelId": model, "messages": messages, "inferenceConfig": inference}
        if system:
            kwargs["system"] = system
        first_token_ms = 0.0
        stop_reason, usage = "", {}
        operation = f"Bedrock ConverseStream ({model})"
        try:
            response = await self.client.converse_stream(**kwargs)
            stream = response["stream"]
            try:
                async for event in stream:
                    if "contentBlockDelta" in event:
                        text = event["contentBlockDelta"]["delta"].get("text", "")
                        if text:
                            first_token_ms = first_token_ms or (time.perf_counter() - started) * 1000
                            yield llm_pb2.GenerateEvent(delta=text, model=model)
                    elif "messageStop" in event:
                        stop_reason = event["messageStop"].get("stopReason", "")
                    elif "metadata" in event:
                        usage = event["metadata"].get("usage", {})
            finally:
                # Closing the stream ends the HTTP response: a cancelled call stops billing tokens.
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except ServiceError:
            raise
        except Exception as e:
            error = aws.map_error(e, operation)
            if isinstance(error, NotFound):
                # Bedrock's "The provided model identifier is invalid." does not say which one.
                raise NotFound(
                    f"Bedrock has no model {model!r} in {aws.region(self._region)} that this account can "
                    f"use (see ListModels; set BEDROCK_MODEL_ID or the model table): {error}"
                ) from e
            raise error from e
        input_tokens, output_tokens = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
        yield done_event(
            self.prices, model, input_tokens, output_tokens, first_token_ms, started, stop_reason
        )

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        # Converse has no prefill; its prompt cache is filled by the requests themselves.
        return no_prefill()

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        return await summary.summarize(self, request, self.service.summary_max_tokens)

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        """The configured models (by purpose) and the text models of the Bedrock catalogue that stream."""
        configured = {m for pair in self.table.values() for m in pair if m}
        catalogue: dict[str, str] = {}
        try:
            with aws.aws_errors("Bedrock ListFoundationModels"):
                async with aws.client("bedrock", self._region) as bedrock:
                    found = await bedrock.list_foundation_models(byOutputModality="TEXT")
            catalogue = {
                m["modelId"]: f"{m.get('providerName', '')} {m.get('modelName', '')}".strip()
                for m in found.get("modelSummaries", [])
                if m.get("responseStreamingSupported", True)  # Echo only streams
            }
        except ServiceError as e:  # the catalogue is a nicety; the configured set is what is served
            log.warning("Bedrock catalogue unavailable (%s); listing the configured models", e)
        default = self.table["quick"][0]
        infos = []
        for model in sorted(configured | set(catalogue)):
            role = ", ".join(p for p, pair in self.table.items() if model in pair) or "Bedrock catalogue"
            if model in catalogue:
                description = f"{catalogue[model]} ({role})"
            else:  # configured but unlisted: say so when the catalogue could be read
                description = role + ("; not in this region's catalogue" if catalogue else "")
            infos.append(
                llm_pb2.ModelInfo(
                    name=model, backend=self.name, is_default=model == default, description=description
                )
            )
        return infos
