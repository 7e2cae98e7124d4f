"""Each command's request, its --json output, its human output and its exit codes (scripted fake API)."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from esdeploy.cli import app
from esdeploy.progress import STAGE_WIDTH
from tests.cli.conftest import URL, Cli, task

DEPLOY_TRAIL = [
    ("queued", "pending"),
    ("preflight", "processing"),
    ("creating", "processing"),
    ("waiting", "processing"),
    ("verifying", "processing"),
    ("swapping", "processing"),
    ("baking", "processing"),
]
ALIAS = {
    "embedding_model_id": "m1",
    "endpoint_name": "esd-m1-aaaa-bbbb",
    "previous_endpoint_name": "esd-m1-aaaa-cccc",
    "task_id": "t1",
    "swapped_at": "2025-01-01T00:05:00.000000Z",
    "version": 3,
}


def test_deploy_sends_only_the_given_config_keys(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("--json", "deploy", "m1", "--artifact", "s3://b/models/m1/model.tar.gz",
                 "--instance-count", "2", "--bake-seconds", "0", "--id", "client-1")
    assert result.exit_code == 0, result.output
    sent = cli.api.sent[0]
    assert (sent.method, sent.path) == ("POST", "/deploy")
    assert sent.body == {
        "embedding_model_id": "m1",
        "id": "client-1",
        "config": {"model_data_url": "s3://b/models/m1/model.tar.gz", "initial_instance_count": 2, "bake_seconds": 0},
    }
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(result.stdout) == task()


def test_deploy_without_options_sends_no_config(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("deploy", "m1", "--instance-type", "ml.g5.2xlarge", "--image-uri", "img:1")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body == {
        "embedding_model_id": "m1", "config": {"instance_type": "ml.g5.2xlarge", "image_uri": "img:1"}
    }
    cli.api.sent.clear()
    cli("deploy", "m1")
    assert cli.api.sent[0].body == {"embedding_model_id": "m1"}


def test_deploy_human_output_names_the_task_and_how_to_follow_it(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("deploy", "m1")
    assert "deploy task t1 for m1: pending (queued)" in result.stdout
    assert "esdeploy status t1 --wait" in result.stdout


@pytest.mark.parametrize(
    ("status", "stage", "code"),
    [
        ("done", "finished", 0),
        ("failed", "waiting", 1),
        ("failed", "baking", 1),  # a rollback alarm went off during the bake: the alias is back on blue
        ("refused", "preflight", 6),
        ("canceled", "creating", 3),
    ],
)
def test_deploy_wait_exit_code_says_how_it_ended(cli: Cli, status: str, stage: str, code: int) -> None:
    trail = DEPLOY_TRAIL[: DEPLOY_TRAIL.index((stage, "processing")) + 1] if stage != "finished" else DEPLOY_TRAIL
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on(
        "GET", "/deploy/t1",
        (200, task("processing", "preflight", trail=DEPLOY_TRAIL[:2])),
        (200, task(status, stage, trail=trail, detail=f"it ended {status}")),
    )
    result = cli("deploy", "m1", "--wait")
    assert result.exit_code == code, result.output
    # No terminal here: one plain line per event, then how it ended.
    assert "+    0.0s  queued" in result.stdout
    assert f"{stage:<{STAGE_WIDTH}} {status:<11} it ended {status}" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith(f"deploy task t1 for m1: {status} ({stage})")
    assert [s.path for s in cli.api.sent] == ["/deploy", "/deploy/t1", "/deploy/t1"]
    assert cli.clock.slept == [1.5, 1.5]


def test_wait_json_prints_only_the_final_task(cli: Cli) -> None:
    final = task("done", "finished", trail=DEPLOY_TRAIL, endpoint_name="esd-m1-x")
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on("GET", "/deploy/t1", (200, task("processing", "creating", trail=DEPLOY_TRAIL[:3])), (200, final))
    result = cli("--json", "--poll-interval", "2", "deploy", "m1", "--wait")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == final
    assert cli.clock.slept == [2.0, 2.0]


def test_wait_timeout_exits_4_and_says_how_to_keep_watching(cli: Cli) -> None:
    running = task("processing", "waiting", trail=DEPLOY_TRAIL[:4])
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on("GET", "/deploy/t1", (200, running))
    result = cli("deploy", "m1", "--wait", "--wait-timeout", "10")
    assert result.exit_code == 4, result.output
    assert "still processing (waiting) after 10.0s" in result.stdout
    assert "esdeploy status t1 --wait" in result.stdout
    assert sum(cli.clock.slept) == pytest.approx(10.0)
    json_result = cli("--json", "deploy", "m1", "--wait", "--wait-timeout", "3")
    assert json_result.exit_code == 4
    assert json.loads(json_result.stdout)["status"] == "processing"
    assert "still processing" in json_result.stderr


def test_wait_rides_out_a_gateway_blip(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on(
        "GET", "/deploy/t1",
        (503, {"message": "Service Unavailable"}),
        (200, task("done", "finished", trail=DEPLOY_TRAIL)),
    )
    result = cli("deploy", "m1", "--wait")
    assert result.exit_code == 0, result.output
    assert "poll failed (HTTP 503: Service Unavailable); retrying" in result.stdout


def test_wait_live_display_shows_every_stage(cli: Cli) -> None:
    cli.api.on("POST", "/delete", (200, task(kind="delete", task_id="d1")))
    cli.api.on("GET", "/delete/d1", (200, task(
        "done", "finished", kind="delete", task_id="d1",
        trail=[("queued", "pending"), ("unaliasing", "processing"), ("tearing_down", "processing")],
    )))
    result = cli("delete", "m1", "--wait", live=True)
    assert result.exit_code == 0, result.output
    for stage in ("queued", "unaliasing", "tearing_down", "finished"):
        assert stage in result.stdout
    assert "delete task d1 for m1: done (finished)" in result.stdout


def test_delete_sends_reason_and_id(cli: Cli) -> None:
    cli.api.on("POST", "/delete", (200, task(kind="delete", reason="old")))
    result = cli("--json", "delete", "m1", "--reason", "old", "--id", "del-1")
    assert result.exit_code == 0
    assert cli.api.sent[0].body == {"embedding_model_id": "m1", "id": "del-1", "reason": "old"}
    assert json.loads(result.stdout)["reason"] == "old"


def test_status_by_id_falls_back_to_delete_tasks(cli: Cli) -> None:
    cli.api.on("GET", "/deploy/d1", (404, {"detail": "Deployment task with ID `d1` is not found"}))
    cli.api.on("GET", "/delete/d1", (200, task("processing", "unaliasing", kind="delete", task_id="d1")))
    result = cli("status", "d1")
    assert result.exit_code == 0, result.output
    assert [s.path for s in cli.api.sent] == ["/deploy/d1", "/delete/d1"]
    assert "delete task d1 for m1: processing (unaliasing)" in result.stdout
    assert "unaliasing" in result.stdout


def test_status_of_an_unknown_task_is_404_exit_5(cli: Cli) -> None:
    result = cli("status", "nope")
    assert result.exit_code == 5
    assert "HTTP 404" in result.stderr and "nope" in result.stderr


@pytest.mark.parametrize(("args", "path"), [
    (["--model", "m1"], "/deploy-status/m1"),
    (["--model", "m1", "--delete"], "/delete-status/m1"),
])
def test_status_by_model(cli: Cli, args: list[str], path: str) -> None:
    cli.api.on("GET", path, (200, task()))
    result = cli("--json", "status", *args)
    assert result.exit_code == 0
    assert cli.api.sent[0].path == path
    assert json.loads(result.stdout)["task_id"] == "t1"


@pytest.mark.parametrize("args", [[], ["t1", "--model", "m1"], ["t1", "--delete"]])
def test_status_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli("status", *args)
    assert result.exit_code == 2
    assert cli.api.sent == []


def test_status_wait_follows_by_kind(cli: Cli) -> None:
    cli.api.on("GET", "/deploy-status/m1", (200, task("processing", "creating", trail=DEPLOY_TRAIL[:3])))
    cli.api.on("GET", "/deploy/t1", (200, task("failed", "waiting", trail=DEPLOY_TRAIL[:4], detail="CUDA OOM")))
    result = cli("status", "--model", "m1", "--wait")
    assert result.exit_code == 1
    assert "failed (waiting): CUDA OOM" in result.stdout


def test_cancel_posts_and_waits_for_canceled(cli: Cli) -> None:
    cli.api.on("POST", "/deploy/t1/cancel", (200, task("processing", "waiting", trail=DEPLOY_TRAIL[:4])))
    cli.api.on("GET", "/deploy/t1", (200, task("canceled", "waiting", trail=DEPLOY_TRAIL[:4], detail="canceled")))
    result = cli("cancel", "t1", "--wait")
    assert result.exit_code == 3, result.output
    assert (cli.api.sent[0].method, cli.api.sent[0].path) == ("POST", "/deploy/t1/cancel")


def test_cancel_of_a_finished_task_is_409(cli: Cli) -> None:
    cli.api.on("POST", "/deploy/t1/cancel", (409, {"detail": "Deployment task `t1` is already done"}))
    result = cli("cancel", "t1")
    assert result.exit_code == 5
    assert "error (HTTP 409): Deployment task `t1` is already done" in result.stderr


def test_rollback(cli: Cli) -> None:
    cli.api.on("POST", "/models/m1/rollback", (200, {**ALIAS, "previous_endpoint_name": None}))
    result = cli("rollback", "m1")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].method == "POST"
    assert "rolled back: m1 is served by esd-m1-aaaa-bbbb again" in result.stdout
    assert "previous endpoint  -" in result.stdout


def test_models_table_and_json(cli: Cli) -> None:
    cli.api.on("GET", "/models", (200, {"models": [ALIAS]}))
    result = cli("models")  # into a pipe: plain lines (tests/cli/test_output.py has the terminal's table)
    assert result.exit_code == 0
    for value in ("MODEL", "LIVE_ENDPOINT", "PREVIOUS_ENDPOINT", "SWAPPED_AT", "TASK",
                  "esd-m1-aaaa-bbbb", "esd-m1-aaaa-cccc", "2025-01-01T00:05:00.000000Z"):
        assert value in result.stdout
    assert json.loads(cli("--json", "models").stdout) == {"models": [ALIAS]}


def test_models_when_none_is_deployed(cli: Cli) -> None:
    cli.api.on("GET", "/models", (200, {"models": []}))
    assert "no models are deployed" in cli("models").stdout


def test_model(cli: Cli) -> None:
    cli.api.on("GET", "/models/m1", (200, ALIAS))
    result = cli("model", "m1")
    assert result.exit_code == 0
    assert "previous endpoint  esd-m1-aaaa-cccc" in result.stdout
    cli.api.on("GET", "/models/m2", (404, {"detail": "Model `m2` is not deployed"}))
    missing = cli("model", "m2")
    assert missing.exit_code == 5 and "Model `m2` is not deployed" in missing.stderr


def test_invoke_sends_inputs_and_previews_vectors(cli: Cli) -> None:
    answer = {"embeddings": [[0.6, 0.8, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]], "model": "m1",
              "dimension": 5, "endpoint_name": "esd-m1-aaaa-bbbb"}
    cli.api.on("POST", "/models/m1/invoke", (200, answer))
    result = cli("invoke", "m1", "hello world", "second text", "--no-normalize")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body == {"inputs": ["hello world", "second text"], "normalize": False}
    assert "dimension 5 · endpoint esd-m1-aaaa-bbbb" in result.stdout
    assert "'hello world'  [ 0.6000,  0.8000,  0.0000,  0.0000, …]  ‖v‖=1.000" in result.stdout
    cli.api.sent.clear()
    raw = cli("--json", "invoke", "m1", "x")
    assert json.loads(raw.stdout) == answer
    assert cli.api.sent[0].body == {"inputs": ["x"]}


def test_error_rendering_names_field_and_active_task(cli: Cli) -> None:
    busy = {"detail": "Model `m1` is busy with deploy task t0", "active_task_id": "t0", "active_task_kind": "deploy"}
    cli.api.on("POST", "/deploy", (409, busy))
    result = cli("deploy", "m1")
    assert result.exit_code == 5
    assert result.stdout == ""
    assert "error (HTTP 409): Model `m1` is busy with deploy task t0" in result.stderr
    assert "active task: t0 (deploy)" in result.stderr
    assert "esdeploy status t0 --wait" in result.stderr
    bad = {"detail": "field `config.bake_seconds`: Input should be greater than or equal to 0",
           "field": "config.bake_seconds"}
    cli.api.on("POST", "/deploy", (422, bad))
    result = cli("--json", "deploy", "m1")
    assert result.exit_code == 5
    assert json.loads(result.stdout) == bad  # scripts get the server's own error body
    # The CLI names its option where the API named its field; --json keeps the API's words.
    assert "option `--bake-seconds`: Input should be greater than or equal to 0" in result.stderr
    assert "option: --bake-seconds" in result.stderr and "config.bake_seconds" not in result.stderr


def test_detail_with_brackets_prints_verbatim(cli: Cli) -> None:
    cli.api.on("GET", "/models/m1", (500, {"detail": "odd [bold]text[/bold] from [somewhere]"}))
    result = cli("model", "m1")
    assert "odd [bold]text[/bold] from [somewhere]" in result.stderr


def test_gateway_403_hints_at_iam(cli: Cli) -> None:
    cli.api.on("GET", "/models", (403, {"message": "Missing Authentication Token"}))
    result = cli("models")
    assert result.exit_code == 5
    assert "HTTP 403): Missing Authentication Token" in result.stderr
    assert "deployed stages, dev and prod, need signed requests: add --iam" in result.stderr


def test_usage_errors_exit_2_as_in_click(cli: Cli) -> None:
    assert cli("deploy").exit_code == 2
    assert cli("deploy", "m1", "--instance-count", "0").exit_code == 2
    assert cli("no-such-command").exit_code == 2
    assert cli("models", "--no-such-flag").exit_code == 2
    assert cli("package", "somewhere").exit_code == 2  # missing --model-id
    assert cli("package", "somewhere", "--model-id", "bad id").exit_code == 2
    assert cli("package", "somewhere", "--model-id", "m1", "--upload", "bucket/models").exit_code == 2
    assert CliRunner().invoke(app, []).exit_code == 2  # bare `esdeploy`: the help, as a usage error
    assert cli.api.sent == []


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost:8000", "ftp://host/x", "http://"])
def test_an_api_url_without_http_scheme_is_a_usage_error(cli: Cli, url: str) -> None:
    result = cli("models", url=url)
    assert result.exit_code == 2
    assert "is not an http:// or https:// URL" in result.stderr
    if "://" not in url:
        assert f"did you mean http://{url}?" in result.stderr
    assert cli.api.sent == []


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--json"],
        ["models", "--api", URL, "--json"],
        ["models", f"--api={URL}", "--json"],
        ["--json", "models"],
    ],
)
def test_global_options_work_after_the_command_too(cli: Cli, args: list[str]) -> None:
    cli.api.on("GET", "/models", (200, {"models": [ALIAS]}))
    result = cli(*args, url="http://elsewhere.test")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"models": [ALIAS]}
    expected_host = "api.test" if any(URL in a for a in args) else "elsewhere.test"
    assert cli.api.sent[0].url.startswith(f"http://{expected_host}/")


def test_a_command_option_keeps_what_looks_like_a_global_one(cli: Cli) -> None:
    cli.api.on("POST", "/delete", (200, task(kind="delete")))
    result = cli("delete", "m1", "--reason", "--json", "--poll-interval", "2")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body["reason"] == "--json"  # the value of --reason, not the global flag
    assert "delete task t1" in result.stdout  # so the output stayed human
    answer = {"embeddings": [[1.0]], "model": "m1", "dimension": 1, "endpoint_name": "esd-m1-aaaa-bbbb"}
    cli.api.on("POST", "/models/m1/invoke", (200, answer))
    after_dashes = cli("invoke", "m1", "--", "--json")
    assert after_dashes.exit_code == 0, after_dashes.output
    assert cli.api.sent[-1].body == {"inputs": ["--json"]}  # after `--` it is a text to embed
    assert "dimension 1" in after_dashes.stdout


def test_api_url_and_options_from_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from esdeploy.cli import app
    from esdeploy.cli_runtime import CliHooks

    monkeypatch.setenv("ESDEPLOY_API", "http://elsewhere.test/api/")
    monkeypatch.setenv("ESDEPLOY_POLL_INTERVAL", "0.5")
    cli.api.on("GET", "/api/models", (200, {"models": []}))
    hooks: Any = CliHooks(session=cli.api.session(), sleep=cli.clock.sleep, clock=cli.clock.time)
    result = cli.runner.invoke(app, ["models"], obj=hooks)
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].path == "/api/models"


def test_ctrl_c_while_waiting_leaves_the_task_running(cli: Cli) -> None:
    from esdeploy.cli import app
    from esdeploy.cli_runtime import CliHooks

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    cli.api.on("POST", "/deploy", (200, task()))
    hooks: Any = CliHooks(session=cli.api.session(), sleep=interrupted, clock=cli.clock.time, live=False)
    result = cli.runner.invoke(app, ["--api", "http://api.test", "deploy", "m1", "--wait"], obj=hooks)
    assert result.exit_code == 130
    assert "the task goes on: esdeploy status t1 --wait" in result.stderr


def test_deploy_manual_promotion_sends_the_config_and_wait_stops_at_the_candidate(cli: Cli) -> None:
    awaiting = [*DEPLOY_TRAIL[:5], ("awaiting_promotion", "processing")]
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on(
        "GET", "/deploy/t1",
        (200, task("processing", "awaiting_promotion", trail=awaiting, endpoint_name="esd-m1-x",
                   promote_by="2025-01-02T00:00:00.000000Z", config={"promotion": "manual"})),
    )
    result = cli("deploy", "m1", "--manual-promotion", "--promotion-timeout", "600", "--wait")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body == {
        "embedding_model_id": "m1", "config": {"promotion": "manual", "promotion_timeout_seconds": 600}
    }
    last = result.stdout.strip().splitlines()[-1]
    assert "candidate esd-m1-x awaits promotion until 2025-01-02T00:00:00.000000Z: esdeploy promote t1" in last
    assert cli("deploy", "m1", "--promotion-timeout", "600").exit_code == 2


def test_promote_posts_and_waits_past_the_candidate_to_done(cli: Cli) -> None:
    awaiting = [*DEPLOY_TRAIL[:5], ("awaiting_promotion", "processing")]
    cli.api.on("POST", "/deploy/t1/promote", (200, task("processing", "awaiting_promotion", trail=awaiting)))
    cli.api.on(
        "GET", "/deploy/t1",
        (200, task("processing", "awaiting_promotion", trail=awaiting)),
        (200, task("done", "finished", trail=[*awaiting, ("swapping", "processing")], endpoint_name="esd-m1-x")),
    )
    result = cli("promote", "t1", "--wait")
    assert result.exit_code == 0, result.output
    assert (cli.api.sent[0].method, cli.api.sent[0].path) == ("POST", "/deploy/t1/promote")
    assert result.stdout.strip().splitlines()[-1].startswith("deploy task t1 for m1: done (finished)")
    cli.api.on("POST", "/deploy/t2/promote", (409, {"detail": "Deployment task `t2` is already canceled"}))
    refused = cli("promote", "t2")
    assert refused.exit_code == 5 and "already canceled" in refused.stderr


def test_invoke_candidate_sends_the_target(cli: Cli) -> None:
    answer = {"embeddings": [[1.0, 0.0]], "dimension": 2, "endpoint_name": "esd-m1-cand", "target": "candidate"}
    cli.api.on("POST", "/models/m1/invoke", (200, answer))
    result = cli("invoke", "m1", "x", "--candidate")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body == {"inputs": ["x"], "target": "candidate"}
    assert "endpoint esd-m1-cand" in result.stdout


def test_deploy_autoscaling_option_sends_the_policy(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("deploy", "m1", "--autoscaling", "2:6:100")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body["config"] == {
        "autoscaling": {"min_instances": 2, "max_instances": 6, "target_invocations_per_instance": 100}
    }
    bad = cli("deploy", "m1", "--autoscaling", "2-6")
    assert bad.exit_code == 2 and "MIN:MAX:TARGET" in bad.output


def test_deploy_bake_options_send_the_rollback_alarms_and_thresholds(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("deploy", "m1", "--rollback-alarm", "search-p99", "--rollback-alarm", "search-errors",
                 "--max-5xx-per-minute", "5", "--max-latency-ms", "800")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body["config"] == {
        "rollback_alarms": ["search-p99", "search-errors"],
        "max_5xx_errors_per_minute": 5,
        "max_model_latency_ms": 800,
    }
    cli.api.sent.clear()
    assert cli("deploy", "m1", "--max-5xx-per-minute", "0").exit_code == 0  # any 5XX at all rolls back
    assert cli.api.sent[0].body["config"] == {"max_5xx_errors_per_minute": 0}
    for bad in (["--max-latency-ms", "0"], ["--max-5xx-per-minute", "-1"], ["--max-latency-ms", "fast"]):
        refused = cli("deploy", "m1", *bad)
        assert refused.exit_code == 2 and bad[0] in refused.output, refused.output
    assert len(cli.api.sent) == 1


def test_status_shows_when_a_deploy_went_live_and_its_bake(cli: Cli) -> None:
    went_live = "2025-01-01T00:00:06.000000Z"
    cli.api.on("GET", "/deploy/t1", (200, task("processing", "baking", trail=DEPLOY_TRAIL, live_at=went_live)))
    result = cli("status", "t1")
    assert result.exit_code == 0, result.output
    assert "deploy task t1 for m1: processing (baking)" in result.stdout
    assert re.search(rf"went live\s+{went_live}", result.stdout)
    cli.api.on("GET", "/deploy/t2", (200, task("processing", "waiting", task_id="t2", trail=DEPLOY_TRAIL[:4])))
    assert "went live" not in cli("status", "t2").stdout  # not live yet: no such row


def test_deploy_serving_and_dtype_options_send_them(cli: Cli) -> None:
    cli.api.on("POST", "/deploy", (200, task()))
    result = cli("deploy", "m1", "--serving", "tei", "--instance-type", "ml.c6i.large", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert cli.api.sent[0].body["config"] == {"serving": "tei", "instance_type": "ml.c6i.large", "dtype": "float32"}
    for bad in (["--serving", "vllm"], ["--dtype", "bfloat16"]):
        refused = cli("deploy", "m1", *bad)
        assert refused.exit_code == 2 and bad[0] in refused.output, refused.output
    assert len(cli.api.sent) == 1
