"""The one HTTP layer every third-party service calls its provider through.

- One `httpx.AsyncClient` per service, with a connection limit.
- A moving-window rate limit per endpoint (`rate_limit.requests_per_minute`); a request waits for
  a slot rather than failing.
- Exactly one retry loop: exponential backoff with full jitter on 429, 5xx and connection errors,
  honouring `Retry-After`, bounded in attempts and in total time. Provider SDK retries are never used.
- Upstream failures become `UpstreamError`s with Elasticsearch's wording and status rule: a provider
  status below 500 passes through, 500 and above becomes 400.
- Every URL passes the SSRF guard before it is called.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from inferd.core.errors import InferdError, UpstreamError
from inferd.services.ssrf import UrlGuard
from inferd.settings import ServerSettings

log = logging.getLogger(__name__)

SERVER_ERROR = "Received a server error status code"
RATE_LIMIT = "Received a rate limit status code"
AUTHENTICATION = "Received an authentication error status code"
PERMISSION_DENIED = "Received a permission denied error status code"
REDIRECTION = "Unhandled redirection"
CONTENT_TOO_LARGE = "Received a content too large status code"
UNSUCCESSFUL = "Received an unsuccessful status code"
BAD_REQUEST = "Received a bad request status code"
INPUT_VALIDATION = "Received an input validation error response"


def es_status(provider_status: int) -> int:
    """ES's rule: a provider status below 500 passes through, 500 and above becomes 400."""
    return provider_status if provider_status < 500 else 400


def describe_status(response: httpx.Response) -> str:
    """The kind of failure, in ES's words, for the error message."""
    status = response.status_code
    if status >= 500:
        return SERVER_ERROR
    if status == 429:
        return RATE_LIMIT
    if status == 401:
        return AUTHENTICATION
    if status == 403:
        return PERMISSION_DENIED
    if status == 404:
        return f"Resource not found at [{response.request.url}]"
    if status == 413:
        return CONTENT_TOO_LARGE
    if status == 422:
        return INPUT_VALIDATION
    if status == 400:
        return BAD_REQUEST
    if 300 <= status < 400:
        return REDIRECTION
    return UNSUCCESSFUL


def upstream_error(
    inference_id: str,
    response: httpx.Response,
    message: str | None,
    describe: Callable[[httpx.Response], str] = describe_status,
) -> UpstreamError:
    status = response.status_code
    reason = f"{describe(response)} for request from inference entity id [{inference_id}] status [{status}]"
    if message:
        reason += f". Error message: [{message}]"
    return UpstreamError(reason, status=es_status(response.status_code))


def is_retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    initial_delay: float
    max_delay: float
    total_timeout: float

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RetryPolicy:
        return cls(
            settings.http_max_retries,
            settings.http_retry_initial_delay,
            settings.http_retry_max_delay,
            settings.http_retry_timeout,
        )

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter under an exponential cap; a provider's Retry-After is a floor."""
        backoff = random.uniform(0, min(self.max_delay, self.initial_delay * 2**attempt))  # noqa: S311 - jitter
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class ProviderCall:
    """One request to a provider, for one endpoint."""

    inference_id: str
    url: str
    json: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    requests_per_minute: int = 0  # 0: no client-side limit
    label: str = "provider"  # e.g. "OpenAI embeddings", used in "Failed to send ..." messages
    # How a failed status is worded, and whether it is worth retrying (services may differ, as in ES).
    describe: Callable[[httpx.Response], str] = describe_status
    retryable: Callable[[httpx.Response], bool] = is_retryable


ErrorParser = Callable[[httpx.Response], str | None]


def json_error_message(*path: str) -> ErrorParser:
    """An error parser reading a string at `path` in a JSON error body (e.g. "error", "message")."""

    def parse(response: httpx.Response) -> str | None:
        try:
            value: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value if isinstance(value, str) else None

    return parse


class ProviderHttp:
    def __init__(self, settings: ServerSettings, guard: UrlGuard) -> None:
        self._settings = settings
        self._guard = guard
        self._policy = RetryPolicy.from_settings(settings)
        self._client: httpx.AsyncClient | None = None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self._settings.http_max_connections, max_keepalive_connections=20)
            # Retries are ours alone (one loop); the total time is bounded by the caller's deadline.
            self._client = httpx.AsyncClient(
                limits=limits, timeout=httpx.Timeout(None, connect=5.0), follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _wait_for_slot(self, call: ProviderCall) -> None:
        if call.requests_per_minute <= 0:
            return
        item = RateLimitItemPerMinute(call.requests_per_minute)
        while not await self._limiter.hit(item, call.inference_id):
            stats = await self._limiter.get_window_stats(item, call.inference_id)
            await asyncio.sleep(max(0.01, stats.reset_time - time.time()))

    async def _attempts(self, call: ProviderCall, send: Callable[[], Any], parse_error: ErrorParser) -> Any:
        """Run `send` under the rate limit and the retry policy; returns its successful response."""
        await self._guard.check(call.url)
        started = time.monotonic()
        attempt = 0
        while True:
            await self._wait_for_slot(call)
            failure: InferdError
            retry_after = None
            try:
                response = await send()
            except httpx.TransportError as exc:
                failure = self._transport_failure(call, exc)
            else:
                if response.is_success:
                    return response
                await response.aread()
                failure = upstream_error(call.inference_id, response, parse_error(response), call.describe)
                if not call.retryable(response):
                    raise failure
                retry_after = retry_after_seconds(response)
            delay = self._policy.delay(attempt, retry_after)
            attempt += 1
            if attempt > self._policy.max_retries or time.monotonic() - started + delay > self._policy.total_timeout:
                raise failure
            log.info("retrying %s for [%s] in %.2fs: %s", call.label, call.inference_id, delay, failure.reason)
            await asyncio.sleep(delay)

    def _transport_failure(self, call: ProviderCall, exc: httpx.TransportError) -> InferdError:
        if isinstance(exc, httpx.ConnectError) and "Name or service not known" in str(exc):
            return UpstreamError(f"Invalid host [{call.url}], please check that the URL is correct.")
        cause = str(exc) or type(exc).__name__
        return UpstreamError(f"Failed to send {call.label} request. Cause: {cause}")

    async def post_json(self, call: ProviderCall, parse_error: ErrorParser) -> Any:
        """POST a JSON body and return the decoded JSON answer."""

        async def send() -> httpx.Response:
            return await self.client.post(call.url, json=call.json, headers=dict(call.headers))

        response = await self._attempts(call, send, parse_error)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"Failed to send {call.label} request. Cause: the response is not valid JSON ({exc.msg})"
            ) from None

    @asynccontextmanager
    async def stream(self, call: ProviderCall, parse_error: ErrorParser) -> AsyncIterator[httpx.Response]:
        """POST and hold the streaming response open; retries happen only before the first byte."""
        responses: list[httpx.Response] = []

        async def send() -> httpx.Response:
            request = self.client.build_request("POST", call.url, json=call.json, headers=dict(call.headers))
            response = await self.client.send(request, stream=True)
            if not response.is_success:
                await response.aread()
                await response.aclose()
            else:
                responses.append(response)
            return response

        response = await self._attempts(call, send, parse_error)
        try:
            yield response
        finally:
            await response.aclose()
