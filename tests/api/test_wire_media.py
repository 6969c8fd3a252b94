"""Request media types and bodies as ES reads them: compatible-with negotiation, the response Content-Type,
406 for non-JSON bodies, and the errors for a missing, malformed or non-object body.

Sources: RestController.dispatchRequest, RestCompatibleVersionHelper, RestRequest.requiredContent,
JsonXContentParser and ObjectParser (see /tmp/research/rest.md sections 4 and 5).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error

COMPAT_9 = "application/vnd.elasticsearch+json; compatible-with=9"
COMPAT_8 = "application/vnd.elasticsearch+json; compatible-with=8"
COMPAT_7 = "application/vnd.elasticsearch+json; compatible-with=7"
INVALID_MEDIA = "Invalid media-type value on headers [Accept, Content-Type]"
BOTH = "A compatible version is required on both Content-Type and Accept headers if either one has requested a "
MUST_MATCH = BOTH + "compatible version and the compatible versions must match. Accept={}, Content-Type={}"
ONLY_ONE = BOTH + "compatible version. Accept={}, Content-Type={}"

BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}
BODY_BYTES = b'{"service":"test_service","service_settings":{"model":"m1","api_key":"k"}}'


def _absent(http: httpx.Client, inference_id: str) -> None:
    assert_es_error(
        http.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )


def _send(
    http: httpx.Client, method: str, path: str, headers: dict[str, str | None], content: bytes | None = None
) -> httpx.Response:
    """A request with exactly these headers: a None value removes a header httpx would add (Accept: */*)."""
    request = http.build_request(method, path, content=content)
    for name, value in headers.items():
        if value is None:
            if name in request.headers:
                del request.headers[name]
        else:
            request.headers[name] = value
    return http.send(request)


def _media_error(response: httpx.Response, cause: str) -> dict[str, Any]:
    error = assert_es_error(response, 400, "media_type_header_exception", INVALID_MEDIA)
    assert error["caused_by"] == {"type": "status_exception", "reason": cause}
    assert "caused_by" not in error["root_cause"][0]
    return error


# -- accepted media types and the response Content-Type ---------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (COMPAT_9, "application/vnd.elasticsearch+json;compatible-with=9"),
        (COMPAT_8, "application/vnd.elasticsearch+json;compatible-with=8"),
        (
            "application/vnd.elasticsearch+json;compatible-with=9",
            "application/vnd.elasticsearch+json;compatible-with=9",
        ),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
    ],
)
def test_get_response_content_type_follows_accept(http: httpx.Client, accept: str | None, expected: str) -> None:
    response = _send(http, "GET", "/_inference/_all", {"accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == expected
    assert isinstance(response.json()["endpoints"], list)


@pytest.mark.parametrize(
    ("inference_id", "accept", "content_type", "expected"),
    [
        ("wire-media-c9", COMPAT_9, COMPAT_9, "application/vnd.elasticsearch+json;compatible-with=9"),
        ("wire-media-c8", COMPAT_8, COMPAT_8, "application/vnd.elasticsearch+json;compatible-with=8"),
        ("wire-media-json", "application/json", "application/json", "application/json"),
        ("wire-media-charset", "application/json", "application/json; charset=UTF-8", "application/json"),
        ("wire-media-any", "*/*", "application/json", "application/json"),
    ],
)
def test_put_accepts_json_and_compat_bodies(
    http: httpx.Client, inference_id: str, accept: str, content_type: str, expected: str
) -> None:
    response = _send(
        http,
        "PUT",
        f"/_inference/text_embedding/{inference_id}",
        {"accept": accept, "content-type": content_type},
        BODY_BYTES,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == expected
    assert response.json()["inference_id"] == inference_id
    assert http.get(f"/_inference/{inference_id}").status_code == 200


def test_error_response_echoes_the_compat_type(http: httpx.Client) -> None:
    response = _send(http, "GET", "/_inference/wire-media-missing", {"accept": COMPAT_9})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    assert response.json()["error"]["type"] == "resource_not_found_exception"


def test_without_body_only_accept_is_checked(http: httpx.Client) -> None:
    # A Content-Type on a bodyless GET (Ruby 9 always sends one) does not take part in the version check.
    response = _send(http, "GET", "/_inference/_all", {"accept": COMPAT_8, "content-type": COMPAT_9})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=8"


# -- compatible-with errors ----------------------------------------------------------------------------


def test_accept_compatible_with_7_is_refused(http: httpx.Client) -> None:
    response = _send(http, "GET", "/_inference/_all", {"accept": COMPAT_7})
    _media_error(response, f"Accept version must be either version 9 or 8, but found 7. Accept={COMPAT_7}")


def test_refused_compat_headers_do_not_shape_the_response(http: httpx.Client) -> None:
    # ES strips the failing Accept/Content-Type headers before building the error, so the reply is plain JSON.
    response = _send(http, "GET", "/_inference/_all", {"accept": COMPAT_7})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"


def test_content_type_compatible_with_7_is_refused(http: httpx.Client) -> None:
    response = _send(
        http, "PUT", "/_inference/text_embedding/wire-media-ct7", {"accept": COMPAT_9, "content-type": COMPAT_7}, b"{}"
    )
    _media_error(response, f"Content-Type version must be either version 9 or 8, but found 7. Content-Type={COMPAT_7}")
    _absent(http, "wire-media-ct7")


@pytest.mark.parametrize(("accept", "content_type"), [(COMPAT_8, COMPAT_9), (COMPAT_9, COMPAT_8)])
def test_mismatched_compat_versions_are_refused(http: httpx.Client, accept: str, content_type: str) -> None:
    response = _send(
        http,
        "PUT",
        "/_inference/text_embedding/wire-media-mismatch",
        {"accept": accept, "content-type": content_type},
        BODY_BYTES,
    )
    _media_error(response, MUST_MATCH.format(accept, content_type))
    _absent(http, "wire-media-mismatch")


def test_compat_accept_with_plain_json_body_is_a_version_mismatch(http: httpx.Client) -> None:
    # An unversioned header counts as the current version (9), so 8 vs plain JSON fails the "must match" rule,
    # which ES checks before the "both or none" rule.
    response = _send(
        http,
        "PUT",
        "/_inference/text_embedding/wire-media-8json",
        {"accept": COMPAT_8, "content-type": "application/json"},
        BODY_BYTES,
    )
    _media_error(response, MUST_MATCH.format(COMPAT_8, "application/json"))
    _absent(http, "wire-media-8json")


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [("application/json", COMPAT_9), (COMPAT_9, "application/json"), ("*/*", COMPAT_9)],
)
def test_compat_version_on_one_header_only_is_refused(http: httpx.Client, accept: str, content_type: str) -> None:
    response = _send(
        http,
        "PUT",
        "/_inference/text_embedding/wire-media-one",
        {"accept": accept, "content-type": content_type},
        BODY_BYTES,
    )
    _media_error(response, ONLY_ONE.format(accept, content_type))
    _absent(http, "wire-media-one")


