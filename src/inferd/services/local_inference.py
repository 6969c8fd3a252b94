"""How the `elasticsearch` service runs its endpoints on the local engine.

Endpoint settings become an allocation plan; inference requests become work on the endpoint's
deployment (started on first use when it is not running), batched with other requests by the
engine. Results take ES's shapes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from inferd.core.endpoint import EndpointConfig
from inferd.core.errors import EngineError
from inferd.core.inference import InferenceRequest
from inferd.core.results import (
    CompletionResult,
    RankedDocument,
    RerankResult,
    SparseEmbedding,
    SparseEmbeddingResult,
    TextEmbeddingResult,
)
from inferd.core.tasks import InputType
from inferd.engine.batcher import Unfinished
from inferd.engine.catalog import ModelSpec
from inferd.engine.deployment import AllocationPlan, Deployment
from inferd.engine.engine import Engine
from inferd.engine.runtimes.base import EmbeddingRuntime, GenerativeRuntime, RerankRuntime, SparseRuntime
from inferd.services.base import Endpoint


class GenerationAbandoned(Exception):
    """Stops a generation whose stream nobody reads any more."""


# Completions are an inferd extension (ES's elasticsearch service has no completion task).
DEFAULT_MAX_NEW_TOKENS = 256


def estimate_tokens(texts: Sequence[str]) -> int:
    """A cheap token estimate for the batcher's budget (about four characters a token, plus specials)."""
    return sum(len(t) // 4 + 2 for t in texts)


def allocation_plan(settings: Any) -> AllocationPlan:
    adaptive = settings.adaptive_allocations
    if adaptive is not None and adaptive.enabled:
        low = adaptive.min_number_of_allocations
        high = adaptive.max_number_of_allocations
        return AllocationPlan(
            num_threads=settings.num_threads,
            adaptive=True,
            min_allocations=0 if low is None or low < 0 else low,
            max_allocations=32 if high is None or high < 0 else high,
        )
    return AllocationPlan(num_threads=settings.num_threads, num_allocations=settings.num_allocations or 1)


def deployment_id_of(endpoint: Endpoint) -> str:
    return getattr(endpoint.service_settings, "deployment_id", None) or endpoint.inference_id


def deployment_id_of_config(config: EndpointConfig) -> str:
    """`deployment_id_of` from stored settings, without parsing them (GET and DELETE)."""
    return str(config.service_settings.get("deployment_id") or config.inference_id)


def _embed(input_type: InputType | None) -> Any:
    def run(runtime: EmbeddingRuntime, texts: list[str]) -> Unfinished:
        vectors = runtime.embed(texts, input_type)
        return Unfinished(vectors.tolist)  # float lists are built on the finisher thread

    return run


def _sparse(runtime: SparseRuntime, texts: list[str]) -> Unfinished:
    vectors = runtime.sparse_in_steps(texts)
    return Unfinished(lambda: [SparseEmbedding(v.weights, v.is_truncated) for v in vectors()])


def _rerank(runtime: RerankRuntime, items: list[tuple[str, list[str]]]) -> list[list[float]]:
    return [runtime.score(query, documents) for query, documents in items]


class LocalInference:
    """Mixed into the `elasticsearch` service; needs `self.engine` and the model spec of an endpoint."""

    engine: Engine

    def model_spec(self, endpoint: Endpoint) -> ModelSpec:
        model_id = endpoint.service_settings.model_id  # type: ignore[attr-defined]
        spec = self.engine.spec(model_id)
        if spec is None:
            raise EngineError(f"Model [{model_id}] of inference endpoint [{endpoint.inference_id}] is not available")
        return spec

    async def deployment(self, endpoint: Endpoint) -> Deployment:
        """The endpoint's running deployment, started now if it is not (first use, or after a restart)."""
        deployment_id = deployment_id_of(endpoint)
        running = self.engine.find(deployment_id)
        if running is not None:
            running.endpoints.add(endpoint.inference_id)
            return running
        plan = allocation_plan(endpoint.service_settings)
        return await self.engine.deploy(deployment_id, self.model_spec(endpoint), plan, endpoint.inference_id)

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        deployment = await self.deployment(endpoint)
        kind = ("embed", request.input_type)
        vectors = await deployment.run(kind, _embed(request.input_type), request.input, estimate_tokens(request.input))
        return TextEmbeddingResult(vectors)

    async def sparse_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> SparseEmbeddingResult:
        deployment = await self.deployment(endpoint)
        weights = await deployment.run("sparse", _sparse, request.input, estimate_tokens(request.input))
        return SparseEmbeddingResult(weights)

    async def rerank(self, endpoint: Endpoint, request: InferenceRequest) -> RerankResult:
        assert request.query is not None
        deployment = await self.deployment(endpoint)
        tokens = estimate_tokens([request.query, *request.input])
        (scores,) = await deployment.run("rerank", _rerank, [(request.query, request.input)], tokens, batchable=False)
        return_documents = request.return_documents
        if return_documents is None:
            return_documents = getattr(endpoint.task_settings, "return_documents", True)
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        if request.top_n is not None:
            ranked = ranked[: request.top_n]
        return RerankResult(
            [RankedDocument(i, float(scores[i]), request.input[i] if return_documents else None) for i in ranked]
        )

    async def _generate(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        max_new_tokens: int,
        stop: Sequence[str],
        on_text: Any = None,
    ) -> str:
        deployment = await self.deployment(endpoint)

        def run(runtime: GenerativeRuntime, items: list[None]) -> list[str]:
            return [runtime.generate(messages, max_new_tokens=max_new_tokens, stop=stop, on_text=on_text)]

        tokens = estimate_tokens([str(m.get("content") or "") for m in messages])
        (text,) = await deployment.run("generate", run, [None], tokens, batchable=False)
        return str(text)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        results = []
        for text in request.input:
            messages = [{"role": "user", "content": text}]
            results.append(await self._generate(endpoint, messages, DEFAULT_MAX_NEW_TOKENS, ()))
        return CompletionResult(results)

    async def _stream_text(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], max_new_tokens: int, stop: Sequence[str]
    ) -> AsyncIterator[str]:
        """Text pieces as the model produces them (the model runs in its allocation's thread)."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        abandoned = threading.Event()

        def on_text(piece: str) -> None:
            # Raised in the model's thread: a client that went away stops the generation, not just its stream.
            if abandoned.is_set():
                raise GenerationAbandoned
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        async def produce() -> None:
            try:
                await self._generate(endpoint, messages, max_new_tokens, stop, on_text)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        task = asyncio.create_task(produce())
        try:
            while (piece := await pieces.get()) is not None:
                if piece:
                    yield piece
            await task  # re-raise a failure of the generation
        finally:
            abandoned.set()
            if not task.done():
                task.cancel()

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        messages = [{"role": "user", "content": " ".join(request.input)}]
        async for piece in self._stream_text(endpoint, messages, DEFAULT_MAX_NEW_TOKENS, ()):
            yield piece

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        model = request.get("model") or endpoint.service_settings.model_id  # type: ignore[attr-defined]
        chunk_id = f"chatcmpl-{endpoint.inference_id}"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice: dict[str, Any] = {"delta": delta, "index": 0}
            if finish is not None:
                choice["finish_reason"] = finish
            return {"id": chunk_id, "choices": [choice], "model": model, "object": "chat.completion.chunk"}

        max_new = request.get("max_completion_tokens") or DEFAULT_MAX_NEW_TOKENS
        first = True
        async for piece in self._stream_text(endpoint, request["messages"], max_new, request.get("stop") or ()):
            yield chunk({"content": piece, "role": "assistant"} if first else {"content": piece})
            first = False
        yield chunk({}, "stop")
