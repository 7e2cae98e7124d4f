"""Operator tool layer: `esdeploy package --serving tei` — what TEI cannot serve as the references say is
refused, and the files TEI reads are written so that it computes what the manifest says.

TEI reads the model folder, not our manifest (esdeploy.local.tei_model has its rules, TEI 1.8.2's): the pooling
from 1_Pooling/config.json, the token limit from sentence_bert_config.json, the text through tokenizer.json only.
It normalises every request unless told otherwise and does not lowercase for sentence-transformers'
`do_lower_case`. So a staged folder is refused for TEI when the manifest's settings cannot be said in those files,
and otherwise gets the two files written with the manifest's pooling and token limit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.domain.manifest import TEI_NORMALISES, TEI_POOLS, serving_problem
from chalicelib.domain.serving import Serving
from esdeploy.local.tei_model import (
    CUDA_ONLY_MODEL_TYPES,
    TeiLoadError,
    pooling_config,
    read_folder,
)

POOLING_FILE = "1_Pooling/config.json"
ST_CONFIG_FILE = "sentence_bert_config.json"


class TeiIncompatibleError(ValueError):
    """The model cannot be served by TEI as the references say; the message names the reason."""


def prepare_for_tei(stage: Path, pooling: str, normalize: bool, max_seq_length: int) -> list[str]:
    """Refuse what TEI cannot serve as `pooling`/`normalize`/`max_seq_length` say, write what it reads;
    returns the files written (relative paths)."""
    # The manifest contract's rule for TEI (the gate's too), in the packager's words with what to do instead.
    problem = serving_problem(Serving.TEI, pooling, normalize)
    if problem is not None and problem.field == "normalize":
        raise TeiIncompatibleError(
            f"{TEI_NORMALISES}, so callers would get other vectors than this model's (it has no Normalize "
            "module): package it with --normalize (the same directions) or serve it with the handler"
        )
    if problem is not None:
        raise TeiIncompatibleError(f"{pooling} pooling: {TEI_POOLS}; serve it with the handler")
    st_config = _read(stage / ST_CONFIG_FILE)
    if st_config.get("do_lower_case"):
        raise TeiIncompatibleError(
            f"{ST_CONFIG_FILE} says do_lower_case: TEI passes the text to tokenizer.json unchanged; serve it with "
            "the handler"
        )
    if not (stage / "tokenizer.json").is_file():
        raise TeiIncompatibleError(
            "no tokenizer.json (a fast tokenizer): TEI loads only tokenizer.json; save the tokenizer with "
            "transformers' AutoTokenizer(..., use_fast=True).save_pretrained, or serve it with the handler"
        )
    written = []
    wanted_pooling = {**_read(stage / POOLING_FILE), **pooling_config(pooling)}
    if _read(stage / POOLING_FILE) != wanted_pooling:
        wanted_pooling.setdefault("word_embedding_dimension", _hidden_size(stage))
        _write(stage / POOLING_FILE, wanted_pooling)
        written.append(POOLING_FILE)
    if st_config.get("max_seq_length") != max_seq_length:
        _write(stage / ST_CONFIG_FILE, {**st_config, "max_seq_length": max_seq_length, "do_lower_case": False})
        written.append(ST_CONFIG_FILE)
    try:
        folder = read_folder(stage)
    except TeiLoadError as error:
        raise TeiIncompatibleError(f"TEI would not start with it: {error}") from None
    if folder.model_type in CUDA_ONLY_MODEL_TYPES:
        raise TeiIncompatibleError(
            f"model_type {folder.model_type!r}: TEI 1.8.2 serves it only on a CUDA GPU in float16 with flash "
            "attention, so no CPU check (or CPU instance) can hold it to the references"
        )
    if (folder.pooling, folder.max_input_length) != (pooling, max_seq_length):
        raise TeiIncompatibleError(
            f"TEI would read {folder.pooling} pooling and {folder.max_input_length} tokens from the folder, the "
            f"manifest says {pooling} and {max_seq_length}"
        )
    return written


def _hidden_size(stage: Path) -> int | None:
    size = _read(stage / "config.json").get("hidden_size")
    return size if isinstance(size, int) else None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TeiIncompatibleError(f"{path.name} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The staged file may be a copy of a link into a cache: replace it, never write through it.
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
