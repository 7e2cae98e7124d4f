"""End to end: the local stack in a subprocess, a tiny real model, deploy -> swap -> invoke -> delete."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from esdeploy import Client
from tests.console_script import installed_esdeploy
from tests.e2e.conftest import aws_env, processes_mentioning
from tests.e2e.packaged import SECOND_MODEL, PackagedModels

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "tiny_e2e.model"


def wait_for(api: str, kind: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = requests.get(f"{api}/{kind}/{task_id}", timeout=10).json()
        if task["status"] in {"done", "failed", "refused", "canceled"}:
            return task
        time.sleep(0.3)
    raise AssertionError(f"{kind} {task_id} still {task['status']}/{task['stage']} after {timeout} s")


def wait_for_stage(api: str, task_id: str, stage: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = requests.get(f"{api}/deploy/{task_id}", timeout=10).json()
        if task["stage"] == stage or task["status"] in {"done", "failed", "refused", "canceled"}:
            return task
        time.sleep(0.2)
    raise AssertionError(f"deploy {task_id} still {task['status']}/{task['stage']} after {timeout} s")


def embedded_client(stack: dict[str, Any]) -> Client:
    """esdeploy.Client with boto3 clients of the embedded AWS (as AWS_ENDPOINT_URL would give them)."""
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=stack["region"])
    return Client(
        stack["api_url"],
        ssm_prefix=stack["ssm_prefix"],
        ssm_client=session.client("ssm", endpoint_url=stack["aws_endpoint"]),
        runtime_client=session.client("sagemaker-runtime", endpoint_url=stack["aws_endpoint"]),
    )


def test_the_startup_lines_are_ready_to_paste(stack: dict[str, Any]) -> None:
    """The second shell needs both: where the API is (ESDEPLOY_API; the alias path the embedder reads and the
    log file `esdeploy logs` reads beside it) and where the embedded AWS is."""
    startup = stack["handle"].log_path.read_text()
    exports = [line.strip() for line in startup.splitlines() if line.strip().startswith("export ")]
    assert exports == [
        f"export ESDEPLOY_API={stack['api_url']} ESDEPLOY_SSM_PREFIX=/esdeploy/local "
        f"ESDEPLOY_LOG_FILE={stack['state']}/esdeploy.log",
        f"export AWS_ENDPOINT_URL={stack['aws_endpoint']} AWS_ACCESS_KEY_ID=local "
        "AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1",
    ]


def test_doctor_finds_the_local_stack_ready(stack: dict[str, Any], outside_repo: Path) -> None:
    """`esdeploy doctor --stage local` with the second shell's exports: the embedded AWS answers what
    doctor asks an account (the stack, its roles simulated with esdeploy/iam's evaluator, SageMaker's
    quotas, the service-linked role), and a stack fresh from `esdeploy local` is ready. The failure
    of each check is tests/cli/test_doctor.py's, on the same embedded AWS in-process."""
    done = cli(stack, outside_repo, "doctor", "--stage", "local", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [line.split(":", 1)[0] for line in done.stdout.splitlines() if line.startswith(("ok", "PROBLEM"))]
    assert all(check.startswith("ok") for check in checks), done.stdout
    names = {check.split(None, 1)[1] for check in checks}
    assert {"stack", "api", "service-linked role", "role deploy_worker", "serving image", "quota ml.g5.xlarge",
            "dead letters deploy tasks"} <= names, names
    assert "stage local is ready" in done.stdout


def test_full_lifecycle_on_the_local_stack(
    stack: dict[str, Any], tiny_st_model: Path, tmp_path: Path, outside_repo: Path
) -> None:
    api = stack["api_url"]
    assert requests.get(f"{api}/health", timeout=5).json()["status"] == "ok"
    packaged = subprocess.run(
        [installed_esdeploy(), "package", str(tiny_st_model), "--model-id", MODEL,
         "--output", str(tmp_path / "model.tar.gz"), "--upload", stack["artifact_upload_url"]],
        cwd=outside_repo, env=aws_env(stack), capture_output=True, text=True, timeout=300,
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    # Said before the packaging time is spent: where the upload goes, here the embedded AWS, not an account.
    assert f"the upload goes to {stack['artifact_upload_url']} on the endpoint {stack['aws_endpoint']}" in (
        packaged.stderr.replace("\n", "")
    )

    blue = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": {"bake_seconds": 3}}, timeout=10).json()
    blue = wait_for(api, "deploy", blue["task_id"])
    assert blue["status"] == "done", blue
    # The real packager's upload is what the deploy pinned: the content-addressed key and its hash.
    content = json.loads((tmp_path / "manifest.json").read_text())["content_sha256"]
    assert blue["config"]["content_hash"] == content
    assert blue["config"]["model_data_url"] == f"{stack['artifact_upload_url']}/{MODEL}/{content}/model.tar.gz"
    answer = requests.post(f"{api}/models/{MODEL}/invoke", json={"inputs": ["hello world", "quick fox"]},
                           timeout=30).json()
    assert answer["dimension"] == 32 and len(answer["embeddings"]) == 2
    assert answer["endpoint_name"] == blue["endpoint_name"]
    norm = sum(x * x for x in answer["embeddings"][0]) ** 0.5
    assert abs(norm - 1) < 1e-4  # the manifest says normalise, and the real handler did
    # An application's embedder: the alias from SSM, straight to the endpoint through the embedded AWS's
    # InvokeEndpoint; cached for an hour, so only a refusal can move it to the next variant.
    embedder = embedded_client(stack).embedder(MODEL, ttl_seconds=3600)
    direct = embedder.embed(["hello world", "quick fox"])
    assert direct.endpoint_name == blue["endpoint_name"]
    assert direct.vectors[0] == pytest.approx(answer["embeddings"][0], abs=1e-6)

    green = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": {"bake_seconds": 3}}, timeout=10).json()
    green = wait_for_stage(api, green["task_id"], "baking")
    assert (green["status"], green["stage"]) == ("processing", "baking"), green
    # During the bake green serves and blue is kept for a one-write rollback.
    alias = requests.get(f"{api}/models/{MODEL}", timeout=10).json()
    assert alias["endpoint_name"] == green["endpoint_name"]
    assert alias["previous_endpoint_name"] == blue["endpoint_name"]
    swapped = requests.post(f"{api}/models/{MODEL}/invoke", json={"inputs": ["hello world"]}, timeout=30).json()
    assert swapped["endpoint_name"] == green["endpoint_name"]
    assert swapped["embeddings"][0] == pytest.approx(answer["embeddings"][0], abs=1e-5)  # same weights
    green = wait_for(api, "deploy", green["task_id"])
    assert green["status"] == "done" and "no watched alarm in ALARM" in green["detail"], green

    # After the bake the blue endpoint process is gone.
    deadline = time.time() + 60
    while time.time() < deadline and requests.get(f"{api}/models/{MODEL}", timeout=10).json()["previous_endpoint_name"]:
        time.sleep(0.5)
    assert requests.get(f"{api}/models/{MODEL}", timeout=10).json()["previous_endpoint_name"] is None
    # The alias drops `previous` first, then the endpoint process is stopped.
    while time.time() < deadline and processes_mentioning(blue["endpoint_name"]):
        time.sleep(0.2)
    assert processes_mentioning(blue["endpoint_name"]) == []
    assert len(processes_mentioning(green["endpoint_name"])) == 1
    # The embedder still has blue cached: SageMaker's "not found" sends it to the alias once, then to green.
    after = embedder.embed(["hello world"])
    assert after.endpoint_name == green["endpoint_name"] and embedder.re_resolved == 1
    assert after.vectors[0] == pytest.approx(answer["embeddings"][0], abs=1e-5)

    deletion = requests.post(f"{api}/delete", json={"model_id": MODEL, "reason": "e2e"}, timeout=10).json()
    deletion = wait_for(api, "delete", deletion["task_id"])
    assert deletion["status"] == "done", deletion
    assert requests.get(f"{api}/models", timeout=10).json() == {"models": []}
    deadline = time.time() + 30
    while time.time() < deadline and processes_mentioning(green["endpoint_name"]):
        time.sleep(0.2)
    assert processes_mentioning(green["endpoint_name"]) == []
    assert requests.get(f"{api}/delete-status/{MODEL}", timeout=10).json()["task_id"] == deletion["task_id"]


def test_an_artifact_that_cannot_load_fails_the_deploy(stack: dict[str, Any]) -> None:
    """Its manifest passes the gate, but the model in it does not load: the endpoint fails, so does the deploy."""
    import boto3

    from tests.fakes.artifacts import publish_to_s3

    env = aws_env(stack)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    publish_to_s3(s3, stack["artifact_upload_url"], "broken")  # a manifest, then config.json "{}" and no code/
    api = stack["api_url"]
    task = requests.post(f"{api}/deploy", json={"model_id": "broken"}, timeout=10).json()
    task = wait_for(api, "deploy", task["task_id"])
    assert task["status"] == "failed"
    assert "failed" in task["detail"] and task["endpoint_name"] in task["detail"]
    assert requests.get(f"{api}/models/broken", timeout=10).status_code == 404


def test_a_file_that_is_not_an_artifact_is_refused_at_submit(stack: dict[str, Any]) -> None:
    import boto3

    env = aws_env(stack)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    bucket, prefix = stack["artifact_upload_url"][5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/junk/model.tar.gz", Body=b"this is not a tarball")
    answer = requests.post(
        f"{stack['api_url']}/deploy",
        json={"model_id": "junk", "config": {"model_data_url": f"s3://{bucket}/{prefix}/junk/model.tar.gz"}},
        timeout=10,
    )
    assert answer.status_code == 422 and answer.json()["field"] == "config.model_data_url"
    assert "is not a readable .tar.gz with a manifest.json first" in answer.json()["detail"]


def cli(stack: dict[str, Any], cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The installed command in the README's second shell: ESDEPLOY_API and AWS_ENDPOINT_URL exported."""
    return subprocess.run(
        [installed_esdeploy(), "--poll-interval", "0.3", *args],
        cwd=cwd, env=aws_env(stack), capture_output=True, text=True, timeout=timeout,
    )


def test_the_cli_drives_deploy_swap_invoke_delete(
    stack: dict[str, Any], packaged_models: PackagedModels, outside_repo: Path
) -> None:
    # Packaged and uploaded as `esdeploy package --upload` does; the lifecycle test above runs that command itself.
    model = packaged_models.upload(stack, SECOND_MODEL)

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return cli(stack, outside_repo, *args, timeout=timeout)

    first = run("--json", "deploy", model, "--bake-seconds", "2", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    blue = json.loads(first.stdout)
    assert blue["status"] == "done" and blue["stage"] == "finished"
    logged = run("logs", blue["task_id"])  # the local stack's log file, as its export line names it
    assert logged.returncode == 0, logged.stderr
    assert "deploy done" in logged.stdout and "stage=verifying" in logged.stdout
    assert "http_method=GET" not in logged.stdout, "the CLI's own status polls are left out"

    # What the person who started `esdeploy local` saw meanwhile: one readable line per thing.
    terminal = stack["handle"].log_path.read_text(errors="replace").splitlines()
    assert not [line for line in terminal if line.lstrip().startswith("{")], "no JSON line on the terminal"
    seen = [line[10:] for line in terminal]  # without the time
    assert any(line.startswith("api       POST /deploy -> 200") and blue["task_id"] in line for line in seen)
    for told in (f"task      deploy {blue['task_id']} {model}: queued (pending)  deploy task accepted via http",
                 f"endpoint  {blue['endpoint_name']} Creating",
                 f"endpoint  {blue['endpoint_name']} InService"):
        assert told in seen, told
    assert any(line.startswith(f"task      deploy {blue['task_id']} {model}: finished (done)") for line in seen)
    polls = [line for line in seen if line.startswith(f"api       GET /deploy/{blue['task_id']} -> 200")]
    assert polls and any(line.endswith("more times") for line in polls), "a poll that repeats is counted"

    # The reindex window: the candidate waits beside blue until promoted; --wait stops there.
    second = run("--json", "deploy", model, "--bake-seconds", "2", "--manual-promotion",
                 "--autoscaling", "1:2:100", "--wait")
    assert second.returncode == 0, second.stdout + second.stderr
    candidate = json.loads(second.stdout)
    assert (candidate["status"], candidate["stage"]) == ("processing", "awaiting_promotion"), candidate
    through = run("--json", "invoke", model, "re-embed me", "--candidate")
    assert through.returncode == 0, through.stderr
    assert json.loads(through.stdout)["endpoint_name"] == candidate["endpoint_name"]
    still_blue = json.loads(run("--json", "model", model).stdout)
    assert still_blue["endpoint_name"] == blue["endpoint_name"]
    assert still_blue["candidate_endpoint_name"] == candidate["endpoint_name"]
    promoted = run("--json", "promote", candidate["task_id"], "--wait")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    green = json.loads(promoted.stdout)
    assert green["status"] == "done" and green["stage"] == "finished", green
    [swap] = [e for e in green["events"] if e["stage"] == "baking" and "is live" in (e.get("detail") or "")]
    assert "autoscaling 1-2 instances" in swap["detail"]

    listed = run("models", "--json")  # a global option after the command, as in the AWS CLI
    assert listed.returncode == 0
    live = {m["embedding_model_id"]: m for m in json.loads(listed.stdout)["models"]}
    assert live[model]["endpoint_name"] == green["endpoint_name"]

    invoked = run("--json", "invoke", model, "hello world", "quick brown fox")
    assert invoked.returncode == 0, invoked.stderr
    answer = json.loads(invoked.stdout)
    assert answer["endpoint_name"] == green["endpoint_name"] and len(answer["embeddings"]) == 2

    deleted = run("delete", model, "--wait")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    status = run("--json", "status", "--model", model, "--delete")
    assert json.loads(status.stdout)["status"] == "done"
    missing = run("model", model)
    assert missing.returncode == 5 and "is not deployed" in missing.stderr


def test_the_local_stack_is_open_on_loopback_without_an_authorizer_to_warn_about(stack: dict[str, Any]) -> None:
    """Deployed stages require SigV4; `esdeploy local` says ESDEPLOY_API_AUTH=none (its stage in
    .chalice/config.json), so it answers unsigned requests on 127.0.0.1 and Chalice has no
    IAMAuthorizer to warn "not supported in local mode" about on every start."""
    api = stack["api_url"]
    assert api.startswith("http://127.0.0.1:")
    assert requests.get(f"{api}/models", timeout=10).status_code == 200
    assert requests.get(f"{api}/deploy/nobody", timeout=10).status_code == 404
    log = stack["handle"].log_path.read_text(errors="replace")
    assert "IAMAuthorizer" not in log, log
