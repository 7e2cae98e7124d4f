"""Serving layer: the SageMaker inference handler (model_fn/input_fn/predict_fn/output_fn) for text embeddings.

This file is copied to ``model.tar.gz/code/inference.py`` and imported by the AWS Hugging Face
PyTorch inference container as the top-level module ``inference``. It must therefore stay
self-contained (stdlib + torch + transformers only, no sentence-transformers, no esdeploy) and use
only transformers APIs present in both 4.49 (the container) and 5.x (the packager's venv).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

logger = logging.getLogger(__name__)

# The manifest contract's (chalicelib/domain/manifest.py), copied: the container has no chalicelib.
# tests/serving/test_manifest_copies.py proves the copies agree.
MANIFEST_NAME = "manifest.json"
POOLING_MODES = ("mean", "cls", "max")
JSON_CONTENT_TYPE = "application/json"
REQUEST_FIELDS = ("inputs", "normalize", "truncate")
# Rounding keeps responses about half the size of full float64 reprs (SageMaker caps a response
# at 6 MB) while changing a unit vector by far less than float32 noise on a GPU does.
OUTPUT_DECIMALS = 7


def _env_int(name: str, default: int) -> int:
    """A positive integer from the environment; a bad value fails start-up rather than a request."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive integer")
    return value


MAX_TEXTS = _env_int("ESDEPLOY_SERVING_MAX_TEXTS", 256)
MAX_BODY_BYTES = _env_int("ESDEPLOY_SERVING_MAX_BODY_BYTES", 1024 * 1024)
MAX_TEXT_CHARS = _env_int("ESDEPLOY_SERVING_MAX_TEXT_CHARS", 32768)
# Unset means "pick per device": 32 on CPU (what sentence-transformers uses), 64 on CUDA.
BATCH_SIZE = _env_int("ESDEPLOY_SERVING_BATCH_SIZE", 0)
DEVICE = os.environ.get("ESDEPLOY_SERVING_DEVICE", "auto")
DTYPE = os.environ.get("ESDEPLOY_SERVING_DTYPE", "auto")


class BadRequestError(ValueError):
    """A request the client has to fix; the message names the problem.

    The HF inference toolkit answers any exception raised by input_fn/predict_fn/output_fn with
    HTTP 400 and ``str(exc)`` as the body, so the message is what the caller sees.
    """


class ModelConfigError(ValueError):
    """The model directory asks for something this handler does not implement."""


@dataclass(frozen=True)
class EncoderConfig:
    """How raw transformer outputs become sentence embeddings for one model."""

    model_id: str
    pooling: str
    normalize: bool
    max_seq_length: int
    lowercase: bool = False


@dataclass(frozen=True)
class EmbedRequest:
    """A validated invocation request."""

    texts: list[str]
    normalize: bool | None = None
    truncate: bool = True


@dataclass(frozen=True)
class Prediction:
    """Embeddings (float32, CPU, request order) plus what the response has to name."""

    embeddings: torch.Tensor
    model_id: str


# --------------------------------------------------------------------------- encoder config


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _pooling_from_config(config: dict[str, Any]) -> str:
    """Translate a sentence-transformers Pooling config (old boolean flags or newer string form)."""
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        chosen = {"mean": "mean", "cls": "cls", "max": "max"}.get(mode)
        if chosen is None:
            raise ModelConfigError(f"pooling mode {mode!r} is not supported (supported: mean, cls, max)")
        return chosen
    flags = {
        "cls": bool(config.get("pooling_mode_cls_token")),
        "mean": bool(config.get("pooling_mode_mean_tokens")),
        "max": bool(config.get("pooling_mode_max_tokens")),
    }
    unsupported = [
        key.removeprefix("pooling_mode_")
        for key in ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
        if config.get(key)
    ]
    if unsupported:
        raise ModelConfigError(f"pooling mode {unsupported[0]!r} is not supported (supported: mean, cls, max)")
    chosen_modes = [name for name, on in flags.items() if on]
    if len(chosen_modes) != 1:
        # Concatenated poolings change the dimension; refusing beats serving something else.
        raise ModelConfigError(f"exactly one pooling mode must be on, found {chosen_modes or 'none'}")
    return chosen_modes[0]


def _max_positions(model_dir: Path) -> int | None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return None
    value = _read_json(config_path).get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


