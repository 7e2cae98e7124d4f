"""Local stack: how text-embeddings-inference reads a model folder and embeds texts, on the CPU with torch.

The rules are TEI 1.8.2's, the version esdeploy deploys (chalicelib/domain/serving.py): router/src/lib.rs
(config.json, tokenizer.json, 1_Pooling/config.json or POOLING, the token limit from sentence_bert_config.json
else max_position_embeddings), core/src/tokenization.rs (truncation, the character cap, its error texts),
core/src/infer.rs (`dimensions`, normalisation) and backends/candle/src/lib.rs (the model types it loads).
`read_folder` needs no torch: the packager refuses with it what TEI could not load. `TeiModel` computes the
vectors with the model's own weights through transformers, as the local TEI stand-in serves them.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# backends/candle/src/lib.rs `enum Config` (serde tag model_type): what TEI 1.8.2 can load at all.
MODEL_TYPES = frozenset(
    {"bert", "camembert", "distilbert", "gemma3_text", "gte", "new", "mpnet", "mistral", "modernbert",
     "nomic_bert", "qwen2", "qwen3", "roberta", "xlm-roberta"}
)
# ... and of those, what it starts only on CUDA ("only supported on Cuda devices in fp16 with flash attention").
CUDA_ONLY_MODEL_TYPES = frozenset({"mistral", "qwen2"})
# router/src/lib.rs: RoBERTa-like position ids start after the padding index.
_POSITION_OFFSET_TYPES = frozenset({"xlm-roberta", "camembert", "roberta"})
# core/src/download.rs ST_CONFIG_NAMES: the first that exists gives max_seq_length.
ST_CONFIG_NAMES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# TEI's Pool (backends/core/src/lib.rs), as /info names it; POOLING spells them clap's way (last-token).
POOLINGS = ("cls", "mean", "splade", "last_token")
POOLING_VARIABLE_VALUES = {"cls": "cls", "mean": "mean", "splade": "splade", "last-token": "last_token"}
# core/src/tokenization.rs: a text may have at most max_input_length * 250 characters.
MAX_CHAR_MULTIPLIER = 250


class TeiLoadError(Exception):
    """TEI would not start with this folder; the message says why, as far as possible in TEI's words."""


class TeiRequestError(Exception):
    """TEI refuses the request: `error_type` as TEI's ErrorType names it (Validation, Tokenizer, ...)."""

    def __init__(self, message: str, error_type: str = "Validation") -> None:
        super().__init__(message)
        self.error_type = error_type

    @classmethod
    def validation(cls, problem: str) -> TeiRequestError:
        """TextEmbeddingsError::Validation: its Display adds the prefix."""
        return cls(f"Input validation error: {problem}")


@dataclass(frozen=True)
class TeiFolder:
    """What TEI takes from a model folder before it loads any weight."""

    root: Path
    model_type: str
    pooling: str
    max_input_length: int
    position_offset: int
    prompts: Mapping[str, str] = field(default_factory=dict)


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TeiLoadError(f"Failed to parse `{what}`: {exc}") from None


def read_folder(root: Path, pooling: str | None = None) -> TeiFolder:
    """TEI's reading of `root` (router/src/lib.rs `run` and `get_backend_model_type`); `pooling` is the
    POOLING variable's value, which wins over 1_Pooling/config.json. TeiLoadError when TEI would not start."""
    if not (root / "config.json").is_file():
        raise TeiLoadError("`config.json` not found")
    config = _json(root / "config.json", "config.json")
    if not isinstance(config, dict):
        raise TeiLoadError("Failed to parse `config.json`: not an object")
    for key, kind in (("architectures", list), ("model_type", str)):
        if not isinstance(config.get(key), kind):
            raise TeiLoadError(f"Failed to parse `config.json`: missing field `{key}`")
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise TeiLoadError("Failed to parse `config.json`: missing field `max_position_embeddings`")
    model_type = str(config["model_type"])
    if any(str(arch).endswith("Classification") for arch in config["architectures"]):
        raise TeiLoadError(
            f"architectures {config['architectures']} make TEI serve a classifier or reranker (/predict, /rerank), "
            "not embeddings"
        )
    if model_type not in MODEL_TYPES:
        raise TeiLoadError(
            f"model_type {model_type!r} is not one TEI 1.8.2 loads (it loads {', '.join(sorted(MODEL_TYPES))})"
        )
    if not (root / "tokenizer.json").is_file():
        raise TeiLoadError("tokenizer.json not found. text-embeddings-inference only supports fast tokenizers")
    chosen = _pooling(root, model_type, pooling)
    pad_token_id = config.get("pad_token_id") or 0
    offset = int(pad_token_id) + 1 if model_type in _POSITION_OFFSET_TYPES else 0
    max_input_length = limit - offset
    for name in ST_CONFIG_NAMES:
        if (root / name).is_file():
            st_config = _json(root / name, name)
            value = st_config.get("max_seq_length") if isinstance(st_config, dict) else None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TeiLoadError(f"Failed to parse `{name}`: missing field `max_seq_length`")
            max_input_length = value
            break
    prompts: dict[str, str] = {}
    new_st = root / "config_sentence_transformers.json"
    if new_st.is_file():
        found = _json(new_st, "config_sentence_transformers.json")
        if isinstance(found, dict) and isinstance(found.get("prompts"), dict):
            prompts = {str(k): str(v) for k, v in found["prompts"].items()}
    return TeiFolder(root, model_type, chosen, max_input_length, offset, prompts)


