"""Greedy text generation with a causal language model (SmolLM2-135M-Instruct) on CPU torch.

The model folder holds `model.gguf`, a Q4_1 GGUF. transformers reads it directly but dequantises
every tensor to fp32 on each load (~17 s), so the first load saves the dequantised model and
tokenizer with `save_pretrained` into `hf/` and later loads read that (well under a second). A
marker file ties the copy to the GGUF's size and mtime, so a replaced GGUF is converted again.

Only local folders are ever passed to `from_pretrained` (`local_files_only=True`, and
`HF_HUB_OFFLINE=1`), so a mistake fails at once instead of reaching for a model hub. torch and
transformers are imported when a model is loaded, not when this module is imported: the request
conversion below is used by the service on every request and must stay cheap.

Completion and chat completion are inferd extensions: Elasticsearch's own `elasticsearch` service
serves no generative model (its tasks are text_embedding, sparse_embedding and rerank), so the
limits here follow the OpenAI-style unified chat request rather than an ES default.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from inferd.core.errors import EngineError, StatusError
from inferd.engine.catalog import ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

GGUF_FILE = "model.gguf"
CACHE_DIR = "hf"  # the dequantised copy, written by the first load
_CACHE_MARKER = "inferd-source.json"

# The `completion` task has no request field for a length limit (ES's completion request is just
# `input`), and a chat request may leave out `max_completion_tokens`, where OpenAI would generate
# up to the context length. A 135M model rambles long before that, and one generation holds its
# allocation for its whole length (~15 tokens/s here), so requests without a limit get this many.
DEFAULT_MAX_NEW_TOKENS = 256

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class GenerateArgs:
    """The arguments of `GenerativeRuntime.generate` for one request."""

    messages: list[dict[str, str]]
    max_new_tokens: int
    stop: tuple[str, ...] = ()


def chat_arguments(chat: Mapping[str, Any], *, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> GenerateArgs:
    """A unified chat completion request (as a dict) as `generate` arguments.

    Decoding is always greedy, so `temperature` and `top_p` are ignored. The model cannot call
    tools: `tools` and `tool_choice` are ignored, while earlier tool calls and tool results in
    the conversation are kept as text (see `prompt_messages`).
    """
    limit = chat.get("max_completion_tokens")
    return GenerateArgs(
        messages=prompt_messages(chat["messages"]),
        max_new_tokens=default_max_new_tokens if limit is None else int(limit),
        stop=stop_sequences(chat.get("stop")),
    )


def completion_arguments(text: str, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> GenerateArgs:
    """A `completion` input, answered as one user turn of the instruct model's chat."""
    return GenerateArgs(messages=[{"role": "user", "content": text}], max_new_tokens=max_new_tokens)


