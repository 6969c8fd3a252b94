"""ES wire conventions at the HTTP level: GET / and HEAD /, the product header, X-Opaque-Id, keep-alive,
gzip in both directions, the body size limit and the deprecation `Warning` header.

Expected values come from ES's RestMainAction / MainResponse, RestController and DefaultRestChannel
(see /tmp/research/rest.md sections 7, 8 and 10) and clients.md section 1.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import platform
import re
import socket
import time
from pathlib import Path
from typing import Any

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint
from tests.support.sample_service import SampleService
from tests.support.servers import RunningServer, ThreadedServer

PRODUCT = "Elasticsearch"

ROOT_KEYS = ["name", "cluster_name", "cluster_uuid", "version", "tagline"]
VERSION_KEYS = [
    "number",
    "build_flavor",
    "build_type",
    "build_hash",
    "build_date",
    "build_snapshot",
    "lucene_version",
    "minimum_wire_compatibility_version",
    "minimum_index_compatibility_version",
]


def _expected_pretty_root(info: dict[str, Any]) -> str:
    """GET / as Jackson's pretty printer writes it, built by hand from the parsed values."""

    def v(value: Any) -> str:
        return json.dumps(value)

    version = info["version"]
    lines = [
        "{",
        f'  "name" : {v(info["name"])},',
        f'  "cluster_name" : {v(info["cluster_name"])},',
        f'  "cluster_uuid" : {v(info["cluster_uuid"])},',
        '  "version" : {',
        *[f'    "{k}" : {v(version[k])}{"," if i < len(VERSION_KEYS) - 1 else ""}' for i, k in enumerate(VERSION_KEYS)],
        "  },",
        '  "tagline" : "You Know, for Search"',
        "}",
    ]
    return "\n".join(lines) + "\n"


def _absent(http: httpx.Client, inference_id: str) -> None:
    assert_es_error(
        http.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )


# -- GET / and HEAD / --------------------------------------------------------------------------------


def test_root_body_fields_and_nesting(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert list(info) == ROOT_KEYS
    assert list(info["version"]) == VERSION_KEYS
    assert re.fullmatch(r"9\.\d+\.\d+", info["version"]["number"]), info["version"]["number"]
    assert info["version"]["build_flavor"] == "default"
    assert info["version"]["build_snapshot"] is False
    assert info["tagline"] == "You Know, for Search"
    for key in ("name", "cluster_name", "cluster_uuid"):
        assert isinstance(info[key], str) and info[key], key
    for key in VERSION_KEYS:
        if key != "build_snapshot":
            assert isinstance(info["version"][key], str) and info["version"][key], key
    # The uuid identifies the cluster: it does not change from one request to the next.
    assert http.get("/").json()["cluster_uuid"] == info["cluster_uuid"]


def test_root_is_pretty_by_default(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.text == _expected_pretty_root(response.json())


@pytest.mark.parametrize("query", ["?pretty", "?pretty=true"])
def test_root_explicit_pretty_is_the_same_as_the_default(http: httpx.Client, query: str) -> None:
    default = http.get("/")
    explicit = http.get("/" + query)
    assert explicit.status_code == 200
    assert explicit.content == default.content


def test_root_pretty_false_is_compact(http: httpx.Client) -> None:
    pretty = http.get("/").json()
    response = http.get("/?pretty=false")
    assert response.status_code == 200
    assert response.content == json.dumps(pretty, separators=(",", ":")).encode()
    assert not response.content.endswith(b"\n")


def test_root_reports_the_configured_names_and_keeps_the_uuid_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ThreadedServer(data, node_name="wire-node-a", cluster_name="wire-cluster") as running, running.http() as c:
        first = c.get("/?pretty=false").json()
    assert first["name"] == "wire-node-a"
    assert first["cluster_name"] == "wire-cluster"
    with ThreadedServer(data, node_name="wire-node-b", cluster_name="wire-cluster") as running, running.http() as c:
        second = c.get("/").json()
    assert second["name"] == "wire-node-b"
    assert second["cluster_uuid"] == first["cluster_uuid"]


def test_head_root_has_no_body_and_the_get_content_length(http: httpx.Client) -> None:
    get = http.get("/")
    head = http.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(get.content)
    assert head.headers["content-type"] == "application/json"
    assert head.headers["x-elastic-product"] == PRODUCT


def test_head_root_content_length_follows_pretty_false(http: httpx.Client) -> None:
    compact = http.get("/?pretty=false")
    head = http.head("/?pretty=false")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(compact.content)
    assert len(compact.content) < len(http.get("/").content)


def test_clients_ping_and_info(es: elasticsearch.Elasticsearch, es8: elasticsearch8.Elasticsearch) -> None:
    assert es.ping() is True
    assert es8.ping() is True
    info = es.info()
    assert info["tagline"] == "You Know, for Search"
    assert info["version"]["number"].startswith("9.")
    assert es8.info()["cluster_uuid"] == info["cluster_uuid"]


def test_ping_is_false_without_credentials(server: RunningServer) -> None:
    client = elasticsearch.Elasticsearch(server.url, request_timeout=30)
    try:
        assert client.ping() is False
    finally:
        client.close()


# -- X-elastic-product ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("HEAD", "/", 200),
        ("GET", "/_inference", 200),
        ("GET", "/_inference/_services", 200),
        ("GET", "/_inference/wire-no-such-id", 404),
        ("GET", "/_no_such_route", 400),
        ("GET", "/_inference/x?foo=bar", 400),
        ("PATCH", "/_inference/x", 405),
        ("OPTIONS", "/_inference/x", 200),
    ],
)
def test_product_header_on_success_and_errors(http: httpx.Client, method: str, path: str, status: int) -> None:
    response = http.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers.get_list("x-elastic-product") == [PRODUCT]


