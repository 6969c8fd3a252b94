"""Query parameters every ES route shares: ?pretty, ?filter_path, ?error_trace, refusal of unknown
parameters, booleans, and the `timeout` time value.

Sources: JsonXContentGenerator/DefaultPrettyPrinter, FilterPath, ElasticsearchException.generateFailureXContent,
BaseRestHandler.unrecognized, TimeValue.parseTimeValue (see /tmp/research/rest.md sections 3 and 6, and
/tmp/research/inference.md section 7).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint
from tests.support.servers import RunningServer

BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}


def _absent(http: httpx.Client, inference_id: str) -> None:
    assert_es_error(
        http.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )


def _only_endpoint(http: httpx.Client, inference_id: str, query: str) -> Any:
    response = http.get(f"/_inference/{inference_id}?{query}")
    assert response.status_code == 200, response.text
    return response.json()


# -- ?pretty ---------------------------------------------------------------------------------------------


def test_pretty_exact_bytes_with_empty_arrays(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-pretty-del")
    response = http.delete("/_inference/wire-pretty-del?pretty")
    assert response.status_code == 200
    assert response.text == '{\n  "acknowledged" : true,\n  "pipelines" : [ ],\n  "indexes" : [ ]\n}\n'


def test_pretty_exact_bytes_nested_objects_in_an_array(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-pretty-1")
    response = http.get(
        "/_inference/wire-pretty-1?pretty&filter_path=endpoints.inference_id,endpoints.service_settings.rate_limit"
    )
    assert response.status_code == 200
    assert response.text == (
        "{\n"
        '  "endpoints" : [\n'
        "    {\n"
        '      "inference_id" : "wire-pretty-1",\n'
        '      "service_settings" : {\n'
        '        "rate_limit" : {\n'
        '          "requests_per_minute" : 3000\n'
        "        }\n"
        "      }\n"
        "    }\n"
        "  ]\n"
        "}\n"
    )


def test_pretty_applies_to_errors(http: httpx.Client) -> None:
    response = http.get("/_inference/wire-pretty-missing?pretty")
    assert response.status_code == 404
    reason = "Inference endpoint not found [wire-pretty-missing]"
    assert response.text == (
        "{\n"
        '  "error" : {\n'
        '    "root_cause" : [\n'
        "      {\n"
        '        "type" : "resource_not_found_exception",\n'
        f'        "reason" : "{reason}"\n'
        "      }\n"
        "    ],\n"
        '    "type" : "resource_not_found_exception",\n'
        f'    "reason" : "{reason}"\n'
        "  },\n"
        '  "status" : 404\n'
        "}\n"
    )


def test_pretty_escapes_strings_like_json(http: httpx.Client) -> None:
    response = http.get('/_inference/a"b?pretty')
    assert response.status_code == 404
    assert '    "reason" : "Inference endpoint not found [a\\"b]"\n' in response.text


def test_pretty_true_and_empty_value_are_the_same(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-pretty-2")
    bare = http.get("/_inference/wire-pretty-2?pretty")
    explicit = http.get("/_inference/wire-pretty-2?pretty=true")
    assert bare.status_code == explicit.status_code == 200
    assert bare.content == explicit.content
    assert bare.content.endswith(b"}\n")


@pytest.mark.parametrize("query", ["", "?pretty=false"])
def test_not_pretty_is_compact_without_newline(http: httpx.Client, query: str) -> None:
    make_embedding_endpoint(http, "wire-compact")
    response = http.get("/_inference/wire-compact" + query)
    assert response.status_code == 200
    assert b"\n" not in response.content
    assert b" : " not in response.content
    assert response.content.startswith(b'{"endpoints":[{"inference_id":"wire-compact",')


def test_invalid_boolean_for_pretty_is_400(http: httpx.Client) -> None:
    response = http.get("/_inference/_all?pretty=yes")
    error = assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "Failed to parse value [yes] as only [true] or [false] are allowed.",
    )
    assert "caused_by" not in error


def test_invalid_boolean_for_pretty_on_put_creates_nothing(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/wire-pretty-bad?pretty=1", json=BODY)
    assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "Failed to parse value [1] as only [true] or [false] are allowed.",
    )
    _absent(http, "wire-pretty-bad")


# -- ?filter_path ----------------------------------------------------------------------------------------


def test_filter_path_include_one_field(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-1")
    body = _only_endpoint(http, "wire-fp-1", "filter_path=endpoints.inference_id")
    assert body == {"endpoints": [{"inference_id": "wire-fp-1"}]}


def test_filter_path_several_includes(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-2")
    body = _only_endpoint(http, "wire-fp-2", "filter_path=endpoints.inference_id,endpoints.task_type")
    assert body == {"endpoints": [{"inference_id": "wire-fp-2", "task_type": "text_embedding"}]}


def test_filter_path_glob_inside_a_segment(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-3")
    (full,) = http.get("/_inference/wire-fp-3").json()["endpoints"]
    body = _only_endpoint(http, "wire-fp-3", "filter_path=endpoints.service*")
    assert body == {"endpoints": [{"service": "test_service", "service_settings": full["service_settings"]}]}
    # `*` matches within one segment only: it does not reach the nested keys.
    assert _only_endpoint(http, "wire-fp-3", "filter_path=*.model") == {}


def test_filter_path_double_star_matches_any_depth(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-4")
    body = _only_endpoint(http, "wire-fp-4", "filter_path=**.requests_per_minute")
    assert body == {"endpoints": [{"service_settings": {"rate_limit": {"requests_per_minute": 3000}}}]}


def test_filter_path_excludes(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-5")
    body = _only_endpoint(
        http,
        "wire-fp-5",
        "filter_path=-endpoints.service_settings,-endpoints.task_settings,-endpoints.chunking_settings",
    )
    assert body == {
        "endpoints": [{"inference_id": "wire-fp-5", "task_type": "text_embedding", "service": "test_service"}]
    }


def test_filter_path_mixed_include_and_exclude(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-6", dimensions=16)
    body = _only_endpoint(http, "wire-fp-6", "filter_path=endpoints.service_settings,-**.rate_limit")
    assert body == {"endpoints": [{"service_settings": {"model": "m1", "dimensions": 16}}]}


def test_filter_path_on_a_list(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-7")
    response = http.get("/_inference/_all?filter_path=endpoints.inference_id")
    assert response.status_code == 200
    endpoints = response.json()["endpoints"]
    assert {"inference_id": "wire-fp-7"} in endpoints
    assert all(list(ep) == ["inference_id"] for ep in endpoints)


def test_filter_path_that_matches_nothing_gives_an_empty_object(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-fp-8")
    response = http.get("/_inference/wire-fp-8?filter_path=no_such_field")
    assert response.status_code == 200
    assert response.content == b"{}"
    pretty = http.get("/_inference/wire-fp-8?filter_path=no_such_field&pretty")
    assert pretty.status_code == 200
    assert pretty.text == "{ }\n"


def test_filter_path_is_not_applied_to_errors(http: httpx.Client) -> None:
    response = http.get("/_inference/wire-fp-missing?filter_path=status")
    assert_es_error(response, 404, "resource_not_found_exception", "Inference endpoint not found [wire-fp-missing]")
    assert list(response.json()) == ["error", "status"]


def test_filter_path_on_root(http: httpx.Client) -> None:
    response = http.get("/?filter_path=version.number,tagline&pretty=false")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["version", "tagline"]
    assert list(body["version"]) == ["number"]
    assert body["version"]["number"].startswith("9.")


# -- ?error_trace ----------------------------------------------------------------------------------------


def test_error_trace_adds_stack_traces(http: httpx.Client) -> None:
    response = http.get("/_inference/wire-trace-missing?error_trace=true")
    error = assert_es_error(
        response, 404, "resource_not_found_exception", "Inference endpoint not found [wire-trace-missing]"
    )
    assert isinstance(error["stack_trace"], str) and error["stack_trace"].strip()
    assert isinstance(error["root_cause"][0]["stack_trace"], str) and error["root_cause"][0]["stack_trace"].strip()
    assert list(error)[-1] == "stack_trace"


def test_error_trace_reaches_caused_by(http: httpx.Client) -> None:
    response = http.put(
        "/_inference/text_embedding/wire-trace-json?error_trace",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    error = assert_es_error(response, 400, "x_content_parse_exception")
    assert error["stack_trace"].strip()
    assert error["caused_by"]["type"] == "json_parse_exception"
    assert error["caused_by"]["stack_trace"].strip()
    _absent(http, "wire-trace-json")


@pytest.mark.parametrize("query", ["", "?error_trace=false"])
def test_no_stack_trace_without_error_trace(http: httpx.Client, query: str) -> None:
    response = http.get("/_inference/wire-trace-none" + query)
    assert response.status_code == 404
    assert "stack_trace" not in response.text


@pytest.mark.parametrize("auth", [None, ("elastic", "wrong-password")])
def test_error_trace_is_ignored_for_401(server: RunningServer, auth: tuple[str, str] | None) -> None:
    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        response = client.get("/_inference?error_trace=true")
    error = assert_es_error(response, 401, "security_exception")
    assert "stack_trace" not in response.text
    assert error["reason"].endswith("for REST request [/_inference?error_trace=true]")


def test_error_trace_does_not_change_a_success(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-trace-ok")
    plain = http.get("/_inference/wire-trace-ok")
    traced = http.get("/_inference/wire-trace-ok?error_trace=true")
    assert traced.status_code == 200
    assert traced.content == plain.content


# -- unknown parameters ----------------------------------------------------------------------------------


def test_unknown_parameter_is_refused(http: httpx.Client) -> None:
    response = http.get("/_inference/x?foo=bar")
    assert_es_error(
        response, 400, "illegal_argument_exception", "request [/_inference/x] contains unrecognized parameter: [foo]"
    )


def test_unknown_parameter_on_put_suggests_timeout_and_creates_nothing(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/wire-param-put?timout=30s", json=BODY)
    assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "request [/_inference/text_embedding/wire-param-put] contains unrecognized parameter: "
        "[timout] -> did you mean [timeout]?",
    )
    _absent(http, "wire-param-put")


def test_typo_of_a_common_parameter_is_suggested(http: httpx.Client) -> None:
    response = http.get("/_inference/x?prety")
    assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "request [/_inference/x] contains unrecognized parameter: [prety] -> did you mean [pretty]?",
    )


def test_several_unknown_parameters_are_listed_one_bracket_each(http: httpx.Client) -> None:
    response = http.get("/_inference/x?b=1&a=2")
    assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "request [/_inference/x] contains unrecognized parameters: [a], [b]",
    )


def test_unknown_parameter_message_uses_the_decoded_path(http: httpx.Client) -> None:
    response = http.get("/_inference/caf%C3%A9?foo=1")
    assert_es_error(
        response, 400, "illegal_argument_exception", "request [/_inference/café] contains unrecognized parameter: [foo]"
    )


@pytest.mark.parametrize("query", ["pretty", "human", "error_trace=false", "filter_path=endpoints", "timeout=30s"])
def test_known_parameters_are_accepted_on_put(http: httpx.Client, query: str) -> None:
    inference_id = "wire-param-ok-" + query.split("=")[0].replace("_", "-")
    response = http.put(f"/_inference/text_embedding/{inference_id}?{query}", json=BODY)
    assert response.status_code == 200, response.text
    assert http.get(f"/_inference/{inference_id}").status_code == 200


# -- ?timeout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized"),
        ("10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized"),
        ("5x", "failed to parse setting [timeout] with value [5x] as a time value: unit is missing or unrecognized"),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        (
            "-5s",
            "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported",
        ),
        ("xs", "failed to parse [xs]"),
    ],
)
def test_invalid_timeout_on_put(http: httpx.Client, value: str, reason: str) -> None:
    response = http.put(f"/_inference/text_embedding/wire-timeout?timeout={value}", json=BODY)
    assert_es_error(response, 400, "illegal_argument_exception", reason)
    _absent(http, "wire-timeout")


@pytest.mark.parametrize(("value", "number"), [("1.5s", "1.5"), ("xs", "x")])
def test_unparsable_timeout_number_has_the_number_format_cause(http: httpx.Client, value: str, number: str) -> None:
    # TimeValue.parse wraps Java's NumberFormatException, which ES renders as caused_by.
    response = http.put(f"/_inference/text_embedding/wire-timeout-nfe?timeout={value}", json=BODY)
    error = assert_es_error(response, 400, "illegal_argument_exception")
    assert error.get("caused_by") == {"type": "number_format_exception", "reason": f'For input string: "{number}"'}
    _absent(http, "wire-timeout-nfe")


@pytest.mark.parametrize("value", ["30s", "1m", "500ms", "-1", "0", "2h"])
def test_valid_timeouts_on_put(http: httpx.Client, value: str) -> None:
    response = http.put("/_inference/text_embedding/wire-timeout-ok?timeout=" + value, json=BODY)
    assert response.status_code == 200, response.text
    assert http.get("/_inference/wire-timeout-ok").status_code == 200
    assert http.delete("/_inference/wire-timeout-ok").status_code == 200
