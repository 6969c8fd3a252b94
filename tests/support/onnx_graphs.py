"""Small hand-built ONNX graphs for the tests of what the runtime and the import refuse."""

from __future__ import annotations

from typing import Any

import numpy as np


def pooled_weights_named_token_logits(vocabulary: int, seed: int) -> Any:
    """A graph that outputs one pooled row of `vocabulary` weights per text, but names it `token_logits`.

    `token_logits` promises one row per real token, text after text, which the runtime pools itself:
    with this graph the texts' rows would be mixed up, so it must be refused.
    """
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(seed).standard_normal((vocabulary, vocabulary)).astype(np.float32)
    return helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["logits"]),
            helper.make_node("ReduceMax", ["logits", "axis"], ["token_logits"], keepdims=0),
        ],
        "pooled-as-token-logits",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("token_logits", TensorProto.FLOAT, ["batch", vocabulary])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")],
    )
