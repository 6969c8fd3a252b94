"""The official Python clients, unchanged, against the real server: `elasticsearch` 9.x and `elasticsearch8` 8.x."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import elasticsearch
import elasticsearch8
import pytest

from tests.conftest import DEFAULT_IDS
from tests.support.sample_service import embed


@dataclass
class Client:
    """One client build with its own exception classes (the two packages do not share them)."""

    name: str
    es: Any
    mod: Any


@pytest.fixture(params=["es", "es8"])
def client(request: pytest.FixtureRequest) -> Client:
    mod = elasticsearch if request.param == "es" else elasticsearch8
    return Client(request.param, request.getfixturevalue(request.param), mod)


def config(model: str = "m1", api_key: str = "sk-client-secret", **settings: Any) -> dict[str, Any]:
    return {"service": "test_service", "service_settings": {"model": model, "api_key": api_key, **settings}}


def ids(response: Any) -> list[str]:
    return [e["inference_id"] for e in response["endpoints"]]


def test_clients_are_the_expected_majors() -> None:
    assert elasticsearch.__versionstr__.startswith("9.")
    assert elasticsearch8.__versionstr__.startswith("8.")


def test_ping(client: Client) -> None:
    assert client.es.ping() is True


def test_info(client: Client) -> None:
    info = client.es.info()
    assert info.meta.status == 200
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"
    body = info.body
    for key in ("name", "cluster_name", "cluster_uuid", "version", "tagline"):
        assert key in body, body
    assert body["tagline"] == "You Know, for Search"
    assert body["version"]["number"].startswith("9.")
    assert body["version"]["build_flavor"] == "default"
    assert isinstance(body["cluster_uuid"], str)
    assert body["cluster_uuid"]


def test_put_with_inference_config(client: Client) -> None:
    inference_id = f"{client.name}-put-config"
    created = client.es.inference.put(
        inference_id=inference_id, task_type="text_embedding", inference_config=config(dimensions=4)
    )
    assert created.meta.status == 200
    assert created["inference_id"] == inference_id
    assert created["task_type"] == "text_embedding"
    assert created["service"] == "test_service"
    assert created["service_settings"]["dimensions"] == 4
    assert "api_key" not in created["service_settings"]
    got = client.es.inference.get(inference_id=inference_id)
    assert got["endpoints"] == [created.body]


def test_put_with_body_and_task_type_in_body(client: Client) -> None:
    inference_id = f"{client.name}-put-body"
    created = client.es.inference.put(
        inference_id=inference_id, body={**config(model="m-body"), "task_type": "sparse_embedding"}
    )
    assert created["task_type"] == "sparse_embedding"
    assert created["service_settings"]["model"] == "m-body"
    assert client.es.inference.get(task_type="sparse_embedding", inference_id=inference_id)["endpoints"] == [
        created.body
    ]


def test_get_in_every_form(client: Client) -> None:
    emb, comp = f"{client.name}-get-emb", f"{client.name}-get-comp"
    client.es.inference.put(inference_id=emb, task_type="text_embedding", inference_config=config())
    client.es.inference.put(inference_id=comp, task_type="completion", inference_config=config())
    everything = sorted([emb, comp, *DEFAULT_IDS])

    assert ids(client.es.inference.get()) == everything
    assert ids(client.es.inference.get(inference_id="_all")) == everything
    assert ids(client.es.inference.get(inference_id="*")) == everything
    # The clients send GET /_inference when only a task type is given.
    assert ids(client.es.inference.get(task_type="completion")) == everything
    assert ids(client.es.inference.get(task_type="completion", inference_id="_all")) == sorted(
        [comp, "test-default-completion"]
    )
    assert ids(client.es.inference.get(task_type="text_embedding", inference_id="_all")) == sorted(
        [emb, ".multilingual-e5-small-elasticsearch"]
    )
    assert ids(client.es.inference.get(inference_id=emb)) == [emb]
    assert ids(client.es.inference.get(task_type="text_embedding", inference_id=emb)) == [emb]


def test_get_with_the_wrong_task_type_is_bad_request(client: Client) -> None:
    inference_id = f"{client.name}-get-mismatch"
    client.es.inference.put(inference_id=inference_id, task_type="text_embedding", inference_config=config())
    with pytest.raises(client.mod.BadRequestError) as caught:
        client.es.inference.get(task_type="completion", inference_id=inference_id)
    assert caught.value.meta.status == 400
    assert caught.value.message == "status_exception"
    assert caught.value.body["error"]["reason"] == (
        "Requested task type [completion] does not match the inference endpoint's task type [text_embedding]"
    )


def test_update(client: Client) -> None:
    inference_id = f"{client.name}-update"
    client.es.inference.put(inference_id=inference_id, task_type="text_embedding", inference_config=config())
    updated = client.es.inference.update(
        inference_id=inference_id,
        inference_config={"service_settings": {"dimensions": 5, "api_key": "sk-rotated"}},
    )
    assert updated.meta.status == 200
    assert updated["service_settings"]["dimensions"] == 5
    assert "api_key" not in updated["service_settings"]
    assert client.es.inference.get(inference_id=inference_id)["endpoints"] == [updated.body]
    vector = client.es.inference.text_embedding(inference_id=inference_id, input="after update")
    assert vector["text_embedding"] == [{"embedding": embed("after update", 5)}]

    typed = client.es.inference.update(
        inference_id=inference_id,
        task_type="text_embedding",
        body={"task_settings": {"user": "someone"}},
    )
    assert typed["task_settings"]["user"] == "someone"
    assert typed["service_settings"]["dimensions"] == 5


def test_update_of_a_missing_endpoint_is_not_found(client: Client) -> None:
    inference_id = f"{client.name}-update-missing"
    with pytest.raises(client.mod.NotFoundError) as caught:
        client.es.inference.update(inference_id=inference_id, inference_config={"service_settings": {"dimensions": 2}})
    assert caught.value.meta.status == 404
    assert caught.value.message == "resource_not_found_exception"
    assert caught.value.body["error"]["reason"] == (
        f"The inference endpoint [{inference_id}] does not exist and cannot be updated"
    )


def test_inference_and_text_embedding(client: Client) -> None:
    inference_id = f"{client.name}-infer"
    client.es.inference.put(inference_id=inference_id, task_type="text_embedding", inference_config=config())
    expected = {"text_embedding": [{"embedding": embed("first", 8)}, {"embedding": embed("second", 8)}]}

    generic = client.es.inference.inference(inference_id=inference_id, input=["first", "second"])
    assert generic.meta.status == 200
    assert generic.body == expected
    typed = client.es.inference.inference(
        inference_id=inference_id, task_type="text_embedding", input=["first", "second"]
    )
    assert typed.body == expected
    assert client.es.inference.text_embedding(inference_id=inference_id, input=["first", "second"]).body == expected
    single = client.es.inference.text_embedding(inference_id=inference_id, input="first")
    assert single.body == {"text_embedding": [{"embedding": embed("first", 8)}]}
    via_body = client.es.inference.text_embedding(inference_id=inference_id, body={"input": ["second"]})
    assert via_body.body == {"text_embedding": [{"embedding": embed("second", 8)}]}


def test_other_task_methods(client: Client) -> None:
    completion_id, sparse_id, rerank_id = (f"{client.name}-{t}" for t in ("completion", "sparse", "rerank"))
    client.es.inference.put(inference_id=completion_id, task_type="completion", inference_config=config())
    completion = client.es.inference.completion(inference_id=completion_id, input="hello there")
    assert completion.body == {"completion": [{"result": "HELLO THERE"}]}

    client.es.inference.put(inference_id=sparse_id, task_type="sparse_embedding", inference_config=config())
    sparse = client.es.inference.sparse_embedding(inference_id=sparse_id, input="a b a")
    assert sparse.body == {"sparse_embedding": [{"is_truncated": False, "embedding": {"a": 2.0, "b": 1.0}}]}

    client.es.inference.put(inference_id=rerank_id, task_type="rerank", inference_config=config())
    ranked = client.es.inference.rerank(inference_id=rerank_id, query="red apple", input=["green pear", "red apple"])
    assert [r["index"] for r in ranked["rerank"]] == [1, 0]
    assert ranked["rerank"][0]["relevance_score"] == 1.0


def test_inference_on_a_default_endpoint(client: Client) -> None:
    """A default endpoint is listed by GET, so it must also serve inference."""
    completion = client.es.inference.completion(inference_id="test-default-completion", input="hello there")
    assert completion.body == {"completion": [{"result": "HELLO THERE"}]}


def test_inference_with_the_wrong_task_type_is_bad_request(client: Client) -> None:
    inference_id = f"{client.name}-infer-mismatch"
    client.es.inference.put(inference_id=inference_id, task_type="completion", inference_config=config())
    with pytest.raises(client.mod.BadRequestError) as caught:
        client.es.inference.text_embedding(inference_id=inference_id, input="x")
    assert caught.value.meta.status == 400
    assert caught.value.message == "status_exception"
    assert caught.value.body["error"]["reason"] == (
        "Incompatible task_type, the requested type [text_embedding] does not match the model type [completion]"
    )


def test_delete_with_dry_run_and_force(client: Client) -> None:
    inference_id = f"{client.name}-delete"
    client.es.inference.put(inference_id=inference_id, task_type="text_embedding", inference_config=config())

    dry = client.es.inference.delete(inference_id=inference_id, dry_run=True)
    assert dry.body == {"acknowledged": False, "pipelines": [], "indexes": [], "error_message": ""}
    assert ids(client.es.inference.get(inference_id=inference_id)) == [inference_id]

    done = client.es.inference.delete(inference_id=inference_id, task_type="text_embedding")
    assert done.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    with pytest.raises(client.mod.NotFoundError):
        client.es.inference.get(inference_id=inference_id)

    forced_id = f"{client.name}-delete-forced"
    client.es.inference.put(inference_id=forced_id, task_type="completion", inference_config=config())
    forced = client.es.inference.delete(inference_id=forced_id, force=True)
    assert forced.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    with pytest.raises(client.mod.NotFoundError):
        client.es.inference.get(inference_id=forced_id)


def test_delete_of_a_default_endpoint_needs_force(client: Client) -> None:
    with pytest.raises(client.mod.BadRequestError) as caught:
        client.es.inference.delete(inference_id="test-default-completion")
    assert caught.value.meta.status == 400
    assert caught.value.message == "status_exception"
    assert caught.value.body["error"]["reason"] == (
        "[test-default-completion] is a reserved inference endpoint. "
        "Use the force=true query parameter to delete the inference endpoint."
    )
    forced = client.es.inference.delete(inference_id="test-default-completion", force=True)
    assert forced.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    # Default endpoints live in code: still listed afterwards.
    assert ids(client.es.inference.get(inference_id="test-default-completion")) == ["test-default-completion"]


def test_missing_endpoint_is_not_found_error(client: Client) -> None:
    inference_id = f"{client.name}-missing"
    reason = f"Inference endpoint not found [{inference_id}]"
    calls = [
        lambda: client.es.inference.get(inference_id=inference_id),
        lambda: client.es.inference.inference(inference_id=inference_id, input="x"),
        lambda: client.es.inference.text_embedding(inference_id=inference_id, input="x"),
        lambda: client.es.inference.delete(inference_id=inference_id),
    ]
    for call in calls:
        with pytest.raises(client.mod.NotFoundError) as caught:
            call()
        error = caught.value
        assert error.meta.status == 404
        assert error.status_code == 404
        assert error.message == "resource_not_found_exception"
        assert error.body["error"]["reason"] == reason
        assert error.body["error"]["root_cause"][0]["reason"] == reason
        assert reason in str(error)


def test_bad_put_is_bad_request_error_and_changes_nothing(client: Client) -> None:
    inference_id = f"{client.name}-bad-put"
    with pytest.raises(client.mod.BadRequestError) as caught:
        client.es.inference.put(
            inference_id=inference_id,
            task_type="text_embedding",
            inference_config={"service": "no-such-service", "service_settings": {}},
        )
    assert caught.value.meta.status == 400
    assert caught.value.message == "status_exception"
    assert caught.value.body["error"]["reason"] == "Unknown service [no-such-service]"
    assert caught.value.body["status"] == 400
    with pytest.raises(client.mod.NotFoundError):
        client.es.inference.get(inference_id=inference_id)


def test_put_of_a_taken_id_is_bad_request_error(client: Client) -> None:
    inference_id = f"{client.name}-taken"
    first = client.es.inference.put(inference_id=inference_id, task_type="text_embedding", inference_config=config())
    with pytest.raises(client.mod.BadRequestError) as caught:
        client.es.inference.put(
            inference_id=inference_id, task_type="text_embedding", inference_config=config(model="other")
        )
    assert caught.value.message == "resource_already_exists_exception"
    assert caught.value.body["error"]["reason"] == f"Inference endpoint [{inference_id}] already exists"
    assert client.es.inference.get(inference_id=inference_id)["endpoints"] == [first.body]


def test_elser_put_raises_the_deprecation_warning(client: Client) -> None:
    inference_id = f"{client.name}-elser"
    with pytest.warns(client.mod.ElasticsearchWarning) as record:
        created = client.es.inference.put(
            inference_id=inference_id,
            task_type="sparse_embedding",
            inference_config={"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}},
        )
    messages = [str(w.message) for w in record]
    assert any("The [elser] service is deprecated" in m for m in messages), messages
    assert created["service"] == "elser"
    assert created["service_settings"]["num_allocations"] == 1
    assert client.es.inference.get(task_type="sparse_embedding", inference_id=inference_id)["endpoints"] == [
        created.body
    ]


def test_wrong_credentials_are_authentication_exception(client: Client, server: Any) -> None:
    other = client.mod.Elasticsearch(server.url, basic_auth=("elastic", "wrong-password"), request_timeout=30)
    try:
        with pytest.raises(client.mod.AuthenticationException) as caught:
            other.inference.get()
        assert caught.value.meta.status == 401
        assert caught.value.message == "security_exception"
        assert caught.value.body["error"]["reason"] == (
            "unable to authenticate user [elastic] for REST request [/_inference]"
        )
        assert other.ping() is False
    finally:
        other.close()
