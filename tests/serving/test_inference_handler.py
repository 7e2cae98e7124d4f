"""Tests of the serving handler's contract (model_fn/input_fn/predict_fn/output_fn) on a tiny random BERT."""

from __future__ import annotations

import ast
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import serving.inference as inference
from serving.inference import BadRequestError, EmbedRequest, Encoder, ModelConfigError

from .conftest import add_sentence_transformers_files

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "how do i reset my password",
    "a",
    "",
    "embedding vector model search query text " * 3,
]


def invoke(encoder: Encoder, body: Any, content_type: str | None = "application/json", accept: str | None = None):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    request = inference.input_fn(raw, content_type)
    return json.loads(inference.output_fn(inference.predict_fn(request, encoder), accept))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def test_round_trip_follows_the_wire_contract(tiny_encoder: Encoder) -> None:
    response = invoke(tiny_encoder, {"inputs": TEXTS})

    assert set(response) == {"embeddings", "model", "dimension"}
    assert response["dimension"] == 32
    assert response["model"] == tiny_encoder.model_id
    assert len(response["embeddings"]) == len(TEXTS)
    vectors = torch.tensor(response["embeddings"])
    assert vectors.shape == (len(TEXTS), 32)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)


@pytest.mark.parametrize(
    ("body", "content_type", "count"),
    [
        ('"just one text"', "application/json", 1),
        ('["one", "two"]', "application/json", 2),
        (b'{"inputs": "bytes body"}', "application/json", 1),
        ('{"inputs": ["x"]}', "application/json; charset=utf-8", 1),
        ('{"inputs": ["x"]}', None, 1),
        ('{"inputs": ["x"], "normalize": null, "truncate": null}', "application/json", 1),
    ],
)
def test_accepted_request_shapes(tiny_encoder: Encoder, body: Any, content_type: str | None, count: int) -> None:
    assert len(invoke(tiny_encoder, body, content_type)["embeddings"]) == count


def test_single_string_equals_list_of_one(tiny_encoder: Encoder) -> None:
    single = invoke(tiny_encoder, {"inputs": "the lazy dog"})["embeddings"]
    listed = invoke(tiny_encoder, {"inputs": ["the lazy dog"]})["embeddings"]
    assert single == listed


def test_normalize_false_returns_the_raw_pooled_vector(tiny_encoder: Encoder) -> None:
    raw = torch.tensor(invoke(tiny_encoder, {"inputs": TEXTS, "normalize": False})["embeddings"])
    unit = torch.tensor(invoke(tiny_encoder, {"inputs": TEXTS})["embeddings"])
    assert not torch.allclose(raw.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-3)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), unit, atol=1e-6)


def test_batching_sorting_and_padding_do_not_change_results(tiny_model_dir: Path) -> None:
    encoder = Encoder(tiny_model_dir, device="cpu", dtype="float32", batch_size=2)
    together = encoder.encode(TEXTS)
    alone = torch.cat([encoder.encode([text]) for text in TEXTS])
    assert torch.all(cosine(together, alone) > 0.99999)


