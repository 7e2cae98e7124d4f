"""The local TEI stand-in (python -m esdeploy.local.tei_standin) over HTTP: TEI 1.8.2's routes, bodies, limits and
errors on SageMaker's container contract, its vectors those of the CPU model, and its answers checked by
schemathesis against TEI's own published OpenAPI document of that version."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chalicelib.adapters.serving_wire import container_environment, decode_answer_bytes
from chalicelib.domain.serving import Serving
from tests.serving.test_local_endpoint import Running

REPO_ROOT = Path(__file__).resolve().parents[2]
# TEI's OpenAPI document of the version esdeploy deploys, exactly as published:
# https://github.com/huggingface/text-embeddings-inference/blob/v1.8.2/docs/openapi.json (tag v1.8.2, commit
# d7af1fcc509902d8cc66cebf5a61c5e8e000e442). It is third-party data, never committed with the code: it is
# read from the shared/ folder beside the checkout (where the project's shared material lives), or from a
# shared/ folder inside it (ignored by git); ESDEPLOY_TEI_OPENAPI names another copy.
TEI_OPENAPI_SHA256 = "aed63f10f57301e5416ba34853f286e393760841b0ddee220cd3499e474dd11a"
_TEI_OPENAPI_PLACES = [REPO_ROOT.parent / "shared" / "tei" / "openapi-1.8.2.json",
                       REPO_ROOT / "shared" / "tei" / "openapi-1.8.2.json"]
TEI_OPENAPI = Path(os.environ.get("ESDEPLOY_TEI_OPENAPI")
                   or next((place for place in _TEI_OPENAPI_PLACES if place.exists()), _TEI_OPENAPI_PLACES[0]))
# The operations the stand-in serves; the rest of TEI's API (/rerank, /predict, /tokenize, ...) is not esdeploy's.
SERVED_PATHS = ("/embed", "/info", "/health")
SEED = 20261207


def start(folder: Path, **env: str) -> Running:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "esdeploy.local.tei_standin", "--artifact", str(folder), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env},
        cwd=REPO_ROOT,
    )
    return Running(proc)


def stop(running: Running) -> None:
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def tei(tiny_st_model_dir: Path) -> Iterator[Running]:
    """The stand-in with the environment SageMaker gives TEI's container (HF_MODEL_ID=/opt/ml/model, ...)."""
    running = start(tiny_st_model_dir, **container_environment(Serving.TEI))
    port = running.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)
    running.base_url = f"http://127.0.0.1:{port}"
    running.wait_for(r"ready: TEI stand-in, mean pooling, float32")
    yield running
    stop(running)


def embed(tei: Running, body: object, path: str = "/invocations") -> requests.Response:
    return requests.post(f"{tei.base_url}{path}", json=body, timeout=30)


def test_invocations_answer_a_bare_list_with_the_cpu_models_vectors(tei: Running, tiny_st_model_dir: Path) -> None:
    from serving.inference import Encoder

    texts = ["the quick brown fox", "ok", "embedding vector model search " * 20]
    answer = embed(tei, {"inputs": texts})

    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    decoded = decode_answer_bytes(answer.content)
    assert decoded.serving is Serving.TEI and len(decoded.vectors) == 3
    reference = Encoder(tiny_st_model_dir, device="cpu", dtype="float32").encode(texts)
    for got, want in zip(decoded.vectors, reference.tolist(), strict=True):
        assert sum(a * b for a, b in zip(got, want, strict=True)) > 0.99999  # unit vectors: cosine
    assert embed(tei, {"inputs": "ok"}, "/embed").json() == [decoded.vectors[1]]


def test_more_than_32_inputs_is_teis_413_with_its_error_shape(tei: Running) -> None:
    answer = embed(tei, {"inputs": ["ok"] * 33})

    assert answer.status_code == 413
    assert answer.json() == {"error": "batch size 33 > maximum allowed batch size 32", "error_type": "Validation"}
    assert embed(tei, {"inputs": ["ok"] * 32}).status_code == 200


def test_auto_truncate_cuts_long_texts_and_truncate_false_refuses_them(tei: Running) -> None:
    long_text = "embedding vector model search " * 20  # well past the model's 24 tokens

    assert embed(tei, {"inputs": [long_text]}).status_code == 200  # AUTO_TRUNCATE=true, as esdeploy sets it
    refused = embed(tei, {"inputs": [long_text], "truncate": False})

    assert refused.status_code == 413
    assert re.fullmatch(r"Input validation error: `inputs` must have less than 24 tokens\. Given: \d+",
                        refused.json()["error"])


def test_normalize_dimensions_and_empty_inputs_as_tei(tei: Running) -> None:
    raw = embed(tei, {"inputs": "ok", "normalize": False}).json()[0]
    unit = embed(tei, {"inputs": "ok"}).json()[0]
    assert abs(sum(x * x for x in unit) - 1) < 1e-5 and abs(sum(x * x for x in raw) - 1) > 1e-3
    assert len(embed(tei, {"inputs": "ok", "dimensions": 8}).json()[0]) == 8
    assert embed(tei, {"inputs": "ok", "dimensions": 0}).json()["error"] == (
        "Input validation error: `dimensions` should be positive"
    )
    empty = embed(tei, {"inputs": [""]})
    assert (empty.status_code, empty.json()["error"]) == (413, "Input validation error: `inputs` cannot be empty")


