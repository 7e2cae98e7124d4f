"""The serving handler runs inside the endpoint container, where chalicelib is not: it keeps its own copy of
the manifest contract's names and of its reading of the fields it serves by. These cases prove the copies agree
with chalicelib/domain/manifest.py, so a manifest the gate accepts the handler serves, and the other way round."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain import manifest as contract
from serving import inference


def test_the_handler_names_the_manifest_and_its_poolings_as_the_contract_does() -> None:
    assert inference.MANIFEST_NAME == contract.MANIFEST_NAME
    assert inference.POOLING_MODES == contract.POOLING_MODES


def contract_accepts(pooling: Any, normalize: Any, max_seq_length: Any) -> bool:
    try:
        contract.read_pooling(pooling)
        contract.read_normalize(normalize)
        contract.read_max_seq_length(max_seq_length)
    except contract.ManifestFieldError:
        return False
    return True


VALUES = [
    ("mean", True, 24),
    ("cls", False, 1),
    ("max", True, 64),
    ("median", True, 24),
    ("MEAN", True, 24),
    (None, True, 24),
    ("mean", "yes", 24),
    ("mean", 1, 24),
    ("mean", None, 24),
    ("mean", True, 0),
    ("mean", True, -3),
    ("mean", True, True),
    ("mean", True, 24.0),
    ("mean", True, "24"),
]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("copies") / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.mark.parametrize(("pooling", "normalize", "max_seq_length"), VALUES)
def test_the_handler_serves_exactly_the_settings_the_contract_accepts(
    model_dir: Path, pooling: Any, normalize: Any, max_seq_length: Any
) -> None:
    written = {"pooling": pooling, "normalize": normalize, "max_seq_length": max_seq_length}
    (model_dir / inference.MANIFEST_NAME).write_text(json.dumps(written), encoding="utf-8")
    try:
        config = inference.load_encoder_config(model_dir)
        served = True
    except inference.ModelConfigError:
        served = False
    assert served is contract_accepts(pooling, normalize, max_seq_length)
    if served:
        assert (config.pooling, config.normalize, config.max_seq_length) == (pooling, normalize, max_seq_length)
