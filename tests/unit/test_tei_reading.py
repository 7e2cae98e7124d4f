"""Unit tests: TEI 1.8.2's reading of a model folder and of a request body, as the stand-in and the packager use
them (no torch: files and JSON only)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from esdeploy.local.tei_model import EmbedInput, TeiLoadError, read_folder
from esdeploy.local.tei_requests import BodyRejection, parse_embed_request

JSON = "application/json"


def folder(tmp_path: Path, model_type: str = "bert", pooling: dict[str, object] | None = None,
           st_config: dict[str, object] | None = None, **config: object) -> Path:
    root = tmp_path / "model"
    root.mkdir(exist_ok=True)
    (root / "config.json").write_text(json.dumps(
        {"architectures": ["BertModel"], "model_type": model_type, "max_position_embeddings": 512, **config}
    ))
    (root / "tokenizer.json").write_text("{}")
    if pooling is not None:
        (root / "1_Pooling").mkdir(exist_ok=True)
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if st_config is not None:
        (root / "sentence_bert_config.json").write_text(json.dumps(st_config))
    return root


MEAN = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}


def test_pooling_from_1_pooling_and_the_limit_from_sentence_bert_config(tmp_path: Path) -> None:
    read = read_folder(folder(tmp_path, pooling=MEAN, st_config={"max_seq_length": 128}))
    assert (read.model_type, read.pooling, read.max_input_length, read.position_offset) == ("bert", "mean", 128, 0)


def test_without_those_files_a_bert_pools_by_cls_and_takes_its_position_limit(tmp_path: Path) -> None:
    """TEI's own defaults, which differ from the handler's mean pooling: why the packager writes both files."""
    read = read_folder(folder(tmp_path))
    assert (read.pooling, read.max_input_length) == ("cls", 512)


def test_roberta_positions_start_after_the_padding_index(tmp_path: Path) -> None:
    read = read_folder(folder(tmp_path, "xlm-roberta", pooling=MEAN, pad_token_id=1))
    assert (read.position_offset, read.max_input_length) == (2, 510)


def test_the_pooling_variable_wins_over_the_file(tmp_path: Path) -> None:
    root = folder(tmp_path, pooling=MEAN)
    assert read_folder(root, "cls").pooling == "cls" and read_folder(root, "last-token").pooling == "last_token"
    with pytest.raises(TeiLoadError, match="invalid value 'max' for '--pooling"):
        read_folder(root, "max")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda root: (root / "tokenizer.json").unlink(), "only supports fast tokenizers"),
        (lambda root: (root / "config.json").write_text(json.dumps({"model_type": "bert"})),
         "missing field `architectures`"),
        (lambda root: (root / "config.json").write_text(json.dumps(
            {"architectures": ["T5Model"], "model_type": "t5", "max_position_embeddings": 512})),
         "model_type 't5' is not one TEI 1.8.2 loads"),
        (lambda root: (root / "config.json").write_text(json.dumps(
            {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
             "max_position_embeddings": 512})), "classifier or reranker"),
        (lambda root: (root / "1_Pooling" / "config.json").write_text(json.dumps(
            {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True})),
         "is not supported"),
        (lambda root: (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"})),
         "missing field `pooling_mode_cls_token`"),
    ],
)
def test_what_tei_would_not_start_with_is_named(tmp_path: Path, change: object, reason: str) -> None:
    root = folder(tmp_path, pooling=MEAN)
    change(root)  # type: ignore[operator]
    with pytest.raises(TeiLoadError, match=reason):
        read_folder(root)


def test_a_model_type_without_bert_in_its_name_needs_a_pooling(tmp_path: Path) -> None:
    with pytest.raises(TeiLoadError, match="could not find a pooling configuration"):
        read_folder(folder(tmp_path, "mpnet"))


def test_request_bodies_are_read_as_serde_reads_teis_embed_request() -> None:
    single = parse_embed_request(b'{"inputs": "a text", "truncate": null, "unknown": 1}', JSON)
    assert single.single and single.inputs == (EmbedInput(text="a text"),) and single.truncate is None
    ids = parse_embed_request(b'{"inputs": [101, 7, 102]}', "application/json; charset=utf-8")
    assert ids.single and ids.inputs == (EmbedInput(ids=(101, 7, 102)),)
    batch = parse_embed_request(b'{"inputs": ["a", [7]], "normalize": false, "dimensions": 4}', JSON)
    assert not batch.single and len(batch.inputs) == 2 and (batch.normalize, batch.dimensions) == (False, 4)
    # An empty list is a single input of no token ids (serde tries the variants in order), not an empty batch.
    assert parse_embed_request(b'{"inputs": []}', JSON).single


@pytest.mark.parametrize(
    ("body", "content_type", "status", "said"),
    [
        (b'{"inputs": "x"}', None, 415, "Expected request with `Content-Type: application/json`"),
        (b'{"inputs": "x"}', "text/plain", 415, "Content-Type: application/json"),
        (b'{"inputs": ', JSON, 400, "Failed to parse the request body as JSON"),
        (b'{"inputs": NaN}', JSON, 400, "Failed to parse the request body as JSON"),
        (b'{"inputs": "\\ud800"}', JSON, 400, "lone leading surrogate"),
        (b'{"text": "x"}', JSON, 422, "missing field `inputs`"),
        (b'{"inputs": [true]}', JSON, 422, "did not match any variant of untagged enum Input"),
        (b'{"inputs": [-1]}', JSON, 422, "did not match any variant of untagged enum Input"),
        (b'{"inputs": "x", "normalize": null}', JSON, 422, "invalid type: null, expected a boolean"),
        (b'{"inputs": "x", "dimensions": -2}', JSON, 422, "invalid value: integer `-2`, expected usize"),
        (b'{"inputs": "x", "truncation_direction": "left"}', JSON, 422, "unknown variant `left`"),
        (b'{"inputs": "x", "inputs": "y"}', JSON, 422, "duplicate field `inputs`"),
        (b'["x"]', JSON, 422, "expected struct EmbedRequest"),
    ],
)
def test_what_axum_refuses_before_tei_sees_it(body: bytes, content_type: str | None, status: int, said: str) -> None:
    with pytest.raises(BodyRejection, match=said) as refused:
        parse_embed_request(body, content_type)
    assert refused.value.status == status
