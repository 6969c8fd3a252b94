"""A first pass through the real server: the seed example round-trips."""

from __future__ import annotations

import httpx

from tests.conftest import assert_es_error


def test_seed_example_round_trips(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    put = http.put("/_inference/sparse_embedding/my-elser-model", json=body)
    assert put.status_code == 200, put.text
    got = http.get("/_inference/sparse_embedding/my-elser-model")
    assert got.status_code == 200
    (endpoint,) = got.json()["endpoints"]
    assert endpoint["inference_id"] == "my-elser-model"
    assert endpoint["task_type"] == "sparse_embedding"
    assert endpoint["service"] == "elser"
    assert endpoint["service_settings"]["num_allocations"] == 1
    assert endpoint["service_settings"]["num_threads"] == 1
    assert put.json() == endpoint


def test_missing_endpoint_is_404(http: httpx.Client) -> None:
    assert_es_error(
        http.get("/_inference/nope"), 404, "resource_not_found_exception", "Inference endpoint not found [nope]"
    )