def test_product_header_on_406(http: httpx.Client) -> None:
    response = http.put("/_inference/wire-406", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 406
    assert response.headers.get_list("x-elastic-product") == [PRODUCT]


def test_product_header_on_successful_put_and_delete(http: httpx.Client) -> None:
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}
    put = http.put("/_inference/text_embedding/wire-product", json=body)
    assert put.status_code == 200, put.text
    assert put.headers["x-elastic-product"] == PRODUCT
    delete = http.delete("/_inference/wire-product")
    assert delete.status_code == 200
    assert delete.headers["x-elastic-product"] == PRODUCT


@pytest.mark.parametrize("auth", [None, ("elastic", "wrong-password")])
def test_no_product_header_on_401(server: RunningServer, auth: tuple[str, str] | None) -> None:
    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        for method, path in (("GET", "/"), ("GET", "/_inference"), ("GET", "/_no_such_route"), ("HEAD", "/")):
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert "x-elastic-product" not in response.headers, (method, path)
            assert response.headers.get_list("www-authenticate") == [
                'Basic realm="security", charset="UTF-8"',
                "ApiKey",
            ]


# -- X-Opaque-Id ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/_inference/wire-no-such-id", 404),
        ("GET", "/_no_such_route", 400),
        ("PATCH", "/_inference/x", 405),
        ("GET", "/_inference/x?foo=bar", 400),
    ],
)
def test_opaque_id_is_echoed(http: httpx.Client, method: str, path: str, status: int) -> None:
    opaque = f"wire-opaque-{status}-{method.lower()}"
    response = http.request(method, path, headers={"X-Opaque-Id": opaque})
    assert response.status_code == status
    assert response.headers.get_list("x-opaque-id") == [opaque]


