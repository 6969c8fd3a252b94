"""Routing as ES's RestController does it: unknown routes, wrong methods (405 + Allow), OPTIONS, and path
segments percent-decoded after splitting on '/'.

Sources: RestController.handleBadRequest / handleUnsupportedHttpMethod / handleOptionsRequest, RestUtils path
decoding (see /tmp/research/rest.md sections 1 and 2, and clients.md section 1 point 6).
"""

from __future__ import annotations

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint

BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}


def _raw(http: httpx.Client, method: str, raw_target: str) -> httpx.Response:
    """Send a request target exactly as written (no normalisation of '//' or percent escapes)."""
    request = http.build_request(method, "/")
    request.url = request.url.copy_with(raw_path=raw_target.encode("ascii"))
    return http.send(request)


def _not_found(response: httpx.Response, inference_id: str) -> None:
    assert_es_error(response, 404, "resource_not_found_exception", f"Inference endpoint not found [{inference_id}]")


# -- unknown routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/_foo?x=1"),
        ("GET", "/_foo"),
        ("POST", "/_cat/indices?format=json"),
        ("GET", "/_inference/a/b/c/d"),
        ("DELETE", "/_inference/a/b/c/d/e"),
        ("GET", "/_f%6Fo"),
    ],
)
def test_unknown_route_is_400_simple_body(http: httpx.Client, method: str, target: str) -> None:
    response = _raw(http, method, target)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    # ES's simple body, with the raw uri (query string included, escapes kept) and no `status` key.
    expected = f'{{"error":"no handler found for uri [{target}] and method [{method}]"}}'
    assert response.content == expected.encode()


def test_unknown_route_with_pretty(http: httpx.Client) -> None:
    response = http.get("/_foo?pretty")
    assert response.status_code == 400
    assert response.text == '{\n  "error" : "no handler found for uri [/_foo?pretty] and method [GET]"\n}\n'


# -- wrong method ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("PATCH", "/_inference/x?foo=1", ["GET", "POST", "PUT", "DELETE"]),
        ("PATCH", "/_inference/text_embedding/x", ["GET", "POST", "PUT", "DELETE"]),
        ("POST", "/_inference", ["GET"]),
        ("DELETE", "/", ["GET", "HEAD"]),
        ("PUT", "/", ["GET", "HEAD"]),
    ],
)
def test_wrong_method_is_405_with_allow(http: httpx.Client, method: str, target: str, allowed: list[str]) -> None:
    response = http.request(method, target)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == ",".join(allowed)
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.json() == {
        "error": f"Incorrect HTTP method for uri [{target}] and method [{method}], allowed: [{', '.join(allowed)}]",
        "status": 405,
    }


def test_wrong_method_does_not_touch_the_endpoint(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-405")
    response = http.patch("/_inference/wire-405", json={"service_settings": {"dimensions": 4}})
    assert response.status_code == 405
    (endpoint,) = http.get("/_inference/wire-405").json()["endpoints"]
    assert endpoint["service_settings"]["dimensions"] == 8


# -- OPTIONS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "allow"),
    [
        ("/_inference/x", "GET,POST,PUT,DELETE"),
        ("/_inference", "GET"),
        ("/", "GET,HEAD"),
    ],
)
def test_options_is_200_with_allow(http: httpx.Client, target: str, allow: str) -> None:
    response = http.options(target)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert response.headers["allow"] == allow
    assert response.headers["x-elastic-product"] == "Elasticsearch"


def test_options_on_an_unknown_path_is_200_without_allow(http: httpx.Client) -> None:
    response = http.options("/_no_such_route")
    assert response.status_code == 200
    assert response.content == b""
    assert "allow" not in response.headers


# -- path segments -----------------------------------------------------------------------------------------


def test_encoded_slash_stays_in_one_segment(http: httpx.Client) -> None:
    _not_found(http.get("/_inference/a%2Fb"), "a/b")


def test_encoded_slash_is_an_id_not_a_task_type(http: httpx.Client) -> None:
    # Decoding before splitting would turn this into a typed lookup of id `x`.
    make_embedding_endpoint(http, "wire-slash-x")
    _not_found(http.get("/_inference/text_embedding%2Fwire-slash-x"), "text_embedding/wire-slash-x")


def test_encoded_slash_reaches_put_as_one_id(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/a%2Fb", json=BODY)
    assert_es_error(
        response,
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: Invalid inference_id; 'a/b' can contain lowercase alphanumeric (a-z and 0-9), "
        "hyphens or underscores; must start and end with alphanumeric;",
    )
    _not_found(http.get("/_inference/a%2Fb"), "a/b")


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [("a%20b", "a b"), ("caf%C3%A9", "café"), ("a%2Cb%2Bc", "a,b+c"), ("%E6%97%A5%E6%9C%AC", "日本")],
)
def test_segments_are_percent_decoded(http: httpx.Client, encoded: str, decoded: str) -> None:
    _not_found(_raw(http, "GET", f"/_inference/{encoded}"), decoded)


def test_encoded_id_on_put_creates_the_decoded_id(http: httpx.Client) -> None:
    response = _raw_put(http, "/_inference/text_embedding/wire%2Dpct%5Fid")
    assert response.status_code == 200, response.text
    assert response.json()["inference_id"] == "wire-pct_id"
    (endpoint,) = http.get("/_inference/wire-pct_id").json()["endpoints"]
    assert endpoint["inference_id"] == "wire-pct_id"


def _raw_put(http: httpx.Client, raw_target: str) -> httpx.Response:
    request = http.build_request("PUT", "/", json=BODY)
    request.url = request.url.copy_with(raw_path=raw_target.encode("ascii"))
    return http.send(request)


def test_empty_segments_are_ignored(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-empty-seg")
    for target in (
        "//_inference//wire-empty-seg",
        "/_inference/wire-empty-seg/",
        "//_inference//text_embedding//wire-empty-seg//",
    ):
        response = _raw(http, "GET", target)
        assert response.status_code == 200, (target, response.text)
        (endpoint,) = response.json()["endpoints"]
        assert endpoint["inference_id"] == "wire-empty-seg"


def test_empty_segments_on_delete(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-empty-del")
    response = _raw(http, "DELETE", "/_inference//wire-empty-del")
    assert response.status_code == 200, response.text
    assert response.json() == {"acknowledged": True, "pipelines": [], "indexes": []}
    _not_found(http.get("/_inference/wire-empty-del"), "wire-empty-del")


def test_python_client_with_a_slash_in_the_id(es: elasticsearch.Elasticsearch) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as caught:
        es.inference.get(inference_id="a/b")
    assert caught.value.meta.status == 404
    assert caught.value.body["error"]["reason"] == "Inference endpoint not found [a/b]"
    assert caught.value.body["error"]["type"] == "resource_not_found_exception"


def test_python8_client_with_a_slash_in_the_id(es8: elasticsearch8.Elasticsearch) -> None:
    with pytest.raises(elasticsearch8.NotFoundError) as caught:
        es8.inference.get(inference_id="x/y z")
    assert caught.value.meta.status == 404
    assert caught.value.body["error"]["reason"] == "Inference endpoint not found [x/y z]"


def test_python_client_typed_delete_with_a_slash_in_the_id(es: elasticsearch.Elasticsearch) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as caught:
        es.inference.delete(inference_id="a/b", task_type="text_embedding")
    assert caught.value.body["error"]["reason"] == "Inference endpoint not found [a/b]"