def stop_sequences(stop: str | Iterable[str] | None) -> tuple[str, ...]:
    """Stop sequences, without empty ones (an empty string would stop before the first token)."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    return tuple(dict.fromkeys(s for s in items if s))


def prompt_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """OpenAI-style messages as the plain {role, content} strings SmolLM's ChatML template expects.

    Content-part lists become their text parts, one per line. The model was trained on the
    system, user and assistant roles only, so `developer` becomes `system`, a tool result becomes a
    user turn that names its call, and an assistant's tool calls are written out after its text.
    """
    result = []
    for message in messages:
        role = message.get("role")
        content = _content_text(message.get("content"))
        if role == "tool":
            call_id = message.get("tool_call_id")
            label = f"Tool result [{call_id}]" if call_id else "Tool result"
            result.append({"role": "user", "content": f"{label}:\n{content}"})
            continue
        if not isinstance(role, str) or role not in _ROLES:
            raise StatusError(f"Unsupported role [{role}]; this model reads system, user, assistant and tool messages")
        calls = [_tool_call_text(call) for call in message.get("tool_calls") or ()]
        if calls:
            content = "\n".join([content, *calls] if content else calls)
        result.append({"role": _ROLES[role], "content": content})
    return result


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type")
        if kind != "text":
            # Dropping an image or file silently would make the answer about something else.
            raise StatusError(f"Content of type [{kind}] is not supported; this model reads text only")
        texts.append(part.get("text") or "")
    return "\n".join(texts)


def _tool_call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    return f"Tool call [{call.get('id')}]: {function.get('name')}({function.get('arguments') or ''})"


class TextStream:
    """Turns the decoded text of a growing generation into stream pieces, and finds stop sequences.

    It is fed the whole decoded text after each token. It holds back what may still change: a
    trailing U+FFFD (a character whose UTF-8 bytes are split across tokens) and a tail that could
    be the start of a stop sequence, so no piece ever has to be taken back.
    """

    def __init__(self, stop: Sequence[str], on_text: Callable[[str], None] | None) -> None:
        self.stop = tuple(stop)
        self.on_text = on_text
        self.emitted = 0  # characters already handed to on_text
        self.stopped = False

    def update(self, text: str) -> bool:
        """Feed the text so far; True once it contains a stop sequence."""
        cut = self._stop_at(text)
        if cut is not None:
            self.stopped = True
            self._emit(text[:cut])
            return True
        end = len(text)
        while end > self.emitted and text[end - 1] == "\ufffd":
            end -= 1
        end -= self._partial_stop(text[:end])
        self._emit(text[:end])
        return False

    def finish(self, text: str) -> str:
        """The final text (cut at the first stop sequence); emits what was held back."""
        cut = self._stop_at(text)
        if cut is not None:
            text = text[:cut]
        self._emit(text)
        return text

    def _emit(self, text: str) -> None:
        if len(text) > self.emitted:
            if self.on_text is not None:
                self.on_text(text[self.emitted :])
            self.emitted = len(text)

    def _stop_at(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop sequence."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest


def _source_stamp(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {"file": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_is_fresh(folder: Path) -> bool:
    """Whether `<folder>/hf` is a complete dequantised copy of the folder's current GGUF."""
    marker = folder / CACHE_DIR / _CACHE_MARKER
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    gguf = folder / GGUF_FILE
    return not gguf.exists() or saved == _source_stamp(gguf)


