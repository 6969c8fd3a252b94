"""A service registered only by the tests, to prove the dispatch end to end without a model.

Its results are deterministic functions of the input (so tests can predict them exactly), in the
spirit of Elasticsearch's own `test_service` and `streaming_completion_test_service`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr

from inferd.core.endpoint import EndpointConfig
from inferd.core.errors import StatusError
from inferd.core.inference import InferenceRequest
from inferd.core.results import (
    CompletionResult,
    RankedDocument,
    RerankResult,
    SparseEmbedding,
    SparseEmbeddingResult,
    TextEmbeddingResult,
)
from inferd.core.tasks import TaskType
from inferd.services.base import Endpoint, Service
from inferd.services.schema import EmptySettings, Integer, SettingsModel

WORD = re.compile(r"\w+")


class RateLimit(SettingsModel):
    requests_per_minute: Annotated[int, Field(gt=0, title="Requests per minute")] = 3000


class SampleServiceSettings(SettingsModel):
    model: Annotated[str, Field(min_length=1, description="The model to call.", title="Model")]
    dimensions: Annotated[
        Integer, Field(gt=0, description="Embedding size.", title="Dimensions", json_schema_extra={"updatable": True})
    ] = 8
    similarity: Annotated[
        Literal["cosine", "dot_product", "l2_norm"] | None, Field(description="Similarity.", title="Similarity")
    ] = None
    rate_limit: Annotated[RateLimit, Field(title="Rate limit", json_schema_extra={"updatable": True})] = RateLimit()


class SampleSecrets(SettingsModel):
    api_key: Annotated[SecretStr, Field(description="The API key.", title="API Key")]


class SampleEmbeddingTaskSettings(SettingsModel):
    user: Annotated[str | None, Field(description="A user id to pass on.", title="User")] = None
    # How long to wait before answering; lets tests exercise timeouts.
    delay_ms: Annotated[int, Field(ge=0, title="Delay")] = 0


class SampleRerankTaskSettings(SettingsModel):
    return_documents: Annotated[bool, Field(title="Return documents")] = False


def embed(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in (digest * (dims // len(digest) + 1))[:dims]]


class SampleService(Service):
    name = "test_service"
    display_name = "Test Service"
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.SPARSE_EMBEDDING,
        TaskType.RERANK,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    secret_settings_model = SampleSecrets

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return SampleServiceSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        if task_type is TaskType.TEXT_EMBEDDING:
            return SampleEmbeddingTaskSettings
        if task_type is TaskType.RERANK:
            return SampleRerankTaskSettings
        return EmptySettings

    def default_endpoints(self) -> Sequence[EndpointConfig]:
        # A preconfigured endpoint with an id that passes id validation, so PUT's reserved-id rule is reachable.
        return (
            EndpointConfig(
                "test-default-completion",
                TaskType.COMPLETION,
                self.name,
                {"model": "default", "dimensions": 8, "rate_limit": {"requests_per_minute": 3000}},
            ),
        )

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        settings = endpoint.service_settings
        assert isinstance(settings, SampleServiceSettings)
        task = endpoint.task_settings
        assert isinstance(task, SampleEmbeddingTaskSettings)
        if task.delay_ms:
            await asyncio.sleep(task.delay_ms / 1000)
        prefix = f"{request.input_type}:" if request.input_type else ""
        return TextEmbeddingResult([embed(prefix + text, settings.dimensions) for text in request.input])

    async def sparse_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> SparseEmbeddingResult:
        out = []
        for text in request.input:
            weights: dict[str, float] = {}
            for word in WORD.findall(text.lower()):
                weights[word] = weights.get(word, 0.0) + 1.0
            out.append(SparseEmbedding(weights))
        return SparseEmbeddingResult(out)

    async def rerank(self, endpoint: Endpoint, request: InferenceRequest) -> RerankResult:
        assert request.query is not None
        task = endpoint.task_settings
        assert isinstance(task, SampleRerankTaskSettings)
        query = set(WORD.findall(request.query.lower()))
        scored = []
        for i, doc in enumerate(request.input):
            words = set(WORD.findall(doc.lower()))
            scored.append((len(query & words) / (len(query | words) or 1), i, doc))
        scored.sort(key=lambda s: (-s[0], s[1]))
        if request.top_n is not None:
            scored = scored[: request.top_n]
        return_documents = task.return_documents if request.return_documents is None else request.return_documents
        return RerankResult(
            [RankedDocument(i, round(score, 6), doc if return_documents else None) for score, i, doc in scored]
        )

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        if request.input[0] == "fail":
            raise StatusError("the test service was asked to fail", status=400)
        if request.input[0] == "crash":
            raise RuntimeError("a bug in the test service")
        return CompletionResult([text.upper() for text in request.input])

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        text = " ".join(request.input)
        for i, word in enumerate(text.split(" ")):
            if word == "FAIL":
                raise StatusError("the test service failed mid-stream", status=500)
            yield (" " if i else "") + word.upper()

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        last = request["messages"][-1].get("content") or ""
        settings = endpoint.service_settings
        assert isinstance(settings, SampleServiceSettings)
        model = request.get("model") or settings.model
        words = str(last).split(" ")
        for i, word in enumerate(words):
            delta: dict[str, Any] = {"content": (" " if i else "") + word.upper()}
            if i == 0:
                delta["role"] = "assistant"
            yield {
                "id": "chatcmpl-test",
                "choices": [{"delta": delta, "index": 0}],
                "model": model,
                "object": "chat.completion.chunk",
            }
        yield {
            "id": "chatcmpl-test",
            "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}],
            "model": model,
            "object": "chat.completion.chunk",
            "usage": {"completion_tokens": len(words), "prompt_tokens": len(words), "total_tokens": 2 * len(words)},
        }