def derive_encoder_config(model_dir: str | Path) -> EncoderConfig:
    """What the model's own files say about pooling, normalisation and sequence length.

    sentence-transformers configs (modules.json, 1_Pooling/config.json, sentence_bert_config.json)
    win when present; a plain Hugging Face encoder gets mean pooling and L2 normalisation.
    """
    root = Path(model_dir)
    pooling, normalize = "mean", True
    modules_path = root / "modules.json"
    if modules_path.is_file():
        normalize = False
        for module in _read_json(modules_path):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Transformer":
                continue
            if kind == "Pooling":
                pooling = _pooling_from_config(_read_json(root / module.get("path", "1_Pooling") / "config.json"))
            elif kind == "Normalize":
                normalize = True
            else:
                raise ModelConfigError(
                    f"modules.json lists {module.get('type')!r}; this handler implements only "
                    "Transformer, Pooling and Normalize modules"
                )
    st_config_path = root / "config_sentence_transformers.json"
    if st_config_path.is_file() and _read_json(st_config_path).get("default_prompt_name"):
        raise ModelConfigError("config_sentence_transformers.json sets default_prompt_name; prompts are not supported")

    limit = _max_positions(root)
    max_seq_length: int | None = None
    lowercase = False
    sbert_path = root / "sentence_bert_config.json"
    if sbert_path.is_file():
        sbert = _read_json(sbert_path)
        if isinstance(sbert.get("max_seq_length"), int):
            max_seq_length = sbert["max_seq_length"]
        lowercase = bool(sbert.get("do_lower_case", False))
    if max_seq_length is None:
        tok_path = root / "tokenizer_config.json"
        tok_max = _read_json(tok_path).get("model_max_length") if tok_path.is_file() else None
        # Tokenizers without a limit store a huge sentinel (1e30); ignore it.
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            max_seq_length = tok_max
    if max_seq_length is None:
        max_seq_length = limit or 512
    if limit is not None:
        max_seq_length = min(max_seq_length, limit)
    return EncoderConfig(
        model_id=root.resolve().name,
        pooling=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
        lowercase=lowercase,
    )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def load_encoder_config(model_dir: str | Path) -> EncoderConfig:
    """The model's own encoder config, overridden by manifest.json when the packager wrote one."""
    base = derive_encoder_config(model_dir)
    manifest_path = Path(model_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return base
    manifest = _read_json(manifest_path)
    pooling = manifest.get("pooling", base.pooling)
    if pooling not in POOLING_MODES:
        raise ModelConfigError(f"manifest pooling {pooling!r} is not one of {POOLING_MODES}")
    normalize = manifest.get("normalize", base.normalize)
    max_seq_length = manifest.get("max_seq_length", base.max_seq_length)
    # The manifest contract's rules (chalicelib/domain/manifest.py), which this container cannot import.
    if not isinstance(normalize, bool) or not _is_positive_int(max_seq_length):
        raise ModelConfigError("manifest normalize must be a bool and max_seq_length a positive int")
    return EncoderConfig(
        model_id=str(manifest.get("model_id") or base.model_id),
        pooling=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
        lowercase=base.lowercase,
    )


# --------------------------------------------------------------------------- the encoder


def _pick_device(name: str) -> torch.device:
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name in ("", "auto"):
        # fp16 keeps ~3 more mantissa bits than bf16, which is what parity with fp32 needs;
        # BERT-family encoders do not overflow in it. CPU stays fp32 (half is slower there).
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"ESDEPLOY_SERVING_DTYPE={name!r} is not one of {sorted(dtypes)}")
    return dtypes[name]


