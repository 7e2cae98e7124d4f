"""Fixtures for the serving handler and packager: a tiny random BERT built in tmp, and its packaged artifact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# Before transformers/huggingface_hub are imported: nothing in these tests may reach a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

_WORD_TEXT = (
    "the a an of to and in is it that for on with as was be by this are or from at not have "
    "which one you all were can there but been has their more when will would no if out so what "
    "up about into than them some time could its only other new these two may first then do "
    "any like my now over such our man me even most made after also did many before must "
    "through back years where much your way well down should because each just those people "
    "how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three embedding vector model search query text "
    "quick brown fox jumps lazy dog password reset email access"
)
WORDS = tuple(_WORD_TEXT.split())
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_POSITIONS = 64


def build_tiny_bert(target: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT with a WordPiece tokenizer over WORDS."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    vocab = [
        *SPECIAL,
        *sorted(set(WORDS)),
        *list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-"),
        *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"],
    ]
    vocab_file = target / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # from_pretrained on a directory holding only vocab.txt works in transformers 4 and 5 alike
    # (the constructor's vocab argument changed between them); saving adds tokenizer.json.
    tokenizer = BertTokenizerFast.from_pretrained(str(target), do_lower_case=True, model_max_length=MAX_POSITIONS)
    tokenizer.save_pretrained(str(target))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(target), safe_serialization=True)
    return target


def add_sentence_transformers_files(
    model_dir: Path, pooling: str = "mean", normalize: bool = True, max_seq_length: int = 24
) -> Path:
    """The modules.json / 1_Pooling / sentence_bert_config.json that sentence-transformers writes."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (model_dir / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (model_dir / "1_Pooling").mkdir(exist_ok=True)
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": pooling == "max",
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        ),
        encoding="utf-8",
    )
    (model_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}), encoding="utf-8"
    )
    (model_dir / "README.md").write_text("not shipped\n", encoding="utf-8")
    return model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain Hugging Face model directory (no sentence-transformers files)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-hf") / "model")


@pytest.fixture(scope="session")
def tiny_st_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights laid out like a sentence-transformers model (mean pooling, Normalize, 24 tokens)."""
    target = tmp_path_factory.mktemp("tiny-st") / "model"
    shutil.copytree(tiny_model_dir, target)
    return add_sentence_transformers_files(target)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A per-test copy of the tiny model that a test may change."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from serving.inference import Encoder

    return Encoder(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_package(tiny_st_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The tiny sentence-transformers-style model packaged once (including the fresh-process check)."""
    from esdeploy.packaging import PackageRequest, package

    output = tmp_path_factory.mktemp("dist") / "tiny-st" / "model.tar.gz"
    return package(
        PackageRequest(
            model_dir=tiny_st_model_dir,
            model_id="tiny-st",
            output=output,
            region="us-east-1",
            instance_type="ml.g5.xlarge",
        )
    )
