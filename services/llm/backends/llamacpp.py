"""llama.cpp in process (llama-cpp-python): GGUF models on the CPU, streamed token by token.

Generation runs in a worker thread that feeds an asyncio queue. When the consumer goes away (the
gRPC call was cancelled, e.g. the user barged in) a cancel flag is set, and llama.cpp's per-token
stopping check ends the generation at the next token, so no orphaned work keeps burning CPU.

The context stays warm between calls (llamacpp_context): a prompt that starts with tokens already in
it evaluates only the rest, and Prefill evaluates the conversation so far while the user speaks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo.v1 import llm_pb2
from services.common import models
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.llm import summary
from services.llm.backends.base import done_event, sampling_value
from services.llm.backends.llamacpp_context import ModelSlot, PrefillJob, keep_prefix, run_prefill
from services.llm.config import LLMSettings
from services.llm.prices import PriceTable

log = logging.getLogger("echo.llm.llamacpp")


@dataclass
class LlamaCppSettings:
    model: str = field(default="qwen2.5-coder-0.5b", metadata={"help": "model name or .gguf path"})
    threads: int = field(default=2, metadata={"help": "CPU threads for llama.cpp"})
    context_tokens: int = field(default=2048, metadata={"help": "context window (prompt + reply) in tokens"})
    prefill_chunk_tokens: int = field(
        default=32,
        metadata={"help": "a prefill evaluates this many tokens between checks for a Generate waiting"},
    )

    def __post_init__(self) -> None:
        if self.prefill_chunk_tokens < 1:
            raise ConfigError(
                f"ECHO_LLM_PREFILL_CHUNK_TOKENS must be at least 1, got {self.prefill_chunk_tokens}"
            )


def load_llamacpp_settings() -> LlamaCppSettings:
    return load_settings(LlamaCppSettings, prefix="ECHO_LLM_", section="llm")


# Used only for a GGUF that carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A private-use character appended to a prefill's last message: the rendered prompt is cut where it
# appears, before the template's end-of-turn marker and the assistant's header.
CUT = "\ue000"


@dataclass
class Generation:
    """One generation's state, shared between the event loop and the worker thread."""

    prompt_tokens: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    user_stop: bool
    seed: int | None
    stopping: list[Any]
    # Prompt tokens found in the context (the rest were evaluated); set by the worker.
    cached_tokens: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    output_tokens: int = 0
    # Tokens already produced when cancel was asked for; the rest were produced after it.
    tokens_at_cancel: int | None = None
    stop_reason: str = ""


