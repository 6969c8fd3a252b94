"""The one exception tree. Every error a client can see is an `InferdError`.

Each error carries what Elasticsearch puts on the wire: an exception `type` in snake case, a
`reason`, the HTTP status, an optional cause and optional response headers. The API layer renders
them in one place (`inferd.api.errors`); nothing else builds an error body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class InferdError(Exception):
    """Base of every error that reaches a client with a defined status and ES type."""

    status: int = 500
    es_type: str = "exception"
    # ES also writes some headers into the error body ("header": {...}), e.g. WWW-Authenticate.
    headers_in_body: bool = False

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        es_type: str | None = None,
        caused_by: InferdError | None = None,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if es_type is not None:
            self.es_type = es_type
        self.caused_by = caused_by
        self.headers: dict[str, list[str]] = {
            k: [v] if isinstance(v, str) else list(v) for k, v in (headers or {}).items()
        }
        # Extra keys ES puts next to type/reason (e.g. "header" for security exceptions).
        self.extra: dict[str, object] = dict(extra or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.es_type!r}, {self.reason!r})"


class RequestError(InferdError):
    """The client sent something we cannot act on (4xx)."""

    status = 400
    es_type = "illegal_argument_exception"


class IllegalArgument(RequestError):
    status = 400
    es_type = "illegal_argument_exception"


class ValidationError(RequestError):
    """One or more validation problems, rendered as ES's numbered list.

    `action_request_validation_exception` for request-level checks, `validation_exception` for
    settings parsing; both render "Validation Failed: 1: a;2: b;".
    """

    status = 400
    es_type = "validation_exception"

    def __init__(self, problems: Iterable[str], *, es_type: str | None = None) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("a ValidationError needs at least one problem")
        numbered = "".join(f"{i}: {p};" for i, p in enumerate(self.problems, start=1))
        super().__init__(f"Validation Failed: {numbered}", es_type=es_type)


class ActionRequestValidationError(ValidationError):
    es_type = "action_request_validation_exception"


class ParseError(RequestError):
    """A body or parameter that could not be parsed."""

    status = 400
    es_type = "parse_exception"


class XContentParseError(ParseError):
    es_type = "x_content_parse_exception"


class NotFound(RequestError):
    status = 404
    es_type = "resource_not_found_exception"


class AlreadyExists(RequestError):
    status = 400
    es_type = "resource_already_exists_exception"


class StatusError(RequestError):
    """ES's ElasticsearchStatusException: a message with any status."""

    status = 400
    es_type = "status_exception"


class AuthenticationError(RequestError):
    status = 401
    es_type = "security_exception"
    headers_in_body = True


class AuthorizationError(RequestError):
    status = 403
    es_type = "security_exception"


class Overloaded(RequestError):
    status = 429
    es_type = "es_rejected_execution_exception"


class SimpleError(InferdError):
    """Errors ES answers with its simple body, {"error": "<reason>", "status": N}, not the envelope.

    Used by ES's HTTP layer for unknown routes (which even leave out "status"), wrong methods and
    unsupported Content-Types.
    """

    def __init__(self, reason: str, *, status: int, include_status: bool = True, **kwargs: object) -> None:
        super().__init__(reason, status=status, es_type="simple", **kwargs)  # type: ignore[arg-type]
        self.include_status = include_status


class UpstreamError(InferdError):
    """A third-party provider failed; the status follows ES's pass-through rule."""

    status = 400
    es_type = "status_exception"


class EngineError(InferdError):
    """A local model failed at run time: the only deliberate 5xx, always with a reason."""

    status = 500
    es_type = "status_exception"


class InferenceTimeout(InferdError):
    status = 408
    es_type = "status_exception"
