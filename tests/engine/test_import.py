"""`inferd models import`: a local Hugging Face folder exported to ONNX, checked, stored, then served.

Tiny randomly initialised BERT models (an encoder, a masked LM, a sequence classifier) are built
and saved inside the test, imported with the CLI, loaded the way a deployment loads them, and
their outputs compared with torch's. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner, Result
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from inferd.cli import main
from inferd.core.errors import EngineError
from inferd.core.tasks import TaskType
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.convert import OPSET
from inferd.engine.fetch import ModelDelivery
from inferd.engine.runtimes import load_runtime
from inferd.engine.runtimes.onnx import OnnxCrossEncoderRuntime, OnnxEmbeddingRuntime, OnnxSparseRuntime
from inferd.settings import ServerSettings
from tests.support.onnx_graphs import pooled_weights_named_token_logits

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
QUERY = "how to boil an egg"
DOCUMENTS = ["boil the egg in water", "paris is the capital of france", "the bank rate", "a cat sat on the mat"]
# The vocabulary: the test's own words and a few more (anything else is [UNK]).
WORDS = sorted(set(" ".join([QUERY, *DOCUMENTS, "dog rug city money interest music guitar search"]).split()))


def tokenizer_json(path: Path) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer.save(str(path))
    return tokenizer


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, Any]]]:
    """One saved folder and its torch model per task type."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

        root = tmp_path_factory.mktemp("hf")
        config = BertConfig(
            vocab_size=len(SPECIAL) + len(WORDS),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=1,
            initializer_range=0.5,  # BERT's 0.02 gives near-constant outputs; these must tell inputs apart
        )
        built = {}
        for task, cls in (
            ("text_embedding", BertModel),
            ("sparse_embedding", BertForMaskedLM),
            ("rerank", BertForSequenceClassification),
        ):
            torch.manual_seed(len(task))
            model = cls(config).eval()
            folder = root / task
            model.save_pretrained(str(folder))
            tokenizer_json(folder / "tokenizer.json")
            built[task] = (folder, model)
        yield built


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run_import(data_dir: Path, folder: Path, model_id: str, task: str) -> Result:
    args = ["models", "import", str(folder), "--model-id", model_id, "--task-type", task, "--data-dir", str(data_dir)]
    return CliRunner().invoke(main, args, env={"HF_HUB_OFFLINE": "1"})


def served(data_dir: Path, model_id: str) -> tuple[ModelSpec, Any]:
    """The stored spec and its runtime, loaded the way a deployment loads it (files verified first)."""
    delivery = ModelDelivery(ServerSettings(data_dir=data_dir))
    spec = delivery.spec(model_id)
    assert spec is not None
    return spec, load_runtime(spec, delivery.verify(spec), 1)


def encode(texts: list[Any], folder: Path) -> dict[str, Any]:
    import torch

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": torch.tensor([e.ids for e in encodings]),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
        "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
    }


def torch_output(model: Any, inputs: dict[str, Any]) -> Any:
    import torch

    with torch.inference_mode():
        return model(**inputs)


def assert_textbook_splade(vectors: list[Any], model: Any, inputs: dict[str, Any], *, rel: float) -> None:
    """The served sparse vectors are torch's max over real tokens of log1p(relu(MLM logits)), specials dropped."""
    import torch

    logits = torch_output(model, inputs).logits
    expected = (torch.log1p(torch.relu(logits)) * inputs["attention_mask"][:, :, None]).max(dim=1).values.numpy()
    vocab = SPECIAL + WORDS
    for vector, row in zip(vectors, expected, strict=True):
        want = {vocab[i]: float(w) for i, w in enumerate(row) if w > 0 and vocab[i] not in SPECIAL}
        assert vector.weights.keys() == want.keys() and want
        for token, weight in want.items():
            assert vector.weights[token] == pytest.approx(weight, rel=rel, abs=1e-5)


def unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms: npt.NDArray[np.float32] = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / norms


# --- an imported model serves, with torch's numbers ----------------------------------------------