def test_compat_body_without_accept_is_refused(http: httpx.Client) -> None:
    # A missing header is printed as `null` by ES's message formatter.
    response = _send(
        http,
        "PUT",
        "/_inference/text_embedding/wire-media-noaccept",
        {"accept": None, "content-type": COMPAT_9},
        BODY_BYTES,
    )
    _media_error(response, ONLY_ONE.format("null", COMPAT_9))
    _absent(http, "wire-media-noaccept")


# -- 406: a body that is not JSON ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=UTF-8", "application/x-www-form-urlencoded", "text/html"]
)
def test_non_json_body_is_406(http: httpx.Client, content_type: str) -> None:
    response = _send(
        http, "PUT", "/_inference/text_embedding/wire-media-406", {"content-type": content_type}, BODY_BYTES
    )
    assert response.status_code == 406
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": f"Content-Type header [{content_type}] is not supported", "status": 406}
    _absent(http, "wire-media-406")


def test_text_plain_body_exact_bytes(http: httpx.Client) -> None:
    response = _send(http, "PUT", "/_inference/text_embedding/wire-media-406b", {"content-type": "text/plain"}, b"{}")
    assert response.status_code == 406
    assert response.content == b'{"error":"Content-Type header [text/plain] is not supported","status":406}'


def test_body_without_content_type_is_406(http: httpx.Client) -> None:
    response = _send(http, "PUT", "/_inference/text_embedding/wire-media-noct", {"content-type": None}, BODY_BYTES)
    assert response.status_code == 406
    assert response.content == b'{"error":"Content-Type header is missing","status":406}'
    _absent(http, "wire-media-noct")


# -- missing / malformed bodies ------------------------------------------------------------------------


def test_put_without_body_is_parse_exception(http: httpx.Client) -> None:
    response = _send(http, "PUT", "/_inference/text_embedding/wire-nobody", {"content-type": "application/json"})
    error = assert_es_error(response, 400, "parse_exception", "request body is required")
    assert "caused_by" not in error
    _absent(http, "wire-nobody")


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (b"{", 1),
        (b'{"service": "test_service",}', 1),
        (b'{"service" "test_service"}', 1),
        (b'{\n  "service": "test_service",\n  oops\n}', 3),
        (b"not json", 1),
    ],
)
def test_invalid_json_is_x_content_parse_exception(http: httpx.Client, raw: bytes, line: int) -> None:
    response = _send(http, "PUT", "/_inference/text_embedding/wire-badjson", {"content-type": "application/json"}, raw)
    error = assert_es_error(response, 400, "x_content_parse_exception")
    match = re.fullmatch(r"\[(\d+):(\d+)\] (.+)", error["reason"], flags=re.DOTALL)
    assert match, error["reason"]
    assert int(match.group(1)) == line
    assert int(match.group(2)) >= 1
    # The parser's own message sits in caused_by; the reason is that message behind the location prefix.
    assert error["caused_by"]["type"] == "json_parse_exception"
    assert error["caused_by"]["reason"] == match.group(3)
    assert len(error["root_cause"]) == 1
    assert "caused_by" not in error["root_cause"][0]
    _absent(http, "wire-badjson")


def test_json_array_body_on_put_is_x_content_parse_exception(http: httpx.Client) -> None:
    response = _send(
        http, "PUT", "/_inference/text_embedding/wire-array", {"content-type": "application/json"}, b'[{"a":1}]'
    )
    error = assert_es_error(response, 400, "x_content_parse_exception")
    assert re.fullmatch(r"\[1:1\] (\[[^\]]+\] )?Expected START_OBJECT but was: START_ARRAY", error["reason"])
    _absent(http, "wire-array")


@pytest.mark.parametrize(
    ("raw", "token"), [(b'["a"]', "START_ARRAY"), (b'"a"', "VALUE_STRING"), (b"5", "VALUE_NUMBER")]
)
def test_non_object_body_on_inference_names_the_parser(http: httpx.Client, raw: bytes, token: str) -> None:
    # Perform-inference bodies go through ES's ObjectParser named cluster:internal/xpack/inference (8.18+).
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}
    assert http.put("/_inference/text_embedding/wire-array-inf", json=body).status_code == 200
    response = _send(http, "POST", "/_inference/wire-array-inf", {"content-type": "application/json"}, raw)
    assert_es_error(
        response,
        400,
        "x_content_parse_exception",
        f"[1:1] [cluster:internal/xpack/inference] Expected START_OBJECT but was: {token}",
    )
