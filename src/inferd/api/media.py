"""Media types as Elasticsearch negotiates them: compatible-with versions, body types, response type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from inferd.core.errors import InferdError, SimpleError, StatusError

CURRENT_MAJOR = 9
MINIMUM_COMPATIBLE_MAJOR = 8

# Types a form or a browser may send without a CORS preflight; ES refuses them as bodies.
_SAFELISTED = {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
_JSON_TYPES = {
    "application/json",
    "application/vnd.elasticsearch+json",
    "application/x-ndjson",
    "application/vnd.elasticsearch+x-ndjson",
}
_TOKEN = re.compile(r"^[\w.+*-]+/[\w.+*-]+$")


@dataclass(frozen=True)
class MediaType:
    raw: str
    mime: str  # lower-case type/subtype
    params: tuple[tuple[str, str], ...]  # lower-case names and values, in header order

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)

    @property
    def compatible_with(self) -> int | None:
        value = self.param("compatible-with")
        return int(value) if value is not None and value.isdigit() else None


# Clients send the same few header values on every request, and each request reads them up to five
# times (compatibility, body type, response type): each distinct value is parsed once. The results
# are immutable; the bound keeps odd values sent by a client from growing the cache.
@lru_cache(maxsize=256)
def parse_media_type(raw: str) -> MediaType | None:
    """Parse one header value; None when it is not a media type at all."""
    parts = [p.strip() for p in raw.split(";")]
    mime = parts[0].lower()
    if not _TOKEN.match(mime):
        return None
    params: dict[str, str] = {}
    for p in parts[1:]:
        if not p:
            continue
        key, sep, value = p.partition("=")
        if not sep:
            return None
        params[key.strip().lower()] = value.strip().strip('"').lower()
    return MediaType(raw=raw, mime=mime, params=tuple(params.items()))


class MediaTypeHeaderError(InferdError):
    status = 400
    es_type = "media_type_header_exception"


@lru_cache(maxsize=256)
def _first_accept(raw: str | None) -> MediaType | None:
    if not raw:
        return None
    for part in raw.split(","):
        parsed = parse_media_type(part)
        if parsed is not None:
            return parsed
    return None


def check_compatibility(accept: str | None, content_type: str | None, has_body: bool) -> None:
    """ES's compatible-with rules (RestCompatibleVersionHelper); an unversioned header counts as current."""
    accept_type = _first_accept(accept)
    body_type = parse_media_type(content_type) if content_type else None
    accept_declared = accept_type.compatible_with if accept_type else None
    body_declared = body_type.compatible_with if body_type else None
    accept_v = CURRENT_MAJOR if accept_declared is None else accept_declared
    body_v = CURRENT_MAJOR if body_declared is None else body_declared
    shown_accept = "null" if accept is None else accept
    shown_body = "null" if content_type is None else content_type
    problem = None
    if not MINIMUM_COMPATIBLE_MAJOR <= accept_v <= CURRENT_MAJOR:
        problem = (
            f"Accept version must be either version {CURRENT_MAJOR} or {MINIMUM_COMPATIBLE_MAJOR}, "
            f"but found {accept_v}. Accept={shown_accept}"
        )
    elif has_body and not MINIMUM_COMPATIBLE_MAJOR <= body_v <= CURRENT_MAJOR:
        problem = (
            f"Content-Type version must be either version {CURRENT_MAJOR} or {MINIMUM_COMPATIBLE_MAJOR}, "
            f"but found {body_v}. Content-Type={shown_body}"
        )
    elif has_body and accept_v != body_v:
        problem = (
            "A compatible version is required on both Content-Type and Accept headers if either one has "
            "requested a compatible version and the compatible versions must match. "
            f"Accept={shown_accept}, Content-Type={shown_body}"
        )
    elif has_body and (accept_declared is None) != (body_declared is None):
        problem = (
            "A compatible version is required on both Content-Type and Accept headers if either one has "
            f"requested a compatible version. Accept={shown_accept}, Content-Type={shown_body}"
        )
    if problem:
        raise MediaTypeHeaderError(
            "Invalid media-type value on headers [Accept, Content-Type]", caused_by=StatusError(problem)
        )


def check_body_content_type(content_type: str | None) -> None:
    """A body must be declared as JSON (or a compatible JSON type); ES answers 406 otherwise."""
    if content_type is None or not content_type.strip():
        raise SimpleError("Content-Type header is missing", status=406)
    parsed = parse_media_type(content_type)
    if parsed is None or parsed.mime in _SAFELISTED or parsed.mime not in _JSON_TYPES:
        raise SimpleError(f"Content-Type header [{content_type}] is not supported", status=406)


def response_content_type(accept: str | None, content_type: str | None) -> str:
    """Echo a requested compat type (Accept first, then Content-Type); plain JSON otherwise."""
    for candidate in (_first_accept(accept), parse_media_type(content_type) if content_type else None):
        if (
            candidate is not None
            and candidate.compatible_with is not None
            and candidate.mime.startswith("application/vnd.elasticsearch+")
        ):
            return f"application/vnd.elasticsearch+json;compatible-with={candidate.compatible_with}"
    return "application/json"