def test_opaque_id_is_echoed_on_401(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/_inference", headers={"X-Opaque-Id": "wire-opaque-401"})
    assert response.status_code == 401
    assert response.headers.get_list("x-opaque-id") == ["wire-opaque-401"]


def test_no_opaque_id_header_when_none_was_sent(http: httpx.Client) -> None:
    assert "x-opaque-id" not in http.get("/").headers


def test_client_opaque_id_round_trips(es: elasticsearch.Elasticsearch) -> None:
    response = es.options(opaque_id="wire-client-opaque").info()
    assert response.meta.headers["x-opaque-id"] == "wire-client-opaque"


# -- keep-alive --------------------------------------------------------------------------------------


def _local_address(response: httpx.Response) -> Any:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def test_keep_alive_serves_several_requests_on_one_connection(http: httpx.Client) -> None:
    responses = [
        http.get("/"),
        http.get("/_inference/wire-keepalive-missing"),
        http.get("/_no_such_route"),
        http.put("/_inference/wire-keepalive", content=b"{}", headers={"content-type": "text/plain"}),
        http.get("/_inference/_services"),
        http.head("/"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 400, 406, 200, 200]
    addresses = {_local_address(r) for r in responses}
    assert len(addresses) == 1, addresses
    for r in responses:
        assert r.http_version == "HTTP/1.1"
        assert r.headers.get("connection", "").lower() != "close"


# -- gzip --------------------------------------------------------------------------------------------


def test_gzip_request_body_is_accepted(http: httpx.Client) -> None:
    body = {"service": "test_service", "service_settings": {"model": "gz-model", "api_key": "k"}}
    response = http.put(
        "/_inference/text_embedding/wire-gzip-in",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["model"] == "gz-model"
    (endpoint,) = http.get("/_inference/wire-gzip-in").json()["endpoints"]
    assert endpoint["service_settings"]["model"] == "gz-model"


def test_client_with_http_compress_round_trips(server: RunningServer) -> None:
    client = elasticsearch.Elasticsearch(server.url, basic_auth=server.auth, http_compress=True, request_timeout=30)
    try:
        created = client.inference.put(
            inference_id="wire-compress",
            task_type="text_embedding",
            inference_config={"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}},
        )
        assert created["inference_id"] == "wire-compress"
        (endpoint,) = client.inference.get(inference_id="wire-compress")["endpoints"]
        assert endpoint["service_settings"]["model"] == "m1"
    finally:
        client.close()


def test_accept_encoding_gzip_gets_a_gzip_response(http: httpx.Client) -> None:
    with http.stream("GET", "/_inference/_services", headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["x-elastic-product"] == PRODUCT
    assert raw[:2] == b"\x1f\x8b"
    services = json.loads(gzip.decompress(raw))
    assert "test_service" in {s["service"] for s in services}


def test_identity_encoding_gets_a_plain_response(http: httpx.Client) -> None:
    with http.stream("GET", "/_inference/_services", headers={"accept-encoding": "identity"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    services = json.loads(raw)
    assert "test_service" in {s["service"] for s in services}


# -- body size limit ---------------------------------------------------------------------------------


def test_body_larger_than_max_content_length_is_413(tmp_path: Path) -> None:
    small = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "k"}}
    large = {"service": "test_service", "service_settings": {"model": "m" * 1200, "api_key": "k"}}
    assert len(json.dumps(small)) < 1000 < len(json.dumps(large))
    with (
        ThreadedServer(tmp_path / "data", extra_services=[SampleService], max_content_length=1000) as running,
        running.http() as client,
    ):
        too_large = client.put("/_inference/text_embedding/wire-large", json=large)
        assert too_large.status_code == 413, too_large.text
        _absent(client, "wire-large")
        ok = client.put("/_inference/text_embedding/wire-small", json=small)
        assert ok.status_code == 200, ok.text


def test_gzip_body_is_limited_after_decompression(tmp_path: Path) -> None:
    large = {"service": "test_service", "service_settings": {"model": "m" * 5000, "api_key": "k"}}
    compressed = gzip.compress(json.dumps(large).encode())
    assert len(compressed) < 1000
    with (
        ThreadedServer(tmp_path / "data", extra_services=[SampleService], max_content_length=1000) as running,
        running.http() as client,
    ):
        response = client.put(
            "/_inference/text_embedding/wire-gzip-large",
            content=compressed,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert response.status_code == 413, response.text
        _absent(client, "wire-gzip-large")


# -- Warning header ------------------------------------------------------------------------------------

WARNING = re.compile(r'299 Elasticsearch-(?P<version>[^ "]+)-inferd "(?P<text>(?:[^"\\]|\\.)*)"')


def _elser_default_model() -> str:
    linux_x86 = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")
    return ".elser_model_2_linux-x86_64" if linux_x86 else ".elser_model_2"


def test_elser_put_sends_warning_headers_in_es_format(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    response = http.put("/_inference/sparse_embedding/wire-elser-warn", json=body)
    assert response.status_code == 200, response.text
    values = response.headers.get_list("warning")
    assert len(values) == 2, values
    matches = [WARNING.fullmatch(v) for v in values]
    assert all(matches), values
    version = http.get("/").json()["version"]["number"]
    assert {m.group("version") for m in matches if m} == {version}
    assert version == "9.1.0"
    texts = {m.group("text") for m in matches if m}
    assert texts == {
        "The [elser] service is deprecated and will be removed in a future release. Use the [elasticsearch] "
        f"service instead, with [model_id] set to [{_elser_default_model()}] in the [service_settings]",
        "Putting elasticsearch service inference endpoints (including elser service) without a model_id field is "
        "deprecated and will be removed in a future release. Please specify a model_id field.",
    }


def test_no_warning_header_without_a_deprecation(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "wire-no-warn")
    assert "warning" not in http.get("/_inference/wire-no-warn").headers
    assert "warning" not in http.get("/").headers


def test_warnings_are_per_request(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    assert http.put("/_inference/sparse_embedding/wire-elser-once", json=body).status_code == 200
    # The next request on the same connection carries no leftover warning.
    follow_up = http.get("/_inference/wire-elser-once")
    assert follow_up.status_code == 200
    assert "warning" not in follow_up.headers


def test_client_raises_the_warning(es: elasticsearch.Elasticsearch) -> None:
    with pytest.warns(elasticsearch.ElasticsearchWarning) as record:
        es.inference.put(
            inference_id="wire-elser-client",
            task_type="sparse_embedding",
            inference_config={"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}},
        )
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2, messages
    assert messages[0].startswith("Putting elasticsearch service inference endpoints")
    assert messages[1].startswith("The [elser] service is deprecated")


def test_a_client_that_leaves_mid_body_is_no_server_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ThreadedServer(tmp_path / "data") as running:
        host, port = running.url.removeprefix("http://").split(":")
        token = base64.b64encode(":".join(running.auth or ("", "")).encode()).decode()
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /_inference/text_embedding/anything HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Basic " + token.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                b'{"input": "only the start'
            )
            time.sleep(0.3)  # the request is in the app, reading its body
        time.sleep(0.3)
        with running.http() as http:
            assert http.get("/").status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
