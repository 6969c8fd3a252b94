"""Small hand-built ONNX graphs and a tokenizer: model folders for tests that need no model data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pooled_weights(vocabulary: int, seed: int, output: str = "weights") -> Any:
    """A graph that outputs one row of `vocabulary` weights per text: the max over its tokens of a random table.

    As a sparse model it gives SPLADE-shaped weights; as an embedding model, a vector the graph pooled itself.
    """
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(seed).standard_normal((vocabulary, vocabulary)).astype(np.float32)
    return helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["logits"]),
            helper.make_node("ReduceMax", ["logits", "axis"], [output], keepdims=0),
        ],
        "pooled-weights",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", vocabulary])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")],
    )


def pooled_weights_named_token_logits(vocabulary: int, seed: int) -> Any:
    """`pooled_weights`, but its output named `token_logits`.

    `token_logits` promises one row per real token, text after text, which the runtime pools itself:
    with this graph the texts' rows would be mixed up, so it must be refused.
    """
    return pooled_weights(vocabulary, seed, output="token_logits")


def word_tokenizer(path: Path) -> None:
    """A tiny BERT-style tokenizer.json of seven tokens, enough to reach the ONNX loading step."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer.save(str(path))
