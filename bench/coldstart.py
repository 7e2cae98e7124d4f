"""Benchmark: import time of `app` (the Lambda's cold-start import) next to chalice + boto3 alone.

Each sample is a fresh interpreter; the two are interleaved so that machine noise hits both,
and medians are compared. Run: .venv/bin/python bench/coldstart.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = {
    "chalice + boto3": "import chalice, boto3",
    "app (esdeploy)": "import app",
    "app + first boto3 clients": (
        "import app; from chalicelib import wiring; from chalicelib.config import load_settings; "
        "wiring.aws_adapters(load_settings(ENV))"
    ),
}
ENV = {
    "ESDEPLOY_TASKS_TABLE": "t", "ESDEPLOY_MODELS_TABLE": "m", "ESDEPLOY_REQUESTS_QUEUE": "r",
    "ESDEPLOY_DEPLOY_QUEUE": "d", "ESDEPLOY_TEARDOWN_QUEUE": "x", "ESDEPLOY_ARTIFACT_BUCKET": "b",
    "ESDEPLOY_DEFAULT_IMAGE_URI": "i", "ESDEPLOY_SAGEMAKER_ROLE_ARN": "arn",
}


def sample(code: str) -> float:
    program = (
        f"ENV = {ENV!r}\nimport os, time\nos.environ.setdefault('AWS_DEFAULT_REGION', 'us-east-1')\n"
        f"start = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    for _ in range(args.repeats):
        for name, code in SNIPPETS.items():
            times[name].append(sample(code))
    baseline = statistics.median(times["chalice + boto3"])
    print(f"{'import':<28}{'median ms':>10}{'min ms':>10}{'x baseline':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28}{median * 1000:>10.1f}{min(values) * 1000:>10.1f}{median / baseline:>12.2f}")


if __name__ == "__main__":
    main()