def test_imported_cross_encoder_scores_pairs_as_torch_does(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    folder, model = torch_models["rerank"]
    result = run_import(data_dir, folder, "tiny-cross-encoder", "rerank")
    assert result.exit_code == 0, result.output
    assert "[1] reading the tokenizer" in result.output
    assert "checking the ONNX graph against torch" in result.output
    assert "Imported [tiny-cross-encoder] (rerank; largest logit difference" in result.output

    spec, runtime = served(data_dir, "tiny-cross-encoder")
    assert isinstance(runtime, OnnxCrossEncoderRuntime)
    assert spec.runtime is Runtime.ONNX_CROSS_ENCODER and spec.task_types == (TaskType.RERANK,)
    assert spec.imported and spec.max_sequence_length == 64
    try:
        logits = runtime.logits(QUERY, DOCUMENTS)
        scores = runtime.score(QUERY, DOCUMENTS)
    finally:
        runtime.close()
    expected = torch_output(model, encode([(QUERY, d) for d in DOCUMENTS], folder)).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expected[:, 0])), atol=1e-6)
    assert np.ptp(expected) > 0.1  # the documents really get different scores

    listing = CliRunner().invoke(main, ["models", "list", "--data-dir", str(data_dir)])
    (row,) = [line for line in listing.output.splitlines() if line.startswith("tiny-cross-encoder ")]
    assert row.split()[1:5] == ["rerank", "onnx_cross_encoder", "imported", "yes"]


