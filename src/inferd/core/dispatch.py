"""Perform inference: resolve the endpoint, check the task type, merge task settings, call the service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from inferd.core.endpoints import EndpointManager, deadline, default_timeout_s, format_seconds
from inferd.core.errors import ActionRequestValidationError, InferenceTimeout, StatusError
from inferd.core.inference import InferenceRequest, first_problem
from inferd.core.results import InferenceResult
from inferd.core.tasks import TaskType
from inferd.services.base import Endpoint, Service


def _incompatible(requested: TaskType, actual: TaskType) -> StatusError:
    return StatusError(
        f"Incompatible task_type, the requested type [{requested}] does not match the model type [{actual}]"
    )


async def _call(service: Service, endpoint: Endpoint, request: InferenceRequest) -> InferenceResult:
    match endpoint.task_type:
        case TaskType.TEXT_EMBEDDING:
            return await service.text_embedding(endpoint, request)
        case TaskType.SPARSE_EMBEDDING:
            return await service.sparse_embedding(endpoint, request)
        case TaskType.RERANK:
            return await service.rerank(endpoint, request)
        case TaskType.COMPLETION:
            return await service.completion(endpoint, request)
    raise StatusError("The [chat_completion] task type only supports streaming, please try again with the _stream API")


class Dispatcher:
    def __init__(self, endpoints: EndpointManager) -> None:
        self.endpoints = endpoints

    async def _prepare(
        self, inference_id: str, url_task: TaskType, request: InferenceRequest
    ) -> tuple[Service, Endpoint]:
        resolved = await self.endpoints.resolve(inference_id)
        if url_task is not TaskType.ANY and url_task is not resolved.config.task_type:
            raise _incompatible(url_task, resolved.config.task_type)
        service, endpoint = resolved.service, resolved.parse()
        if url_task is TaskType.ANY:
            # The URL did not name a task, so the request could only be checked loosely before.
            problem = first_problem(
                endpoint.task_type,
                request.input,
                request.query,
                request.input_type,
                request.return_documents,
                request.top_n,
            )
            if problem:
                raise ActionRequestValidationError([problem])
        return service, service.merge_task_settings(endpoint, request.task_settings)

    async def infer(
        self, inference_id: str, url_task: TaskType, request: InferenceRequest, timeout_s: float | None
    ) -> dict[str, Any]:
        service, endpoint = await self._prepare(inference_id, url_task, request)
        if endpoint.task_type is TaskType.CHAT_COMPLETION:
            raise StatusError(
                "The [chat_completion] task type only supports streaming, please try again with the _stream API"
            )
        timeout = _effective_timeout(endpoint.task_type, timeout_s)
        try:
            async with asyncio.timeout(deadline(timeout)):
                result = await _call(service, endpoint, request)
        except TimeoutError:
            raise InferenceTimeout(f"Request timed out after [{format_seconds(timeout)}]") from None
        return result.to_dict()

    async def stream(
        self, inference_id: str, url_task: TaskType, request: InferenceRequest
    ) -> AsyncIterator[dict[str, Any]]:
        """Completion deltas as ES's stream chunks: {"completion":[{"delta": ...}]}."""
        service, endpoint = await self._prepare(inference_id, url_task, request)
        check_streaming(service, endpoint.task_type)
        return _completion_chunks(service.stream_completion(endpoint, request))

    async def resolve_chat(self, inference_id: str, url_task: TaskType) -> tuple[Service, Endpoint]:
        resolved = await self.endpoints.resolve(inference_id)
        service = resolved.service
        if resolved.config.task_type is not TaskType.CHAT_COMPLETION:
            raise StatusError(
                f"Incompatible task_type for unified API, the requested type [{url_task}] "
                f"must be one of [{TaskType.CHAT_COMPLETION}]"
            )
        check_streaming(service, TaskType.CHAT_COMPLETION)
        return service, resolved.parse()


def _effective_timeout(task_type: TaskType, timeout_s: float | None) -> float:
    return default_timeout_s(task_type) if timeout_s is None else timeout_s


def check_streaming(service: Service, task_type: TaskType) -> None:
    if task_type in service.streaming_task_types:
        return
    if service.streaming_task_types:
        supported = ",".join(t.value for t in service.streaming_task_types)
        raise StatusError(
            f"Streaming is not allowed for service [{service.name}] and task [{task_type}]. "
            f"Supported tasks: [{supported}]",
            status=405,
        )
    raise StatusError(f"Streaming is not allowed for service [{service.name}].", status=405)


async def _completion_chunks(deltas: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for delta in deltas:
        yield {"completion": [{"delta": delta}]}