def test_bodies_axum_refuses_are_plain_text(tei: Running) -> None:
    untyped = requests.post(f"{tei.base_url}/invocations", data=b'{"inputs": "ok"}', timeout=10)
    broken = requests.post(f"{tei.base_url}/invocations", data=b'{"inputs": ', timeout=10,
                           headers={"Content-Type": "application/json"})
    wrong = embed(tei, {"inputs": "ok", "normalize": "yes"})
    missing = embed(tei, {"text": "ok"})

    assert (untyped.status_code, untyped.text) == (415, "Expected request with `Content-Type: application/json`")
    assert broken.status_code == 400 and broken.text.startswith("Failed to parse the request body as JSON")
    assert wrong.status_code == 422 and "expected a boolean" in wrong.text
    assert missing.status_code == 422 and missing.text.endswith("missing field `inputs`")
    assert wrong.headers["Content-Type"].startswith("text/plain")


def test_ping_health_and_info(tei: Running) -> None:
    assert requests.get(f"{tei.base_url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{tei.base_url}/health", timeout=10).content == b""
    info = requests.get(f"{tei.base_url}/info", timeout=10).json()
    assert info["model_id"] == "/opt/ml/model" and info["version"] == "1.8.2"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert (info["max_input_length"], info["max_client_batch_size"], info["auto_truncate"]) == (24, 32, True)
    assert requests.get(f"{tei.base_url}/rerank", timeout=10).status_code == 404


def test_without_hf_model_id_it_does_not_start(tiny_st_model_dir: Path) -> None:
    """TEI's SageMaker entrypoint refuses to start without HF_MODEL_ID: so does the stand-in."""
    env = {k: v for k, v in container_environment(Serving.TEI).items() if k != "HF_MODEL_ID"}
    running = start(tiny_st_model_dir, **env, HF_MODEL_ID="")

    running.wait_for(r"failed: TeiLoadError: HF_MODEL_ID must be set")
    assert running.proc.wait(timeout=30) == 1


def _tei_document() -> Path:
    if not TEI_OPENAPI.is_file():
        pytest.skip(
            f"TEI's OpenAPI document is not at {TEI_OPENAPI}: put https://github.com/huggingface/"
            "text-embeddings-inference/blob/v1.8.2/docs/openapi.json there (or name it in ESDEPLOY_TEI_OPENAPI)"
        )
    assert hashlib.sha256(TEI_OPENAPI.read_bytes()).hexdigest() == TEI_OPENAPI_SHA256, (
        f"{TEI_OPENAPI} is not TEI 1.8.2's published document"
    )
    return TEI_OPENAPI


def _schemathesis(tei: Running, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    document = _tei_document()
    config = tmp_path / "schemathesis.toml"
    config.write_text('[checks.negative_data_rejection]\nexpected-statuses = ["400", "413", "415", "422"]\n')
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", str(document), "--url", tei.base_url,
        *[option for path in SERVED_PATHS for option in ("--include-path", path)],
        "--seed", str(SEED), "--workers", "1", "--request-timeout", "30",
        "--suppress-health-check", "all", "--warnings", "off", *args,
    ]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_schemathesis_valid_requests_get_teis_documented_answers(tei: Running, tmp_path: Path) -> None:
    """Every request the document calls valid is answered with a status, content type and body the document
    declares for it (a 4xx where TEI's own limits refuse it: 32 inputs, the token limit, `dimensions`)."""
    run = _schemathesis(tei, tmp_path, "--mode", "positive", "--checks", "all",
                        "--exclude-checks", "positive_data_acceptance", "--max-examples", "40")

    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    assert re.search(r"\b([5-9]\d|\d{3,}) generated", run.stdout), run.stdout[-3000:]


def test_schemathesis_invalid_requests_are_refused_without_a_server_error(tei: Running, tmp_path: Path) -> None:
    """Bodies the document calls invalid are refused with a 4xx, never a 5xx. Their answers are axum's (TEI's
    web framework), in plain text and with statuses TEI's document does not list (415, 422 for a body of the
    wrong shape): the stand-in answers as TEI does, so the conformance checks apply to valid requests only."""
    run = _schemathesis(tei, tmp_path, "--mode", "negative",
                        "--checks", "not_a_server_error,negative_data_rejection", "--max-examples", "30")

    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]


DYING_STACK = """
import os, signal, sys
from pathlib import Path
from chalicelib.domain.serving import Serving
from chalicelib.ports import VariantSpec
from esdeploy.local.hosting import start_endpoint_process
spec = VariantSpec("esdlocal-tiny-0-1", "tiny", "t", "", "", "ml.c6i.large", 1, serving=Serving.TEI)
process = start_endpoint_process(Path(sys.argv[1]), Path(sys.argv[2]), sys.executable, spec)
print(process.pid, flush=True)
for line in process.stdout:
    if line.startswith(sys.argv[3]):
        break
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_tei_variant_never_outlives_the_stack_that_started_it(tiny_st_model_dir: Path, tmp_path: Path) -> None:
    """The local hosting starts the stand-in for a tei variant, with the endpoint's lifeline: a stack killed
    with `kill -9` while it serves takes the stand-in with it, and its folder."""
    from esdeploy.local.endpoint import READY
    from tests.serving.test_local_endpoint_lifeline import alive, wait_gone

    workdir = tmp_path / "state" / "endpoints" / "esdlocal-tiny-0-1" / "run"
    stack = subprocess.Popen(
        [sys.executable, "-c", DYING_STACK, str(tiny_st_model_dir), str(workdir), READY],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert stack.stdout is not None
    pid = int(stack.stdout.readline())
    try:
        assert "esdeploy.local.tei_standin" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert stack.wait(timeout=120) == -signal.SIGKILL  # after the stand-in said it is ready
        assert wait_gone(pid, timeout=30), f"the TEI stand-in {pid} outlived its stack"
        assert not workdir.exists()
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