class Encoder:
    """A tokenizer + encoder loaded once; turns texts into pooled (optionally unit) vectors."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        root = Path(model_dir)
        self.config = load_encoder_config(root)
        self.device = _pick_device(device or DEVICE)
        self.dtype = _pick_dtype(dtype or DTYPE, self.device)
        self.batch_size = batch_size or BATCH_SIZE or (64 if self.device.type == "cuda" else 32)
        # local_files_only: the endpoint has no network at start-up and must never try a hub.
        self.tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        model, info = AutoModel.from_pretrained(str(root), local_files_only=True, output_loading_info=True)
        # transformers only warns about missing weights and initialises them randomly, which
        # would serve self-consistent garbage; the pooler head is unused, so it may be absent.
        missing = sorted(k for k in info.get("missing_keys", ()) if k.split(".")[0] != "pooler")
        if missing:
            raise ModelConfigError(f"weights missing from the checkpoint: {', '.join(missing[:5])}")
        # Cast explicitly: transformers 5 loads the checkpoint's dtype, 4.49 loads float32.
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self.pad_type_id = int(getattr(self.tokenizer, "pad_token_type_id", 0) or 0)
        self.left_padding = getattr(self.tokenizer, "padding_side", "right") == "left"
        # Torch modules are safe to share, fast tokenizers are not ("Already borrowed"), and
        # concurrent forwards only fight over the same cores, so one request runs at a time.
        self._lock = threading.Lock()
        self.dimension = int(self.encode(["warm-up"]).shape[1])

    @property
    def model_id(self) -> str:
        return self.config.model_id

    def encode(self, texts: Sequence[str], *, normalize: bool | None = None, truncate: bool = True) -> torch.Tensor:
        """Embeddings for ``texts`` in their order, float32 on CPU."""
        if normalize is None:
            normalize = self.config.normalize
        if not texts:
            return torch.empty((0, getattr(self, "dimension", 0)), dtype=torch.float32)
        if self.config.lowercase:
            texts = [text.lower() for text in texts]
        with self._lock, torch.inference_mode():
            encoded = self._tokenize(list(texts), truncate)
            ids: list[list[int]] = encoded["input_ids"]
            # Longest first: padding then only grows within a batch of similar lengths, and an
            # out-of-memory shows up on the first batch instead of the last.
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
            chunks = []
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                chunks.append(self._embed_batch({name: [values[i] for i in rows] for name, values in encoded.items()}))
            pooled = torch.cat(chunks)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            result = torch.empty_like(pooled)
            result[torch.tensor(order)] = pooled
            return result

    def _tokenize(self, texts: list[str], truncate: bool) -> dict[str, list[list[int]]]:
        limit = self.config.max_seq_length
        encoded = self.tokenizer(
            texts,
            padding=False,
            truncation=truncate,
            max_length=limit if truncate else None,
            return_attention_mask=False,
            verbose=False,
        )
        if not truncate:
            for index, row in enumerate(encoded["input_ids"]):
                if len(row) > limit:
                    raise BadRequestError(
                        f"inputs[{index}] is {len(row)} tokens, over the model's limit of {limit}; "
                        'shorten it or send "truncate": true'
                    )
        return {name: list(values) for name, values in encoded.items()}

    def _embed_batch(self, batch: dict[str, list[list[int]]]) -> torch.Tensor:
        """One padded forward pass; pooling runs in float32 whatever the model's dtype."""
        lengths = [len(row) for row in batch["input_ids"]]
        width = max(lengths)
        pads = {"input_ids": self.pad_id, "token_type_ids": self.pad_type_id}
        tensors: dict[str, torch.Tensor] = {}
        for name, rows in batch.items():
            fill = pads.get(name, 0)
            if self.left_padding:
                padded = [[fill] * (width - len(row)) + row for row in rows]
            else:
                padded = [row + [fill] * (width - len(row)) for row in rows]
            tensors[name] = torch.tensor(padded, dtype=torch.long)
        if self.left_padding:
            mask_rows = [[0] * (width - n) + [1] * n for n in lengths]
        else:
            mask_rows = [[1] * n + [0] * (width - n) for n in lengths]
        mask = torch.tensor(mask_rows, dtype=torch.long)
        tensors["attention_mask"] = mask
        inputs = {name: tensor.to(self.device, non_blocking=True) for name, tensor in tensors.items()}
        hidden = self.model(**inputs)[0].float()
        return self._pool(hidden, inputs["attention_mask"]).cpu()

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "cls":
            # The first real token: index 0 with right padding, after the pads with left padding.
            first = mask.argmax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if pooling == "max":
            return hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