def _pooling(root: Path, model_type: str, pooling: str | None) -> str:
    if pooling is not None:
        if pooling not in POOLING_VARIABLE_VALUES:
            raise TeiLoadError(
                f"invalid value {pooling!r} for '--pooling <POOLING>' "
                f"[possible values: {', '.join(POOLING_VARIABLE_VALUES)}]"
            )
        return POOLING_VARIABLE_VALUES[pooling]
    path = root / "1_Pooling" / "config.json"
    if not path.is_file():
        if "bert" not in model_type.lower():
            raise TeiLoadError(
                "The `--pooling` arg is not set and we could not find a pooling configuration "
                "(`1_Pooling/config.json`) for this model."
            )
        return "cls"  # TEI's own default for a BERT variant without a pooling config
    config = _json(path, "1_Pooling/config.json")
    flags = {}
    for key in ("pooling_mode_cls_token", "pooling_mode_mean_tokens"):
        if not isinstance(config, dict) or not isinstance(config.get(key), bool):
            raise TeiLoadError(f"Failed to parse `1_Pooling/config.json`: missing field `{key}`")
        flags[key] = config[key]
    if flags["pooling_mode_cls_token"]:
        return "cls"
    if flags["pooling_mode_mean_tokens"]:
        return "mean"
    if config.get("pooling_mode_lasttoken") is True:
        return "last_token"
    raise TeiLoadError(f"Pooling config {config} is not supported")


def pooling_config(pooling: str) -> dict[str, bool]:
    """The 1_Pooling/config.json flags TEI reads as `pooling` (cls wins over mean, mean over last token)."""
    return {
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_lasttoken": pooling == "last_token",
    }


@dataclass(frozen=True)
class EmbedInput:
    """One input of a request: a text, or token ids (TEI's InputType)."""

    text: str | None = None
    ids: tuple[int, ...] | None = None

    def chars(self) -> int:
        return len(self.text) if self.text is not None else len(self.ids or ())

    def is_empty(self) -> bool:
        return not self.text if self.text is not None else not self.ids