def test_imported_text_embedding_model_mean_pools_as_torch_does(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    folder, model = torch_models["text_embedding"]
    result = run_import(data_dir, folder, "tiny-encoder", "text_embedding")
    assert result.exit_code == 0, result.output
    spec, runtime = served(data_dir, "tiny-encoder")
    assert isinstance(runtime, OnnxEmbeddingRuntime)
    assert (spec.dims, spec.similarity, spec.extra["pooling"]) == (32, "cosine", "mean")
    try:
        vectors = runtime.embed(DOCUMENTS, None)
    finally:
        runtime.close()
    inputs = encode(DOCUMENTS, folder)
    hidden = torch_output(model, inputs).last_hidden_state.numpy()
    mask = inputs["attention_mask"].numpy()[:, :, None]
    np.testing.assert_allclose(vectors, unit((hidden * mask).sum(axis=1) / mask.sum(axis=1)), atol=1e-5)


def test_imported_cls_pooled_sentence_transformers_folder(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path, tmp_path: Path
) -> None:
    folder, model = torch_models["text_embedding"]
    st_folder = tmp_path / "st"
    shutil.copytree(folder, st_folder)
    (st_folder / "1_Pooling").mkdir()
    (st_folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert run_import(data_dir, st_folder, "tiny-cls", "text_embedding").exit_code == 0
    spec, runtime = served(data_dir, "tiny-cls")
    assert spec.extra["pooling"] == "cls"
    try:
        vectors = runtime.embed(DOCUMENTS, None)
    finally:
        runtime.close()
    hidden = torch_output(model, encode(DOCUMENTS, folder)).last_hidden_state.numpy()
    np.testing.assert_allclose(vectors, unit(hidden[:, 0, :]), atol=1e-5)


def test_imported_masked_lm_gives_splade_weights_as_torch_does(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    folder, model = torch_models["sparse_embedding"]
    assert run_import(data_dir, folder, "tiny-splade", "sparse_embedding").exit_code == 0
    _, runtime = served(data_dir, "tiny-splade")
    assert isinstance(runtime, OnnxSparseRuntime)
    try:
        vectors = runtime.sparse(DOCUMENTS)
    finally:
        runtime.close()
    assert_textbook_splade(vectors, model, encode(DOCUMENTS, folder), rel=1e-6)
    assert not any(vector.is_truncated for vector in vectors)


def masked_lm(kind: str, folder: Path) -> Any:
    """A tiny randomly initialised masked LM of one family, saved with the test's tokenizer."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DistilBertConfig,
        DistilBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    torch.manual_seed(3)
    size = {"vocab_size": len(SPECIAL) + len(WORDS), "max_position_embeddings": 64, "initializer_range": 0.5}
    layers = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64}
    model: Any
    if kind == "bert":
        model = BertForMaskedLM(BertConfig(**size, **layers))
    elif kind == "roberta":  # its position ids count from its pad id, which is this tokenizer's 0
        model = RobertaForMaskedLM(RobertaConfig(**size, **layers, pad_token_id=0))
    else:
        model = DistilBertForMaskedLM(DistilBertConfig(**size, n_layers=2, n_heads=2, dim=32, hidden_dim=64))
    model.eval().save_pretrained(str(folder))
    tokenizer_json(folder / "tokenizer.json")
    return model


@pytest.mark.parametrize(("kind", "masked_logits"), [("bert", False), ("roberta", False), ("distilbert", True)])
def test_splade_export_leaves_padding_out_before_the_head_where_the_model_allows_it(
    kind: str, masked_logits: bool, data_dir: Path, tmp_path: Path
) -> None:
    """BERT's and RoBERTa's MLM heads run on the real tokens only, and the graph outputs their
    logits for the runtime to pool; other families mask the whole model's logits and pool them in
    the graph. Both give the textbook SPLADE numbers, for a batch of mixed lengths whose padding
    must not count, and neither takes a maximum with a scatter (racy in onnxruntime with several
    threads)."""
    import inspect

    import onnx

    model = masked_lm(kind, tmp_path / kind)
    result = run_import(data_dir, tmp_path / kind, f"splade-{kind}", "sparse_embedding")
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(data_dir / "models" / f"splade-{kind}" / "model.onnx")).graph
    assert not any(node.op_type.startswith("Scatter") for node in graph.node)
    producers = {output: node.op_type for node in graph.node for output in node.output}
    maxima = [node for node in graph.node if node.op_type == "ReduceMax"]
    if masked_logits:
        assert [o.name for o in graph.output] == ["sparse"]
        assert any(producers.get(node.input[0]) == "Where" for node in maxima)
    else:
        assert [o.name for o in graph.output] == ["token_logits"]
        assert not maxima and "NonZero" in producers.values()
    _, runtime = served(data_dir, f"splade-{kind}")
    texts = [DOCUMENTS[0], QUERY + " " + DOCUMENTS[1] + " " + DOCUMENTS[2], "cat", *DOCUMENTS[1:]]
    try:
        # One call with every text: the runtime pads them into chunks of mixed lengths.
        vectors = runtime.sparse(texts)
    finally:
        runtime.close()
    inputs = encode(texts, tmp_path / kind)
    assert len(set(inputs["attention_mask"].sum(dim=1).tolist())) > 2
    accepted = inspect.signature(model.forward).parameters
    assert_textbook_splade(vectors, model, {k: v for k, v in inputs.items() if k in accepted}, rel=1e-3)


def test_a_folder_with_only_an_onnx_graph_is_copied(torch_models: dict[str, tuple[Path, Any]], data_dir: Path) -> None:
    folder, _ = torch_models["text_embedding"]
    assert run_import(data_dir, folder, "from-torch", "text_embedding").exit_code == 0
    onnx_only = data_dir.parent / "onnx-only"
    onnx_only.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(folder / name, onnx_only / name)
    (onnx_only / "onnx").mkdir()
    shutil.copyfile(data_dir / "models" / "from-torch" / "model.onnx", onnx_only / "onnx" / "model.onnx")
    result = run_import(data_dir, onnx_only, "from-onnx", "text_embedding")
    assert result.exit_code == 0, result.output
    assert "copying the ONNX graph [model.onnx]" in result.output
    spec, copied = served(data_dir, "from-onnx")
    _, exported = served(data_dir, "from-torch")
    assert spec.extra["source_format"] == "onnx" and spec.dims == 32
    assert spec.extra["check"].endswith(f"; the same result in 8 calls with {max(2, os.cpu_count() or 1)} threads")
    try:
        np.testing.assert_allclose(copied.embed(DOCUMENTS, None), exported.embed(DOCUMENTS, None), atol=1e-6)
    finally:
        copied.close()
        exported.close()


def test_a_folder_with_only_a_vocabulary_gets_its_tokenizer_json_built(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path, tmp_path: Path
) -> None:
    folder, model = torch_models["rerank"]
    vocab_only = tmp_path / "vocab-only"
    vocab_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(folder / name, vocab_only / name)
    (vocab_only / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    result = run_import(data_dir, vocab_only, "from-vocab", "rerank")
    assert result.exit_code == 0, result.output
    assert "no tokenizer.json: building it from the folder's tokenizer files" in result.output
    _, runtime = served(data_dir, "from-vocab")
    try:
        logits = runtime.logits(QUERY, DOCUMENTS)
    finally:
        runtime.close()
    expected = torch_output(model, encode([(QUERY, d) for d in DOCUMENTS], folder)).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


# --- failures are clear, and store nothing -------------------------------------------------------


def assert_nothing_stored(data_dir: Path, model_id: str) -> None:
    assert ModelDelivery(ServerSettings(data_dir=data_dir)).spec(model_id) is None
    leftovers = [p.name for p in data_dir.iterdir()] if data_dir.exists() else []
    assert not [name for name in leftovers if name.startswith(".import-")]
    assert not (data_dir / "models" / model_id).exists()


@pytest.mark.parametrize(
    ("model_id", "problem"),
    [
        ("Tiny", "can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end"),
        (".hidden", "can contain lowercase alphanumeric"),
        ("trailing-", "can contain lowercase alphanumeric"),
        ("x" * 65, "cannot contain more than 64 characters."),
    ],
)
def test_model_ids_follow_elasticsearch_rules(
    model_id: str, problem: str, torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    result = run_import(data_dir, torch_models["rerank"][0], model_id, "rerank")
    assert result.exit_code == 2
    assert f"Invalid value for --model-id: Invalid model_id; '{model_id}' {problem}" in result.output
    assert_nothing_stored(data_dir, model_id)


def test_an_existing_model_id_is_refused(torch_models: dict[str, tuple[Path, Any]], data_dir: Path) -> None:
    folder = torch_models["rerank"][0]
    assert run_import(data_dir, folder, "twice", "rerank").exit_code == 0
    result = run_import(data_dir, folder, "twice", "rerank")
    assert result.exit_code == 1
    assert "Error: Trained machine learning model [twice] already exists" in result.output


def test_a_corrupted_onnx_graph_is_refused_with_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 64}))
    tokenizer_json(folder / "tokenizer.json")
    (folder / "model.onnx").write_bytes(b"\x08\x07 this is not a graph" * 50)
    result = run_import(data_dir, folder, "broken", "text_embedding")
    assert result.exit_code == 1
    assert f"Error: cannot import [{folder}]: [" in result.output
    assert "model.onnx] cannot be run by onnxruntime:" in result.output
    assert_nothing_stored(data_dir, "broken")


def test_an_onnx_graph_with_the_wrong_output_for_the_task_is_refused(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    folder, _ = torch_models["text_embedding"]
    assert run_import(data_dir, folder, "encoder", "text_embedding").exit_code == 0
    onnx_only = data_dir.parent / "as-sparse"
    onnx_only.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(folder / name, onnx_only / name)
    shutil.copyfile(data_dir / "models" / "encoder" / "model.onnx", onnx_only / "model.onnx")
    result = run_import(data_dir, onnx_only, "as-sparse", "sparse_embedding")
    assert result.exit_code == 1
    assert "a sparse_embedding model needs SPLADE-pooled (batch, vocabulary) weights" in result.output
    assert_nothing_stored(data_dir, "as-sparse")


def import_graph(data_dir: Path, graph: Any, like: Path, model_id: str, task: str) -> Result:
    """Import a hand-built ONNX graph, with the config and tokenizer of the saved model in `like`."""
    import onnx
    from onnx import helper

    folder = data_dir.parent / model_id
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(like / name, folder / name)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(folder / "model.onnx"))
    return run_import(data_dir, folder, model_id, task)


def assert_refused(result: Result, data_dir: Path, model_id: str, *fragments: str) -> None:
    """The import failed, said each of `fragments`, and stored nothing."""
    assert result.exit_code == 1, result.output
    for fragment in fragments:
        assert fragment in result.output
    assert_nothing_stored(data_dir, model_id)


def test_an_onnx_graph_whose_results_change_from_call_to_call_is_refused(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    """A graph whose answer to the same input changes between calls (a racing scatter, a random
    operator: here the latter, which changes every time) passes a one-off shape check but must
    never be served."""
    from onnx import TensorProto, helper, numpy_helper

    folder, _ = torch_models["text_embedding"]
    table = np.random.default_rng(3).standard_normal((len(SPECIAL) + len(WORDS), 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("RandomUniformLike", ["embedded"], ["noise"], low=0.0, high=0.5),
        helper.make_node("Add", ["embedded", "noise"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "noisy-encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", 8])],
        [numpy_helper.from_array(table, "table")],
    )
    assert_refused(
        import_graph(data_dir, graph, folder, "noisy", "text_embedding"),
        data_dir,
        "noisy",
        "the ONNX graph gives different results for the same input from one call to the next with [",
        "it may hold an operator that updates the same values from several threads at once, or a random",
    )


def test_an_onnx_graph_that_takes_a_maximum_with_a_scatter_is_refused(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    """SPLADE pooled with a ScatterND max-reduction: right on one thread, but onnxruntime applies the
    updates from several threads without locking (this graph lost maxima in 20 of 99 calls of one
    long text with two threads), too rarely for a few calls to show it; it is refused on sight."""
    from onnx import TensorProto, helper, numpy_helper

    folder, _ = torch_models["sparse_embedding"]
    vocabulary = len(SPECIAL) + len(WORDS)
    table = np.abs(np.random.default_rng(5).standard_normal((vocabulary, vocabulary))).astype(np.float32)

    def constant(name: str, value: Any) -> Any:
        return numpy_helper.from_array(np.array(value, dtype=np.int64), name)

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["logits"]),  # (batch, tokens, vocabulary)
        helper.make_node("Reshape", ["logits", "flat"], ["updates"]),  # (batch * tokens, vocabulary)
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"]),
        helper.make_node("Range", ["zero", "batch", "one"], ["rows"]),
        helper.make_node("Unsqueeze", ["rows", "one_axis"], ["row_column"]),
        helper.make_node("Expand", ["row_column", "shape"], ["row_of_token"]),
        helper.make_node("Reshape", ["row_of_token", "column"], ["indices"]),  # each token's text
        helper.make_node("Unsqueeze", ["batch", "zero_axis"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "width"], ["out_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["out_shape"], ["zeros"], value=numpy_helper.from_array(np.zeros(1, "f4"))),
        helper.make_node("ScatterND", ["zeros", "indices", "updates"], ["weights"], reduction="max", name="pool"),
    ]
    graph = helper.make_graph(
        nodes,
        "scatter-splade",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", vocabulary])],
        [
            numpy_helper.from_array(table, "table"),
            constant("flat", [-1, vocabulary]),
            constant("zero", 0),
            constant("one", 1),
            constant("one_axis", [1]),
            constant("zero_axis", [0]),
            constant("column", [-1, 1]),
            constant("width", [vocabulary]),
        ],
    )
    assert_refused(
        import_graph(data_dir, graph, folder, "scatter", "sparse_embedding"),
        data_dir,
        "scatter",
        "the ONNX graph has ScatterND [pool] (reduction max): onnxruntime applies a reducing scatter's",
    )


def test_an_onnx_graph_whose_token_logits_are_not_one_row_per_real_token_is_refused(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    """An output named `token_logits` is pooled by the runtime, a text's rows after the other's: a
    graph that names pooled (batch, vocabulary) weights so would have its texts' rows mixed up."""
    folder, _ = torch_models["sparse_embedding"]
    graph = pooled_weights_named_token_logits(len(SPECIAL) + len(WORDS), seed=7)
    assert_refused(
        import_graph(data_dir, graph, folder, "mislabelled", "sparse_embedding"),
        data_dir,
        "mislabelled",
        "the ONNX graph's [token_logits] output has shape (8, ",
        "it must hold one row of vocabulary logits for each of the ",
    )


def test_a_folder_without_weights_is_refused(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    tokenizer_json(folder / "tokenizer.json")
    result = run_import(data_dir, folder, "empty", "rerank")
    assert result.exit_code == 1
    assert f"Error: cannot import [{folder}]: [{folder}] has no safetensors weights" in result.output
    assert_nothing_stored(data_dir, "empty")


def test_a_model_file_corrupted_after_import_gives_a_clear_error(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    folder, _ = torch_models["rerank"]
    assert run_import(data_dir, folder, "later-broken", "rerank").exit_code == 0
    delivery = ModelDelivery(ServerSettings(data_dir=data_dir))
    spec = delivery.spec("later-broken")
    assert spec is not None
    stored = delivery.folder(spec)
    (stored / "model.onnx").write_bytes(b"garbage" * 100)
    with pytest.raises(
        EngineError, match=r"^model \[later-broken\] cannot be loaded: \[.*\] is not a valid ONNX model"
    ):
        load_runtime(spec, stored, 1)


def test_an_imported_cross_encoder_serves_rerank_through_the_server(
    torch_models: dict[str, tuple[Path, Any]], data_dir: Path
) -> None:
    """The Eland way end to end: import, PUT an elasticsearch endpoint naming it, rerank through the API."""
    from inferd.app import default_engine
    from tests.support.servers import ThreadedServer

    folder, model = torch_models["rerank"]
    assert run_import(data_dir, folder, "tiny-cross-encoder", "rerank").exit_code == 0
    expected = torch_output(model, encode([(QUERY, d) for d in DOCUMENTS], folder)).logits.numpy()[:, 0]
    engine = default_engine(ServerSettings(data_dir=data_dir))
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": "tiny-cross-encoder", "num_allocations": 1, "num_threads": 1},
    }
    with ThreadedServer(data_dir, engine=engine) as running, running.http() as http:
        created = http.put("/_inference/rerank/my-reranker", json=body)
        assert created.status_code == 200, created.text
        response = http.post("/_inference/rerank/my-reranker", json={"query": QUERY, "input": DOCUMENTS})
        assert response.status_code == 200, response.text
        ranked = response.json()["rerank"]
        assert [r["index"] for r in ranked] == [int(i) for i in np.argsort(-expected, kind="stable")]
        assert ranked[0]["relevance_score"] == pytest.approx(float(1 / (1 + np.exp(-expected.max()))), abs=1e-5)
        wrong_task = http.put("/_inference/text_embedding/nope", json=body)
        assert wrong_task.status_code == 400
        assert wrong_task.json()["error"]["reason"] == (
            "Model [tiny-cross-encoder] does not support task type [text_embedding]; it supports [rerank]"
        )