# --------------------------------------------------------------------------- request parsing


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def parse_request(body: str | bytes | bytearray, content_type: str | None) -> EmbedRequest:
    """Validate a raw request body into an EmbedRequest or raise BadRequestError naming the problem."""
    media = _media_type(content_type)
    if media not in ("", JSON_CONTENT_TYPE):
        raise BadRequestError(f"unsupported content type {media!r}; send {JSON_CONTENT_TYPE}")
    if isinstance(body, (bytes, bytearray)):
        size = len(body)
    elif isinstance(body, str):
        # A str has at most as many characters as UTF-8 bytes; only encode when it might fit.
        size = len(body) if len(body) > MAX_BODY_BYTES else len(body.encode("utf-8"))
    else:
        raise BadRequestError(f"request body must be text or bytes, not {type(body).__name__}")
    if size > MAX_BODY_BYTES:
        raise BadRequestError(
            f"request body is {size} bytes, over the limit of {MAX_BODY_BYTES} (ESDEPLOY_SERVING_MAX_BODY_BYTES)"
        )
    if size == 0:
        raise BadRequestError('request body is empty; send {"inputs": ["text", ...]}')
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequestError("request body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    return validate_payload(payload)


def validate_payload(payload: Any) -> EmbedRequest:
    """Accept {"inputs": ..., "normalize"?, "truncate"?}, a bare string, or a bare list of strings."""
    options: dict[str, Any] = {}
    if isinstance(payload, dict):
        unknown = sorted(set(payload) - set(REQUEST_FIELDS))
        if unknown:
            raise BadRequestError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(REQUEST_FIELDS)}"
            )
        if "inputs" not in payload:
            raise BadRequestError('missing "inputs": send {"inputs": ["text", ...]}')
        options = payload
        inputs = payload["inputs"]
    else:
        inputs = payload
    if isinstance(inputs, str):
        texts = [inputs]
    elif isinstance(inputs, list):
        texts = inputs
    else:
        raise BadRequestError(f'"inputs" must be a string or a list of strings, not {_json_type(inputs)}')
    if not texts:
        raise BadRequestError('"inputs" is an empty list; send at least one text')
    if len(texts) > MAX_TEXTS:
        raise BadRequestError(
            f"too many texts: {len(texts)} > {MAX_TEXTS} (ESDEPLOY_SERVING_MAX_TEXTS); split the request"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequestError(f"inputs[{index}] is {_json_type(text)}, not a string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequestError(
                f"inputs[{index}] has {len(text)} characters, "
                f"over the limit of {MAX_TEXT_CHARS} (ESDEPLOY_SERVING_MAX_TEXT_CHARS)"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON's "\ud800" parses to a str the tokenizer crashes on: the caller's error, not ours.
            raise BadRequestError(
                f"inputs[{index}] holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character "
                f"{exc.start}, which is not Unicode text"
            ) from None
    normalize = options.get("normalize")
    truncate = options.get("truncate", True)
    if normalize is not None and not isinstance(normalize, bool):
        raise BadRequestError(f'"normalize" must be true or false, not {_json_type(normalize)}')
    if truncate is None:
        truncate = True
    if not isinstance(truncate, bool):
        raise BadRequestError(f'"truncate" must be true or false, not {_json_type(truncate)}')
    return EmbedRequest(texts=list(texts), normalize=normalize, truncate=truncate)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def render_response(prediction: Prediction) -> str:
    """The wire form: {"embeddings": [[...]], "model": id, "dimension": N}."""
    vectors = prediction.embeddings.double().round(decimals=OUTPUT_DECIMALS).tolist()
    dimension = int(prediction.embeddings.shape[1]) if prediction.embeddings.dim() == 2 else 0
    body = {"embeddings": vectors, "model": prediction.model_id, "dimension": dimension}
    return json.dumps(body, separators=(",", ":"))


# --------------------------------------------------------------------------- toolkit contract


def _gpu_from_context(context: Any) -> str | None:
    """The GPU the model server assigned to this worker, so that workers spread over GPUs."""
    properties = getattr(context, "system_properties", None)
    gpu_id = properties.get("gpu_id") if isinstance(properties, dict) else None
    if gpu_id is None or DEVICE not in ("", "auto") or not torch.cuda.is_available():
        return None
    return f"cuda:{int(gpu_id)}"


def model_fn(model_dir: str, context: Any = None) -> Encoder:
    """Load the encoder once per worker from the extracted artifact (no network)."""
    encoder = Encoder(model_dir, device=_gpu_from_context(context))
    logger.info(
        "loaded %s: dim=%d pooling=%s normalize=%s max_seq_length=%d device=%s dtype=%s",
        encoder.model_id,
        encoder.dimension,
        encoder.config.pooling,
        encoder.config.normalize,
        encoder.config.max_seq_length,
        encoder.device,
        encoder.dtype,
    )
    return encoder


def input_fn(input_data: str | bytes | bytearray, content_type: str | None, context: Any = None) -> EmbedRequest:
    return parse_request(input_data, content_type)


def predict_fn(data: EmbedRequest, model: Encoder, context: Any = None) -> Prediction:
    embeddings = model.encode(data.texts, normalize=data.normalize, truncate=data.truncate)
    return Prediction(embeddings=embeddings, model_id=model.model_id)


def output_fn(prediction: Prediction, accept: str | None, context: Any = None) -> str:
    media = _media_type(accept)
    if media not in ("", "*/*", "application/*", JSON_CONTENT_TYPE):
        raise BadRequestError(f"unsupported accept type {media!r}; accept {JSON_CONTENT_TYPE}")
    return render_response(prediction)