class TeiModel:
    """A model folder served TEI's way: its tokenizer.json, its pooling, its token limit; the vectors from the
    model's weights on the CPU (`dtype` float32, or float16 as TEI's CUDA image defaults to)."""

    def __init__(self, folder: TeiFolder, dtype: str = "float32") -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        if folder.pooling == "splade":
            raise TeiLoadError("Splade pooling is not supported: model is not a ForMaskedLM model")
        self.folder = folder
        self.dtype = dtype
        self.tokenizer = Tokenizer.from_file(str(folder.root / "tokenizer.json"))
        self.tokenizer.no_padding()
        torch_dtype = {"float32": torch.float32, "float16": torch.float16}.get(dtype)
        if torch_dtype is None:
            raise TeiLoadError(f"invalid value {dtype!r} for '--dtype <DTYPE>' [possible values: float16, float32]")
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(str(folder.root), local_files_only=True)
        except Exception as exc:  # TEI's candle backend would have loaded it or not; say what transformers said
            raise TeiLoadError(f"Could not create backend: {type(exc).__name__}: {exc}") from exc
        self.model = model.to(dtype=torch_dtype).eval()
        # One request at a time: a tokenizer's truncation setting is shared state, the cores are too.
        self._lock = threading.Lock()
        self.dimension = len(self.embed([EmbedInput(text="warm-up")], truncate=True)[0])

    def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        truncate: bool,
        truncation_direction: str = "Right",
        prompt_name: str | None = None,
        normalize: bool = True,
        dimensions: int | None = None,
    ) -> list[list[float]]:
        """One pooled vector per input (core/src/infer.rs `embed_pooled`); TeiRequestError as TEI refuses.
        Inputs are checked in order and the first refusal wins, as TEI's `join_all` + `collect` does."""
        import torch

        if dimensions is not None and dimensions == 0:
            raise TeiRequestError.validation("`dimensions` should be positive")
        with self._lock:
            encoded = [self._encode(item, truncate, truncation_direction, prompt_name) for item in inputs]
            with torch.inference_mode():
                pooled = self._forward(encoded)
        vectors = []
        for row in pooled:
            if dimensions is not None:
                if dimensions > len(row):
                    raise TeiRequestError.validation(
                        "`dimensions` should be smaller than the maximum embedding dimension."
                    )
                row = row[:dimensions]
            if normalize:
                # As infer.rs: the norm in f64, the scale applied in f32.
                norm = math.sqrt(float((row.double() ** 2).sum()))
                row = row * torch.tensor(1.0 / norm if norm else math.inf, dtype=torch.float32)
            # f32 values, written with the 9 significant digits that carry one (TEI writes f32 too).
            vectors.append([float(f"{value:.9g}") for value in row.tolist()])
        return vectors

    def _encode(self, item: EmbedInput, truncate: bool, direction: str, prompt_name: str | None) -> list[int]:
        """core/src/tokenization.rs `encode_input` for one input."""
        if item.is_empty():
            raise TeiRequestError.validation("`inputs` cannot be empty")
        limit = self.folder.max_input_length
        prompt = self._prompt(prompt_name)
        char_limit = limit * MAX_CHAR_MULTIPLIER
        text = item.text
        if item.chars() > char_limit:
            if not truncate:
                raise TeiRequestError.validation(
                    f"`inputs` must have less than {char_limit} characters. Given: {item.chars()}"
                )
            text = text[:char_limit] if text is not None else None
        if truncate:
            self.tokenizer.enable_truncation(limit, stride=0, strategy="longest_first", direction=direction.lower())
        else:
            self.tokenizer.no_truncation()
        try:
            if text is not None:
                encoding = self.tokenizer.encode((prompt or "") + text, add_special_tokens=True)
            else:
                ids = list(item.ids or ())[:char_limit]
                decoded = self.tokenizer.decode(ids, skip_special_tokens=prompt is not None)
                encoding = self.tokenizer.encode((prompt or "") + decoded, add_special_tokens=prompt is not None)
        except Exception as exc:  # the tokenizers library's own error: TEI's Tokenizer error type
            raise TeiRequestError(f"tokenizer error {exc}", "Tokenizer") from None
        if len(encoding.ids) > limit:
            raise TeiRequestError.validation(
                f"`inputs` must have less than {limit} tokens. Given: {len(encoding.ids)}"
            )
        if not encoding.ids:
            raise TeiRequestError.validation("`inputs` cannot be empty")
        return list(encoding.ids)

    def _prompt(self, prompt_name: str | None) -> str | None:
        if prompt_name is None:
            return None
        if not self.folder.prompts:
            raise TeiRequestError.validation(
                f"`default-prompt-name` is set to `{prompt_name}` but no prompts were found in the Sentence "
                "Transformers configuration"
            )
        if prompt_name not in self.folder.prompts:
            raise TeiRequestError.validation(
                f"`default-prompt-name` is set to `{prompt_name}` but it was not found in the Sentence Transformers "
                f"prompts. Available prompts: {list(self.folder.prompts)}"
            )
        return self.folder.prompts[prompt_name]

    def _forward(self, encoded: list[list[int]]) -> list[torch.Tensor]:
        import torch

        # Sorted by length and padded per batch of 32: less padding, the same vectors (masked pooling).
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: dict[int, torch.Tensor] = {}
        pad_id = int(getattr(self.model.config, "pad_token_id", None) or 0)
        for start in range(0, len(order), 32):
            batch = [encoded[i] for i in order[start:start + 32]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            for row, index in enumerate(order[start:start + 32]):
                results[index] = self._pool(hidden[row], mask[row])
        return [results[i] for i in range(len(encoded))]

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = int(mask.sum().item())
        if self.folder.pooling == "cls":
            return hidden[0]
        if self.folder.pooling == "last_token":
            return hidden[length - 1]
        return hidden[:length].mean(dim=0)
