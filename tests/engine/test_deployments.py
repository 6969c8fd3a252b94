"""Deployments with ES semantics, on the weightless engine, through the real server.

Batching, the bounded queue, allocations and their thread budget, adaptive scaling to zero and
back, resizing by `_update`, shared deployments, lazy default endpoints, failures. Real models are
covered by the `models`-marked suites.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferd.engine.catalog import ELSER_V2, platform_default
from inferd.engine.engine import Engine
from tests.conftest import assert_es_error
from tests.support.fake_models import Recorder, fake_engine, vector
from tests.support.processes import wait_for
from tests.support.servers import RunningServer, ThreadedServer

E5 = ".multilingual-e5-small"
ELSER = platform_default(ELSER_V2)  # what the elser service deploys by default here
ELSER_BODY = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}


def es_body(model_id: str = E5, **settings: Any) -> dict[str, Any]:
    service_settings: dict[str, Any] = {"model_id": model_id, "num_threads": 1}
    service_settings.update(settings)
    if "adaptive_allocations" not in service_settings:
        service_settings.setdefault("num_allocations", 1)
    return {"service": "elasticsearch", "service_settings": service_settings}


class Node:
    def __init__(self, running: RunningServer, engine: Engine, recorder: Recorder) -> None:
        self.running = running
        self.engine = engine
        self.recorder = recorder

    def allocations(self, deployment_id: str) -> int:
        deployment = self.engine.find(deployment_id)
        return 0 if deployment is None else deployment.num_allocations


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Node]:
    """A server on the weightless engine: 4 threads and a 4-request queue (64 for tests marked `roomy`)."""
    max_queue = getattr(request, "param", 4)
    recorder = Recorder()
    engine = fake_engine(tmp_path / "models", recorder, threads=4, idle_seconds=0.5, max_queue=max_queue)
    with ThreadedServer(tmp_path, engine=engine) as running:
        yield Node(running, engine, recorder)


roomy = pytest.mark.parametrize("node", [64], indirect=True)


@pytest.fixture
def client(node: Node) -> Iterator[httpx.Client]:
    with node.running.http() as http:
        yield http


def test_put_deploys_and_delete_stops(node: Node, client: httpx.Client) -> None:
    assert client.put("/_inference/text_embedding/e1", json=es_body(num_allocations=2)).status_code == 200
    assert node.allocations("e1") == 2
    assert node.recorder.loads == [(E5, 1), (E5, 1)]
    assert client.delete("/_inference/e1").status_code == 200
    assert node.engine.find("e1") is None
    assert node.recorder.closes == [E5, E5]


@roomy
def test_concurrent_requests_are_batched_and_each_gets_its_own_result(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body())
    node.recorder.delay = 0.05
    texts = [f"text number {i}" for i in range(32)]

    def embed(text: str) -> list[float]:
        with node.running.http() as http:
            response = http.post("/_inference/text_embedding/e1", json={"input": text})
            assert response.status_code == 200, response.text
            return list(response.json()["text_embedding"][0]["embedding"])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(embed, texts))
    assert results == [vector("passage: " + t) for t in texts]
    sizes = [size for model, size in node.recorder.batches if model == E5]
    assert sum(sizes) == 32
    assert max(sizes) > 1, sizes  # requests waiting together went into one batch


def test_a_full_queue_answers_429_at_once(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body())
    node.recorder.delay = 0.5

    def embed(i: int) -> httpx.Response:
        with node.running.http() as http:
            return http.post("/_inference/text_embedding/e1", json={"input": f"text {i}"})

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(embed, range(12)))
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert all(r.status_code in (200, 429) for r in responses)
    error = assert_es_error(refused[0], 429, "es_rejected_execution_exception")
    assert error["reason"] == (
        "rejected execution of inference request on deployment [e1]: the queue is full ([4] requests waiting)"
    )
    assert refused[0].headers["retry-after"] == "1"


def test_a_failed_batch_answers_every_caller_and_the_server_stays_up(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body())
    error = assert_es_error(
        client.post("/_inference/text_embedding/e1", json={"input": ["fine", "explode now"]}), 500, "status_exception"
    )
    assert error["reason"] == f"model [{E5}] failed: the fake model exploded"
    assert client.post("/_inference/text_embedding/e1", json={"input": "fine"}).status_code == 200


def test_the_thread_budget_is_never_oversubscribed(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body(num_allocations=1, num_threads=2))
    response = client.put("/_inference/text_embedding/e2", json=es_body(num_allocations=2, num_threads=2))
    error = assert_es_error(response, 429, "status_exception")
    assert error["reason"] == (
        "Could not start an allocation of deployment [e2] with [2] threads: "
        "[0] of the [4] threads of this node are free"
    )
    assert client.get("/_inference/e2").status_code == 404
    assert node.engine.budget.used == 2  # the half-started deployment gave its threads back


def test_update_of_num_allocations_resizes_the_live_deployment(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body(num_allocations=1))
    updated = client.put("/_inference/e1/_update", json={"service_settings": {"num_allocations": 3}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["service_settings"]["num_allocations"] == 3
    assert node.allocations("e1") == 3
    assert live_allocations(client, "e1") == 3
    client.put("/_inference/e1/_update", json={"service_settings": {"num_allocations": 1}})
    assert node.allocations("e1") == 1
    assert node.engine.budget.used == 1
    assert live_allocations(client, "e1") == 1


def test_adaptive_allocations_scale_to_zero_and_back(node: Node, client: httpx.Client) -> None:
    adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 2}
    client.put("/_inference/text_embedding/e1", json=es_body(adaptive_allocations=adaptive))
    assert node.allocations("e1") == 1
    assert live_allocations(client, "e1") == 1
    wait_for(lambda: node.allocations("e1") == 0)  # idle: the model is unloaded
    assert node.recorder.closes == [E5]
    assert live_allocations(client, "e1") == 0  # GET shows the live count, as ES does from deployment stats
    response = client.post("/_inference/text_embedding/e1", json={"input": "wake up"})
    assert response.status_code == 200
    assert node.recorder.loads == [(E5, 1), (E5, 1)]  # loaded again for the request
    assert live_allocations(client, "e1") == 1
    settings = client.get("/_inference/text_embedding/e1").json()["endpoints"][0]["service_settings"]
    assert list(settings) == ["num_allocations", "num_threads", "model_id", "adaptive_allocations"]
    assert settings["adaptive_allocations"] == adaptive


def live_allocations(client: httpx.Client, inference_id: str) -> Any:
    one = client.get(f"/_inference/{inference_id}").json()["endpoints"][0]
    (listed,) = [e for e in client.get("/_inference/_all").json()["endpoints"] if e["inference_id"] == inference_id]
    assert listed == one
    return one["service_settings"].get("num_allocations")


@roomy
def test_adaptive_allocations_scale_up_under_load(node: Node, client: httpx.Client) -> None:
    adaptive = {"enabled": True, "min_number_of_allocations": 1, "max_number_of_allocations": 3}
    client.put("/_inference/rerank/r1", json=es_body(".rerank-v1", adaptive_allocations=adaptive))
    node.recorder.delay = 0.3

    def rerank(i: int) -> int:
        # Rerank requests run one at a time (each has its own query), so they queue up.
        with node.running.http() as http:
            body = {"input": ["a", "b"], "query": f"q{i}"}
            return http.post("/_inference/rerank/r1", json=body).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(rerank, range(16))) == {200}
    assert len(node.recorder.loads) > 1  # more allocations were started while requests waited
    assert node.allocations("r1") <= 3


def test_endpoints_share_a_deployment(node: Node, client: httpx.Client) -> None:
    client.put("/_inference/text_embedding/e1", json=es_body())
    shared = client.put("/_inference/text_embedding/e2", json=es_body(deployment_id="e1"))
    assert shared.status_code == 200, shared.text
    assert shared.json()["service_settings"]["deployment_id"] == "e1"
    assert len(node.recorder.loads) == 1
    assert client.post("/_inference/text_embedding/e2", json={"input": "x"}).status_code == 200
    client.delete("/_inference/e1")
    assert node.engine.find("e1") is not None  # e2 still uses it
    client.delete("/_inference/e2")
    assert node.engine.find("e1") is None


def test_a_missing_or_mismatched_deployment(node: Node, client: httpx.Client) -> None:
    assert_es_error(
        client.put("/_inference/text_embedding/e2", json=es_body(deployment_id="nope")),
        404,
        "resource_not_found_exception",
        "Cannot find deployment [nope]",
    )
    client.put("/_inference/text_embedding/e1", json=es_body())
    assert_es_error(
        client.put("/_inference/text_embedding/e3", json=es_body(".all-minilm-l6-v2", deployment_id="e1")),
        400,
        "status_exception",
        f"Deployment [e1] uses model [{E5}] which does not match the model [.all-minilm-l6-v2] in the request.",
    )
    assert client.get("/_inference/e3").status_code == 404


def test_default_endpoints_deploy_on_first_use(node: Node, client: httpx.Client) -> None:
    assert client.get("/_inference/_all").status_code == 200
    assert node.recorder.loads == []
    response = client.post("/_inference/sparse_embedding/.elser-2-elasticsearch", json={"input": "boil an egg"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sparse_embedding": [{"is_truncated": False, "embedding": {"boil": 1.0, "an": 1.0, "egg": 1.0}}]
    }
    assert len(node.recorder.loads) == 1


def test_the_seed_endpoint_returns_sparse_embeddings(client: httpx.Client) -> None:
    assert client.put("/_inference/sparse_embedding/my-elser-model", json=ELSER_BODY).status_code == 200
    response = client.post("/_inference/sparse_embedding/my-elser-model", json={"input": ["a b a"]})
    assert response.json()["sparse_embedding"][0]["embedding"] == {"a": 2.0, "b": 1.0}


def sparse_endpoint(node: Node, client: httpx.Client, finish_delay: float = 0.0) -> None:
    """The `sparse` endpoint on the fake ELSER, whose batches take `finish_delay` s to finish after the model ran."""
    assert client.put("/_inference/sparse_embedding/sparse", json=ELSER_BODY).status_code == 200
    node.recorder.finish_delay = finish_delay


def post_until_ran(node: Node, pool: ThreadPoolExecutor, text: str) -> Future[httpx.Response]:
    """POST `text` to `sparse` from `pool`; return once the model has run it."""

    def post() -> httpx.Response:
        with node.running.http() as http:
            return http.post("/_inference/sparse_embedding/sparse", json={"input": text})

    future = pool.submit(post)
    wait_for(lambda: f"ran {text}" in node.recorder.steps)
    return future


def test_the_model_runs_the_next_batch_while_the_last_one_is_finished(node: Node, client: httpx.Client) -> None:
    sparse_endpoint(node, client, finish_delay=0.5)
    with ThreadPoolExecutor(2) as pool:
        first = post_until_ran(node, pool, "first")
        second = post_until_ran(node, pool, "second")
        assert first.result().json()["sparse_embedding"][0]["embedding"] == {"first": 1.0}
        assert second.result().json()["sparse_embedding"][0]["embedding"] == {"second": 1.0}
    # The second batch ran while the first one's results were being built, not after.
    assert node.recorder.steps == ["ran first", "ran second", "finished first", "finished second"]


def test_a_batch_that_fails_while_finished_answers_every_caller(node: Node, client: httpx.Client) -> None:
    sparse_endpoint(node, client)
    response = client.post("/_inference/sparse_embedding/sparse", json={"input": ["fine", "fizzle"]})
    error = assert_es_error(response, 500, "status_exception")
    assert error["reason"] == f"model [{ELSER}] failed: the fake model's results fizzled"
    response = client.post("/_inference/sparse_embedding/sparse", json={"input": "fine"})
    assert response.json()["sparse_embedding"][0]["embedding"] == {"fine": 1.0}


def test_stopping_a_deployment_answers_the_batches_still_being_finished(node: Node, client: httpx.Client) -> None:
    sparse_endpoint(node, client, finish_delay=0.5)
    with ThreadPoolExecutor(1) as pool:
        pending = post_until_ran(node, pool, "pending")
        assert client.delete("/_inference/sparse").status_code == 200
        # DELETE returned once the last results were built, and only then was the model closed.
        assert node.recorder.steps == ["ran pending", "finished pending", f"closed {ELSER}"]
        response = pending.result()
    assert response.status_code == 200, response.text
    assert response.json()["sparse_embedding"][0]["embedding"] == {"pending": 1.0}


def test_rerank_sorts_limits_and_returns_documents(client: httpx.Client) -> None:
    docs = ["nothing here", "how to boil an egg", "egg recipes"]
    response = client.post(
        "/_inference/rerank/.rerank-v1-elasticsearch", json={"input": docs, "query": "boil an egg", "top_n": 2}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "rerank": [
            {"index": 1, "relevance_score": 1.0, "text": "how to boil an egg"},
            {"index": 2, "relevance_score": 1 / 3, "text": "egg recipes"},
        ]
    }
    without = client.post(
        "/_inference/rerank/.rerank-v1-elasticsearch",
        json={"input": docs, "query": "egg", "return_documents": False},
    ).json()["rerank"]
    assert [r["index"] for r in without] == [1, 2, 0] and "text" not in without[0]


def test_completion_and_streams_of_the_local_chat_model(client: httpx.Client) -> None:
    body = es_body(".smollm2-135m-instruct")
    assert client.put("/_inference/completion/llm", json=body).status_code == 200
    assert client.post("/_inference/completion/llm", json={"input": "hi there"}).json() == {
        "completion": [{"result": "HI THERE"}]
    }
    streamed = client.post("/_inference/completion/llm/_stream", json={"input": "one two"})
    assert (
        streamed.content
        == b"".join(
            b"\xef\xbb\xbfevent: message\ndata: " + json.dumps(d, separators=(",", ":")).encode() + b"\n\n"
            for d in ({"completion": [{"delta": "ONE"}]}, {"completion": [{"delta": " TWO"}]})
        )
        + b"\xef\xbb\xbfevent: message\ndata: [DONE]\n\n"
    )
    assert client.put("/_inference/chat_completion/chat", json=body).status_code == 200
    chat = client.post(
        "/_inference/chat_completion/chat/_stream", json={"messages": [{"role": "user", "content": "yes no"}]}
    )
    frames = [f for f in chat.content.split(b"\xef\xbb\xbf") if f]
    chunks = [json.loads(f.split(b"data: ", 1)[1]) for f in frames[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["YES", " NO", None]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_corrupted_model_is_a_clear_error_and_the_server_stays_up(tmp_path: Path) -> None:
    recorder = Recorder()
    engine = fake_engine(tmp_path / "models", recorder, broken=frozenset({E5}))
    with ThreadedServer(tmp_path, engine=engine) as running, running.http() as http:
        error = assert_es_error(http.put("/_inference/text_embedding/e1", json=es_body()), 500, "status_exception")
        assert error["reason"] == f"The files of model [{E5}] are missing or corrupted: [model.onnx]"
        assert http.get("/_inference/e1").status_code == 404
        assert http.put("/_inference/text_embedding/m1", json=es_body(".all-minilm-l6-v2")).status_code == 200


def test_idle_adaptive_deployments_give_threads_back(tmp_path: Path) -> None:
    recorder = Recorder()
    engine = fake_engine(tmp_path / "models", recorder, threads=2)
    with ThreadedServer(tmp_path, engine=engine) as running, running.http() as http:
        # The two default endpoints (adaptive, minimum 0) take the node's two threads on first use.
        assert http.post("/_inference/.multilingual-e5-small-elasticsearch", json={"input": "x"}).status_code == 200
        elser = http.post("/_inference/.elser-2-elasticsearch", json={"input": "x"})
        assert elser.status_code == 200
        assert engine.budget.free == 0
        # A fixed deployment still starts: idle adaptive ones scale down for it, the longest idle first.
        response = http.put("/_inference/completion/llm", json=es_body(".smollm2-135m-instruct"))
        assert response.status_code == 200, response.text
        assert engine.find(".multilingual-e5-small-elasticsearch") is not None
        assert engine.find(".multilingual-e5-small-elasticsearch").num_allocations == 0  # type: ignore[union-attr]
        assert engine.find(".elser-2-elasticsearch").num_allocations == 1  # type: ignore[union-attr]
        # And the scaled-down one comes back on its next request, taking the other idle one's thread.
        again = http.post("/_inference/.multilingual-e5-small-elasticsearch", json={"input": "y"})
        assert again.status_code == 200, again.text
        assert engine.budget.free == 0


def test_a_client_that_leaves_a_stream_stops_the_generation(node: Node, client: httpx.Client) -> None:
    assert client.put("/_inference/completion/llm", json=es_body(".smollm2-135m-instruct")).status_code == 200
    node.recorder.word_delay = 0.05
    with (
        node.running.http() as http,
        http.stream("POST", "/_inference/completion/llm/_stream", json={"input": "word " * 100}) as response,
    ):
        next(response.iter_bytes())
    deployment = node.engine.find("llm")
    assert deployment is not None
    wait_for(lambda: not deployment.allocations[0].busy)
    assert node.recorder.words_generated < 50  # stopped long before the 100 words
    assert client.post("/_inference/completion/llm", json={"input": "still fine"}).status_code == 200
