"""A fake Azure OpenAI resource: `/openai/deployments/{deployment}/embeddings` and
`/openai/deployments/{deployment}/chat/completions` (JSON and SSE) under `?api-version=...`, with
`api-key` or Entra ID bearer authentication, answering as Azure does (its error bodies, the
prompt-filter chunk that opens every stream, `Unrecognized request argument` for what an
api-version does not know)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider, Recorded
from tests.fakes.openai import answer_for, vector

API_KEY = "azure-test-key-0123456789"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-token"
API_VERSION = "2024-10-21"
OLD_API_VERSION = "2024-06-01"  # before stream_options
API_VERSIONS = {"2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21", "2024-12-01-preview", "2025-04-01-preview"}
STREAM_OPTIONS_SINCE = "2024-09-01"
DEFAULT_DIMENSIONS = 8
MAX_INPUTS = 2048
CREATED = 1700000000
# deployment name -> the model deployed there
DEPLOYMENTS = {
    "ada": "text-embedding-ada-002",
    "te3-small": "text-embedding-3-small",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
}
EMBEDDING_MODELS = {"text-embedding-ada-002", "text-embedding-3-small"}
EMBEDDING_KEYS = {"input", "user", "dimensions", "encoding_format", "input_type", "model"}
CHAT_KEYS = {
    "messages", "temperature", "top_p", "n", "stream", "stop", "max_tokens", "max_completion_tokens",
    "presence_penalty", "frequency_penalty", "logit_bias", "user", "tools", "tool_choice", "response_format",
    "seed", "model", "parallel_tool_calls", "logprobs", "top_logprobs",
}  # fmt: skip
NO_FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
BAD_KEY_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
BAD_TOKEN_MESSAGE = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), "
    "or have expired."
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
    "minutes, please wait a moment and try again."
)


@dataclass
class AzureRecorded(Recorded):
    query: dict[str, str] = field(default_factory=dict)


def azure_error(status: int, message: str, code: str | None) -> JSONResponse:
    """Azure's own errors (gateway, routing, quota): {"error": {"code", "message"}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    """Errors of the model service behind Azure, in OpenAI's shape."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=400)