def manual_embedding(model_dir: Path, text: str, pooling: str, max_length: int) -> torch.Tensor:
    """What the pooling modes mean, computed the plain way for one unpadded text."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    inputs = tokenizer([text], return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        hidden = model(**inputs)[0][0]
    vector = {"mean": hidden.mean(0), "cls": hidden[0], "max": hidden.max(0).values}[pooling]
    return torch.nn.functional.normalize(vector, dim=0)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_modes_match_a_manual_computation(model_copy: Path, pooling: str) -> None:
    (model_copy / "manifest.json").write_text(json.dumps({"model_id": "m", "pooling": pooling}), encoding="utf-8")
    encoder = Encoder(model_copy, device="cpu", dtype="float32", batch_size=8)
    got = encoder.encode(TEXTS)
    for index, text in enumerate(TEXTS):
        want = manual_embedding(model_copy, text, pooling, encoder.config.max_seq_length)
        assert cosine(got[index], want) > 0.99999, (pooling, text)


def test_settings_come_from_sentence_transformers_files(model_copy: Path) -> None:
    add_sentence_transformers_files(model_copy, pooling="cls", normalize=False, max_seq_length=16)
    settings = inference.derive_encoder_config(model_copy)
    assert (settings.pooling, settings.normalize, settings.max_seq_length) == ("cls", False, 16)


def test_plain_model_defaults_to_mean_and_normalize_with_tokenizer_limit(tiny_model_dir: Path) -> None:
    settings = inference.derive_encoder_config(tiny_model_dir)
    assert (settings.pooling, settings.normalize, settings.max_seq_length) == ("mean", True, 64)


def test_manifest_overrides_model_settings(model_copy: Path) -> None:
    add_sentence_transformers_files(model_copy)
    manifest = {"model_id": "override", "pooling": "max", "normalize": False, "max_seq_length": 8}
    (model_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    settings = inference.load_encoder_config(model_copy)
    assert (settings.model_id, settings.pooling, settings.normalize, settings.max_seq_length) == (
        "override",
        "max",
        False,
        8,
    )


def test_truncation_on_by_default_and_refused_when_off(tiny_encoder: Encoder) -> None:
    long_text = "the quick brown fox " * 40  # far over the tiny model's 64 tokens
    assert len(invoke(tiny_encoder, {"inputs": [long_text]})["embeddings"]) == 1
    with pytest.raises(BadRequestError, match=r"inputs\[1\] is \d+ tokens, over the model's limit of 64"):
        invoke(tiny_encoder, {"inputs": ["short", long_text], "truncate": False})


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ('{"inputs": []}', "application/json", "empty list"),
        ("[]", "application/json", "empty list"),
        ('{"inputs": ["ok", 3]}', "application/json", r"inputs\[1\] is a number, not a string"),
        ('{"inputs": [null]}', "application/json", r"inputs\[0\] is null"),
        ('{"inputs": {"a": 1}}', "application/json", "must be a string or a list of strings, not an object"),
        ("42", "application/json", "must be a string or a list of strings"),
        ('{"text": "x"}', "application/json", "unknown field"),
        ('{"normalize": true}', "application/json", 'missing "inputs"'),
        ('{"inputs": "x", "normalize": "yes"}', "application/json", '"normalize" must be true or false'),
        ('{"inputs": "x", "truncate": 1}', "application/json", '"truncate" must be true or false'),
        ('{"inputs": ["x"', "application/json", "not valid JSON"),
        ("", "application/json", "body is empty"),
        (b"\xff\xfe\x00", "application/json", "not valid"),
        ("[" * 100_000 + "]" * 100_000, "application/json", "not valid JSON"),
        ("a,b", "text/csv", "unsupported content type 'text/csv'"),
        ('{"inputs": ["ok", "a\\ud800"]}', "application/json", r"inputs\[1\] holds a lone surrogate \(U\+D800\)"),
        ('"\\udfff"', "application/json", r"inputs\[0\] holds a lone surrogate \(U\+DFFF\) at character 0"),
    ],
)
def test_bad_requests_are_named_client_errors(
    tiny_encoder: Encoder, body: Any, content_type: str, message: str
) -> None:
    with pytest.raises(BadRequestError, match=message):
        inference.input_fn(body, content_type)


def test_limits_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "MAX_TEXTS", 2)
    with pytest.raises(BadRequestError, match=r"too many texts: 3 > 2 \(ESDEPLOY_SERVING_MAX_TEXTS\)"):
        inference.input_fn('["a", "b", "c"]', "application/json")
    monkeypatch.setattr(inference, "MAX_TEXT_CHARS", 5)
    with pytest.raises(BadRequestError, match=r"inputs\[1\] has 6 characters, over the limit of 5"):
        inference.input_fn('["a", "abcdef"]', "application/json")
    monkeypatch.setattr(inference, "MAX_BODY_BYTES", 10)
    with pytest.raises(BadRequestError, match=r"request body is 20 bytes, over the limit of 10"):
        inference.input_fn('{"inputs": ["abcd"]}', "application/json")
    # Multi-byte characters count as bytes, not characters: 8 characters, 14 bytes.
    with pytest.raises(BadRequestError, match="request body is 14 bytes"):
        inference.input_fn('"äöüäöü"', "application/json")


def test_default_limits() -> None:
    assert (inference.MAX_TEXTS, inference.MAX_BODY_BYTES) == (256, 1024 * 1024)
    assert inference.MAX_TEXT_CHARS > 0


def test_env_limits_parse_or_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDEPLOY_TEST_LIMIT", " 12 ")
    assert inference._env_int("ESDEPLOY_TEST_LIMIT", 5) == 12
    monkeypatch.setenv("ESDEPLOY_TEST_LIMIT", "")
    assert inference._env_int("ESDEPLOY_TEST_LIMIT", 5) == 5
    for bad in ("many", "0", "-3"):
        monkeypatch.setenv("ESDEPLOY_TEST_LIMIT", bad)
        with pytest.raises(ValueError, match="ESDEPLOY_TEST_LIMIT"):
            inference._env_int("ESDEPLOY_TEST_LIMIT", 5)


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "application/json; charset=utf-8"])
def test_output_accepts_json(tiny_encoder: Encoder, accept: str | None) -> None:
    assert invoke(tiny_encoder, ["x"], accept=accept)["dimension"] == 32


def test_output_refuses_other_accept_types(tiny_encoder: Encoder) -> None:
    prediction = inference.predict_fn(EmbedRequest(texts=["x"]), tiny_encoder)
    with pytest.raises(BadRequestError, match="unsupported accept type 'text/csv'"):
        inference.output_fn(prediction, "text/csv")


def test_model_fn_loads_and_names_the_model_from_the_manifest(model_copy: Path) -> None:
    (model_copy / "manifest.json").write_text(json.dumps({"model_id": "named-by-manifest"}), encoding="utf-8")
    encoder = inference.model_fn(str(model_copy))
    assert encoder.model_id == "named-by-manifest"
    assert encoder.device.type == "cpu" and encoder.dtype == torch.float32


def test_missing_weights_fail_the_load(model_copy: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model_copy / "model.safetensors"))
    dropped = next(name for name in weights if "encoder.layer.1" in name)
    del weights[dropped]
    save_file(weights, str(model_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelConfigError, match="weights missing"):
        Encoder(model_copy, device="cpu")


def test_unsupported_sentence_transformers_modules_are_refused(model_copy: Path) -> None:
    add_sentence_transformers_files(model_copy)
    modules = json.loads((model_copy / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (model_copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelConfigError, match="Dense"):
        inference.derive_encoder_config(model_copy)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len"),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, "exactly one"),
        ({"pooling_mode": "weightedmean"}, "weightedmean"),
    ],
)
def test_unsupported_pooling_configs_are_refused(model_copy: Path, config: dict[str, Any], message: str) -> None:
    add_sentence_transformers_files(model_copy)
    (model_copy / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match=message):
        inference.derive_encoder_config(model_copy)


def test_half_precision_stays_close_to_float32(tiny_model_dir: Path, tiny_encoder: Encoder) -> None:
    half = Encoder(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    assert torch.all(cosine(half.encode(TEXTS), tiny_encoder.encode(TEXTS)) > 0.99)


def test_toolkit_passes_context_to_every_function() -> None:
    # The HF toolkit counts parameters: as many as its default (model_dir/data..., context) means
    # "pass the context"; one fewer means "do not". Ours take it, optionally.
    expected = {"model_fn": 2, "input_fn": 3, "predict_fn": 3, "output_fn": 3}
    for name, count in expected.items():
        assert len(inspect.signature(getattr(inference, name)).parameters) == count, name
    assert not hasattr(inference, "transform_fn")  # the toolkit refuses transform_fn next to the others


def test_handler_imports_nothing_the_container_lacks() -> None:
    source = Path(inference.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    import sys

    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "__future__"}
    assert third_party == {"torch", "transformers"}


def test_handler_copies_run_as_a_top_level_module(tmp_path: Path, tiny_model_dir: Path) -> None:
    from esdeploy.artifact_check import load_handler

    shutil.copytree(tiny_model_dir, tmp_path / "artifact")
    (tmp_path / "artifact" / "code").mkdir()
    shutil.copyfile(inference.__file__, tmp_path / "artifact" / "code" / "inference.py")
    module = load_handler(tmp_path / "artifact")
    assert module.__name__ == "inference"
    assert Path(module.__file__).parent == tmp_path / "artifact" / "code"


def test_gpu_from_context_is_ignored_without_cuda() -> None:
    class Context:
        system_properties = {"gpu_id": 0, "model_dir": "/opt/ml/model"}

    if not torch.cuda.is_available():
        assert inference._gpu_from_context(Context()) is None
    assert inference._gpu_from_context(None) is None