class LlamaCppBackend:
    name = "llamacpp"
    capabilities = BackendCapabilities(streaming=True)

    requires = ("llama_cpp",)

    def __init__(self, service: LLMSettings, settings: LlamaCppSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_llamacpp_settings()
        self.prices = PriceTable.load(service.prices_file)
        self.llm: Any = None
        self.model_path: Path | None = None
        self._formatter: Any = None
        # llama.cpp contexts are not thread-safe: one evaluation at a time, generations before prefills.
        # Released by the worker itself when it really ends, not when its consumer goes away.
        self.slot = ModelSlot()
        # Observable for tests and logs: generations whose worker thread has not finished yet.
        self.active_generations = 0
        self.last_generation: Generation | None = None
        self.last_prefill: PrefillJob | None = None

    async def start(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.model_path = await models.resolve_async(self.settings.model)
        except models.ModelError as e:
            raise ConfigError(f"ECHO_LLM_MODEL={self.settings.model!r}: {e}") from e
        log.info("loading %s from %s", self.settings.model, self.model_path)
        started = time.monotonic()
        self.llm = await asyncio.to_thread(
            Llama,
            model_path=str(self.model_path),
            n_ctx=self.settings.context_tokens,
            n_threads=self.settings.threads,
            n_threads_batch=self.settings.threads,
            verbose=False,
        )
        # The model's own chat template, rendered by llama-cpp-python's formatter, as
        # create_chat_completion would; we then call create_completion ourselves so that we can pass
        # a per-token stopping check (cancel + exact token counts), which the chat API does not take.
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        template = self.llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(eos),
            bos_token=self._token_text(bos),
            stop_token_ids=[eos],
        )
        # Pay one-off allocation costs before reporting SERVING.
        async for _ in self.generate(
            llm_pb2.GenerateRequest(
                messages=[llm_pb2.ChatMessage(role="user", content="Hi")],
                sampling=llm_pb2.SamplingParams(max_tokens=2),
            )
        ):
            pass
        log.info("%s ready in %.1f s", self.settings.model, time.monotonic() - started)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    async def close(self) -> None:
        async with self.slot.held():  # let a running generation end before freeing the model under it
            if self.llm is not None:
                self.llm.close()
            self.llm = None

    def _check_model(self, requested: str) -> None:
        if not requested or requested in (self.settings.model, str(self.model_path)):
            return
        if self.model_path is not None and requested in (self.model_path.name, self.model_path.stem):
            return
        raise NotFound(
            f"model {requested!r} is not loaded; this service runs {self.settings.model!r} "
            "(choose another with ECHO_LLM_MODEL)"
        )

    def _render(
        self, messages: list[llm_pb2.ChatMessage], model: str, partial: bool = False
    ) -> tuple[Any, list[int]]:
        """The model's chat template applied to ``messages``, and its tokens. ``partial``: cut after
        the last message's text (its words so far), so that the full prompt starts with these tokens."""
        if self.llm is None:
            raise Unavailable("the model is not loaded")
        self._check_model(model)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if partial:
            # Trailing spaces would end the cut on a lone space token that the next word replaces.
            chat[-1]["content"] = chat[-1]["content"].rstrip() + CUT
        formatted = self._formatter(messages=chat)
        prompt = formatted.prompt
        if partial:
            # A template that does not copy the text verbatim renders no CUT: then the whole prompt
            # is prefilled, and the Generate reuses whatever prefix of it matches.
            end = prompt.rfind(CUT)
            prompt = prompt[:end] if end >= 0 else prompt.replace(CUT, "")
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
        if len(tokens) >= self.settings.context_tokens:
            raise InvalidArgument(
                f"the prompt is {len(tokens)} tokens; the context window is "
                f"{self.settings.context_tokens} (shorten the conversation)"
            )
        return formatted, tokens

    def _prepare(self, request: llm_pb2.GenerateRequest) -> Generation:
        formatted, prompt_tokens = self._render(list(request.messages), request.model)
        room = self.settings.context_tokens - len(prompt_tokens)
        sampling = request.sampling
        stop = [s for s in (*sampling.stop, *(formatted.stop or [])) if s]
        return Generation(
            prompt_tokens=prompt_tokens,
            # The reply gets what the context has left, up to the asked-for length.
            max_tokens=min(sampling.max_tokens or self.service.max_tokens, room),
            temperature=sampling_value(sampling, "temperature", self.service.temperature),
            top_p=sampling_value(sampling, "top_p", self.service.top_p),
            stop=stop,
            user_stop=any(sampling.stop),
            seed=sampling.seed or None,
            stopping=list(formatted.stopping_criteria or []),
        )

    def _run(self, job: Generation, emit: Any) -> None:
        """Worker thread: one generation, each text piece handed to ``emit``; ``None`` marks the end."""
        from llama_cpp import StoppingCriteriaList

        # The context length seen by the last check; llama.cpp passes the evaluated tokens, one more
        # per sampled token, and re-checks once after its loop with no new token.
        seen = len(job.prompt_tokens) - 1

        def per_token(tokens: Any, logits: Any) -> bool:
            # Called by llama.cpp after every sampled token: count it, and stop if cancelled.
            nonlocal seen
            if len(tokens) > seen:
                seen = len(tokens)
                if any(criterion(tokens, logits) for criterion in job.stopping):
                    return True
                job.output_tokens += 1
            return job.cancel.is_set()

        self.active_generations += 1
        try:
            # Keep what the context shares with this prompt; llama.cpp evaluates only the rest.
            job.cached_tokens = keep_prefix(self.llm, job.prompt_tokens, len(job.prompt_tokens) - 1)
            chunks = self.llm.create_completion(
                prompt=job.prompt_tokens,
                max_tokens=job.max_tokens,
                temperature=job.temperature,
                top_p=job.top_p,
                stop=job.stop,
                seed=job.seed,
                stream=True,
                stopping_criteria=StoppingCriteriaList([per_token]),
            )
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if job.cancel.is_set():
                        break
                    if choice["text"]:
                        emit(choice["text"])
                    if choice.get("finish_reason"):
                        job.stop_reason = choice["finish_reason"]
            finally:
                chunks.close()  # ends llama.cpp's generator loop now, not at garbage collection
            if job.cancel.is_set():
                job.stop_reason = "cancelled"
            elif job.stop_reason == "stop" and not job.user_stop and job.output_tokens:
                # The model ended its turn: that end-of-turn token was counted above but is not part
                # of the reply, and llama.cpp's (and OpenAI's) usage leaves it out.
                job.output_tokens -= 1
        except Exception as e:
            emit(e)
        finally:
            self.last_generation = job
            self.active_generations -= 1
            if job.stop_reason == "cancelled":
                log.info(
                    "generation cancelled by the client after %d tokens (%d after the cancel)",
                    job.output_tokens,
                    job.output_tokens - (job.tokens_at_cancel or 0),
                )
            emit(None)

    async def generate(self, request: llm_pb2.GenerateRequest) -> AsyncIterator[llm_pb2.GenerateEvent]:
        # Timings run from the request's arrival, queueing included: what the caller waits.
        started = time.perf_counter()
        job = self._prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Exception | None] = asyncio.Queue()

        def emit(item: str | Exception | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (shutdown); nobody is left to read this
                job.cancel.set()

        await self.slot.acquire()
        try:
            worker = loop.run_in_executor(None, self._run, job, emit)
        except BaseException:
            self.slot.release()
            raise
        worker.add_done_callback(lambda _: self.slot.release())
        first_token_ms = 0.0
        finished = False
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                if not first_token_ms:
                    first_token_ms = (time.perf_counter() - started) * 1000
                yield llm_pb2.GenerateEvent(delta=item)
            finished = True
        finally:
            if not finished:  # the consumer left (cancelled call) or the worker failed
                job.tokens_at_cancel = job.output_tokens
                job.cancel.set()
        input_tokens = len(job.prompt_tokens)
        yield done_event(
            self.prices,
            self.settings.model,
            input_tokens,
            job.output_tokens,
            first_token_ms,
            started,
            job.stop_reason,
            prompt_cached_tokens=job.cached_tokens,
        )

    async def prefill(self, request: llm_pb2.PrefillRequest) -> llm_pb2.PrefillResponse:
        started = time.perf_counter()
        _, tokens = self._render(list(request.messages), request.model, partial=True)
        job = self.last_prefill = PrefillJob(tokens)
        if await self.slot.acquire_for_prefill(job.stop):
            loop = asyncio.get_running_loop()
            try:
                if self.llm is None:  # closed while this prefill waited
                    raise Unavailable("the model is not loaded")
                worker = loop.run_in_executor(
                    None, run_prefill, self.llm, job, self.settings.prefill_chunk_tokens
                )
            except BaseException:
                self.slot.release()
                raise
            worker.add_done_callback(lambda _: self.slot.release())
            try:
                # Shielded: a cancelled call must not release the slot while the thread still evaluates.
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                job.stop.set()  # the caller left: stop at the next chunk
                raise
        else:
            job.preempted = True
        if job.preempted:
            log.debug(
                "prefill preempted after %d of %d tokens",
                job.cached_tokens + job.evaluated_tokens,
                len(tokens),
            )
        return llm_pb2.PrefillResponse(
            cached_tokens=job.cached_tokens,
            evaluated_tokens=job.evaluated_tokens,
            ms=(time.perf_counter() - started) * 1000,
            preempted=job.preempted,
        )

    async def summarize(self, request: llm_pb2.SummarizeRequest) -> llm_pb2.SummarizeResponse:
        return await summary.summarize(self, request, self.service.summary_max_tokens)

    async def list_models(self) -> list[llm_pb2.ModelInfo]:
        description = str(self.model_path)
        if self.settings.model in models.MODELS:
            description = models.MODELS[self.settings.model].description
        return [
            llm_pb2.ModelInfo(
                name=self.settings.model, backend=self.name, is_default=True, description=description
            )
        ]