class FakeAzureOpenAi(FakeProvider):
    def __init__(self, api_key: str = API_KEY, entra_token: str = ENTRA_TOKEN) -> None:
        super().__init__()
        self.api_key = api_key
        self.entra_token = entra_token
        self.app.add_route("/openai/deployments/{deployment}/embeddings", self.embeddings, methods=["POST"])
        self.app.add_route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"])

    async def record(self, request: Request) -> Recorded:
        raw = await request.body()
        recorded = AzureRecorded(
            request.method,
            request.url.path,
            dict(request.headers),
            json.loads(raw) if raw else None,
            dict(request.query_params),
        )
        self.requests.append(recorded)
        return recorded

    def _unauthorized(self, request: Request) -> Response | None:
        bearer = request.headers.get("authorization")
        if bearer is not None:
            if bearer != f"Bearer {self.entra_token}":
                return azure_error(401, BAD_TOKEN_MESSAGE, "401")
            return None
        if request.headers.get("api-key") != self.api_key:
            return azure_error(401, BAD_KEY_MESSAGE, "401")
        return None

    def _route(self, request: Request, operation: str) -> tuple[str, Response | None]:
        """The deployed model, or Azure's answer for a wrong api-version, deployment or operation."""
        if request.query_params.get("api-version") not in API_VERSIONS:
            return "", azure_error(404, "Resource not found", "404")
        model = DEPLOYMENTS.get(request.path_params["deployment"])
        if model is None:
            return "", azure_error(404, DEPLOYMENT_NOT_FOUND, "DeploymentNotFound")
        if (operation == "embeddings") != (model in EMBEDDING_MODELS):
            return "", azure_error(
                400,
                f"The {operation} operation does not work with the specified model, {model}. Please choose "
                "different model and try again. You can learn more about which models can be used with each "
                "operation here: https://go.microsoft.com/fwlink/?linkid=2197993.",
                "OperationNotSupported",
            )
        return model, None

    async def _refused(self, request: Request, operation: str) -> tuple[str, dict[str, Any], Response | None]:
        body = (await self.record(request)).body
        if (denied := self._unauthorized(request)) is not None:
            return "", body, denied
        if (scripted := await self.scripted()) is not None:
            return "", body, scripted
        model, wrong = self._route(request, operation)
        if wrong is None and not isinstance(body, dict):
            wrong = invalid_request("We could not parse the JSON body of your request.")
        return model, body, wrong

    async def embeddings(self, request: Request) -> Response:
        model, body, refused = await self._refused(request, "embeddings")
        if refused is not None:
            return refused
        if unknown := sorted(set(body) - EMBEDDING_KEYS):
            return invalid_request(f"Unrecognized request argument supplied: {unknown[0]}")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            return invalid_request("'input' is a required property")
        if len(inputs) > MAX_INPUTS:
            return invalid_request(
                f"Too many inputs. The max number of inputs is {MAX_INPUTS}.  We hope to increase the number of "
                "inputs per request soon. Please contact us through an Azure support request at: "
                "https://go.microsoft.com/fwlink/?linkid=2213926 for further questions."
            )
        if body.get("dimensions") is not None and model == "text-embedding-ada-002":
            return invalid_request("This model does not support specifying dimensions.")
        dims = body.get("dimensions") or DEFAULT_DIMENSIONS
        # Answered in reverse order: clients must order by "index".
        data = [{"object": "embedding", "index": i, "embedding": vector(t, dims)} for i, t in enumerate(inputs)]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return JSONResponse({"object": "list", "data": data[::-1], "model": model, "usage": usage})

    async def chat(self, request: Request) -> Response:
        model, body, refused = await self._refused(request, "chatCompletion")
        if refused is not None:
            return refused
        allowed = set(CHAT_KEYS)
        if request.query_params["api-version"] >= STREAM_OPTIONS_SINCE:
            allowed.add("stream_options")
        if unknown := sorted(set(body) - allowed):
            return invalid_request(f"Unrecognized request argument supplied: {unknown[0]}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return invalid_request("'messages' is a required property", "messages")
        if not all(isinstance(m, dict) and m.get("role") for m in messages):
            return invalid_request("'role' is a required property - 'messages.0'", "messages")
        text = answer_for(messages)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, model, text), media_type="text/event-stream")
        message = {"content": text, "refusal": None, "role": "assistant"}
        choice = {"content_filter_results": NO_FILTER, "finish_reason": "stop", "index": 0, "message": message}
        return JSONResponse(
            {
                "choices": [choice],
                "created": CREATED,
                "id": "chatcmpl-azure-fake",
                "model": model,
                "object": "chat.completion",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": NO_FILTER}],
                "system_fingerprint": "fp_fake",
                "usage": {"completion_tokens": len(text.split()), "prompt_tokens": 3, "total_tokens": 9},
            }
        )

    @staticmethod
    def chunk(model: str, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {
            "choices": choices,
            "created": CREATED,
            "id": "chatcmpl-azure-fake",
            "model": model,
            "object": "chat.completion.chunk",
            "system_fingerprint": "fp_fake",
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    @staticmethod
    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        filters = NO_FILTER if delta.get("content") else {}
        return {"content_filter_results": filters, "delta": delta, "finish_reason": finish, "index": 0}

    async def _stream(self, body: dict[str, Any], model: str, text: str) -> AsyncIterator[bytes]:
        slow = "SLOW" in text
        try:
            # Azure opens every stream with the prompt filter results, in a chunk with empty fields.
            prompt_filter: dict[str, Any] = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
            prompt_filter["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": NO_FILTER}]
            yield f"data: {json.dumps(prompt_filter)}\n\n".encode()
            yield self.chunk(model, [self.choice({"content": "", "refusal": None, "role": "assistant"})])
            for i, word in enumerate(text.split(" ")):
                if slow:
                    await asyncio.sleep(0.2)
                if word == "BREAK":
                    message = "The server had an error while processing your request. Sorry about that!"
                    error = {"message": message, "type": "server_error", "param": None, "code": None}
                    yield f"data: {json.dumps({'error': error})}\n\n".encode()
                    return
                yield self.chunk(model, [self.choice({"content": (" " if i else "") + word})])
            yield self.chunk(model, [self.choice({}, "stop")])
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"completion_tokens": len(text.split()), "prompt_tokens": 3, "total_tokens": 9}
                yield self.chunk(model, [], usage=usage)
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