class CausalLmRuntime:
    """One loaded copy of a causal LM; greedy chat completion with streaming and stop sequences."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.spec = spec
        self.folder = folder
        self.context_length = spec.max_sequence_length
        gguf = folder / GGUF_FILE
        if not gguf.is_file() and not cache_is_fresh(folder):
            raise EngineError(f"model [{spec.model_id}] has no model file: [{gguf}] is missing")
        # Never let transformers or huggingface_hub reach a hub, even when a path is mistaken.
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch

        # Imported before the clock starts, so that load_seconds measures loading alone.
        from transformers import AutoModelForCausalLM  # noqa: F401

        # Process-wide: torch has one intra-op pool per process, so this also applies to any other
        # torch model in the server. The thread budget gives every allocation of a model the same
        # num_threads, so the value set last is still the right one for this model.
        torch.set_num_threads(num_threads)
        started = time.monotonic()
        self._tokenizer: PreTrainedTokenizerBase | None
        self._model: PreTrainedModel | None
        self._tokenizer, self._model, self.loaded_from = self._load()
        self.load_seconds = time.monotonic() - started
        self.last_usage = (0, 0)  # (prompt tokens, generated tokens) of the latest `generate`
        log.info("loaded [%s] from [%s] in %.1fs", spec.model_id, self.loaded_from, self.load_seconds)

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, str]:
        """Tokenizer, model and where they came from: the saved copy when it is fresh, else the GGUF."""
        if cache_is_fresh(self.folder):
            try:
                return (*_load_pretrained(self.folder / CACHE_DIR), CACHE_DIR)
            except Exception as exc:  # a damaged copy: the GGUF can always rebuild it
                log.warning("the saved copy of [%s] in [%s] failed to load (%s); converting again", *self._ids(), exc)
        gguf = self.folder / GGUF_FILE
        try:
            tokenizer, model = _load_pretrained(self.folder, GGUF_FILE)
        except Exception as exc:
            raise EngineError(f"model [{self.spec.model_id}] failed to load from [{gguf}]: {exc}") from exc
        self._save_cache(tokenizer, model)
        return tokenizer, model, GGUF_FILE

    def _ids(self) -> tuple[str, Path]:
        return self.spec.model_id, self.folder / CACHE_DIR

    def _save_cache(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
        """Keep the dequantised model for the next load; written aside and renamed into place."""
        cache = self.folder / CACHE_DIR
        staging = self.folder / f"{CACHE_DIR}.tmp-{os.getpid()}-{id(self)}"
        # The GGUF loader leaves its quantizer attached, and transformers refuses to save a model
        # it thinks is still GGUF-quantised. Every weight is plain fp32 by now (no packed GGUF
        # layers without the `kernels` package), so the copy is an ordinary checkpoint; detach
        # the quantizer for the save and put it back so the live model is untouched.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and getattr(quantizer, "packed_modules", None):
            log.info("[%s] keeps packed GGUF layers; not saving a dequantised copy", self.spec.model_id)
            return
        config = model.config
        quantization = getattr(config, "quantization_config", None)
        if quantization is not None:
            delattr(config, "quantization_config")
        is_quantized = getattr(model, "is_quantized", False)
        try:
            # setattr: transformers types these as module attributes (Tensor | Module).
            setattr(model, "hf_quantizer", None)  # noqa: B010
            setattr(model, "is_quantized", False)  # noqa: B010
            shutil.rmtree(staging, ignore_errors=True)
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / _CACHE_MARKER).write_text(json.dumps(_source_stamp(self.folder / GGUF_FILE)))
            shutil.rmtree(cache, ignore_errors=True)
            staging.rename(cache)
        except Exception as exc:  # read-only folder, full disk, a rival allocation: the loaded model still serves
            log.warning("could not save the dequantised copy of [%s] in [%s]: %s", *self._ids(), exc)
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            setattr(model, "hf_quantizer", quantizer)  # noqa: B010
            setattr(model, "is_quantized", is_quantized)  # noqa: B010
            if quantization is not None:
                config.quantization_config = quantization

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._tokenizer is None:
            raise EngineError(f"model [{self.spec.model_id}] was unloaded")
        encoded = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """Greedy chat completion; `on_text` runs in this thread after each token, and may raise to abort."""
        import torch

        tokenizer, model = self._tokenizer, self._model
        if tokenizer is None or model is None:
            raise EngineError(f"model [{self.spec.model_id}] was unloaded")
        inputs = cast(
            "BatchEncoding",
            tokenizer.apply_chat_template(
                prompt_messages(messages), add_generation_prompt=True, return_dict=True, return_tensors="pt"
            ),
        )
        prompt_length = int(inputs["input_ids"].shape[1])
        room = self.context_length - prompt_length
        if room < 1:
            # ES's wording for input over a model's maximum sequence length.
            raise StatusError(
                f"Input too large. The tokenized input length [{prompt_length}] "
                f"exceeds the maximum sequence length [{self.context_length}]"
            )
        stream = TextStream(stop_sequences(stop), on_text)

        def decode(ids: torch.Tensor) -> str:
            # clean_up_tokenization_spaces would rewrite " ." as "." depending on what follows, so
            # the text of a prefix would not be a prefix of the text.
            return cast("str", tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

        def step(input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            # Called after each new token, in this thread: stream the text and stop at a stop sequence.
            done = stream.update(decode(input_ids[0, prompt_length:]))
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        from transformers import StoppingCriteriaList

        with torch.inference_mode():
            # PreTrainedModel's stubs lack GenerationMixin.generate (every causal LM class has it).
            output = model.generate(  # type: ignore[operator]
                **inputs,
                max_new_tokens=min(max_new_tokens, room),
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([step]),
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = output[0, prompt_length:]
        self.last_usage = (prompt_length, int(generated.shape[0]))
        return stream.finish(decode(generated))

    def close(self) -> None:
        # Drop the only references, so the weights (~0.5 GB) go back to the allocator now.
        self._model = self._tokenizer = None
        gc.collect()


def _load_pretrained(folder: Path, gguf_file: str | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local_files_only: the folder is the only place to look, whatever the environment says.
    options: dict[str, Any] = {"local_files_only": True}
    if gguf_file is not None:
        options["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    model = AutoModelForCausalLM.from_pretrained(folder, **options)
    model.eval()  # type: ignore[no-untyped-call]  # inference mode for dropout and the like
    return tokenizer, model
