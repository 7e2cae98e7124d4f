"""Operator tool layer: the `esdeploy` command line (commands stay thin; the work lives in modules)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from chalicelib.domain.names import ID_RULE, is_valid_id
from chalicelib.domain.serving import Dtype, Serving
from esdeploy import __version__, exits, extras, packaging, s3upload, task_logs, views
from esdeploy.acceptance.cli_command import acceptance as acceptance_command
from esdeploy.api_client import DEFAULT_API_URL, DEFAULT_TIMEOUT_SECONDS
from esdeploy.cli_help import HELP_OPTION_NAMES
from esdeploy.cli_runtime import CliHooks, EsdeployGroup, Runtime, api_url, runtime, usage_error
from esdeploy.client import AwsSetupError
from esdeploy.exits import Exit
from esdeploy.images import DEFAULT_INSTANCE_TYPE, default_region
from esdeploy.local.environment import CREATION_SECONDS as LOCAL_CREATION_SECONDS
from esdeploy.manifest import ManifestError, validate_model_id
from esdeploy.progress import DEFAULT_POLL_SECONDS, DEFAULT_WAIT_TIMEOUT_SECONDS

app = typer.Typer(
    name="esdeploy",
    help="Blue/green deployment of embedding models to Amazon SageMaker.",
    epilog="Global options may also follow the command: esdeploy models --json (--output json). "
    + exits.help_line(),
    no_args_is_help=True,
    # typer's --install-completion / --show-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    cls=EsdeployGroup,
    # Plain click help: rich markup would eat "[default: ...]" and show "<bool>" after every flag.
    rich_markup_mode=None,
    context_settings={"max_content_width": 110, "help_option_names": HELP_OPTION_NAMES},
)
console = Console(stderr=True)

Wait = Annotated[bool, typer.Option("--wait", help="Show the task's stages live until it ends; exit code says how.")]
WaitTimeout = Annotated[
    float,
    typer.Option("--wait-timeout", min=0, metavar="SECONDS", help="Give up waiting after this many seconds (exit 4)."),
]
TaskIdOption = Annotated[
    str | None,
    typer.Option(
        "--id", metavar="CLIENT_TASK_ID", help="Client task id: sending the same request again returns the same task."
    ),
]


def s3_destination(value: str | None) -> str | None:
    if value is not None:
        try:
            s3upload.parse_destination(value)
        except s3upload.UploadError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def autoscaling_option(value: str | None) -> dict[str, int] | None:
    """MIN:MAX:TARGET, e.g. 2:6:100 (instances, and invocations per instance a minute)."""
    if value is None:
        return None
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(f"{value!r} is not MIN:MAX:TARGET, e.g. 2:6:100")
    low, high, target = (int(p) for p in parts)
    return {"min_instances": low, "max_instances": high, "target_invocations_per_instance": target}


def model_id_option(value: str) -> str:
    try:
        return validate_model_id(value)
    except ManifestError as exc:
        raise typer.BadParameter(str(exc)) from None


def checked_model_id(value: str | None) -> str | None:
    """Every command checks the ids it is given before it sends anything: a wrong one is a usage
    error (exit 2) wherever it is typed, not an HTTP 4xx on one command and exit 2 on another."""
    if value is not None and not is_valid_id(value):
        raise typer.BadParameter(f"{value!r} is not a model id ({ID_RULE})")
    return value


def checked_task_id(value: str | None) -> str | None:
    if value is not None and not is_valid_id(value):
        raise typer.BadParameter(f"{value!r} is not a task id ({ID_RULE})")
    return value


ModelId = Annotated[str, typer.Argument(callback=checked_model_id, help="Embedding model id.")]


class OutputFormat(StrEnum):
    JSON = "json"
    TABLE = "table"


class LogFormat(StrEnum):
    """`esdeploy local`'s lines (esdeploy/local/readable.py)."""

    TEXT = "text"
    JSON = "json"


def show_version(value: bool | None) -> None:
    if value:
        typer.echo(f"esdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    api: Annotated[
        str,
        typer.Option(
            "--api", envvar="ESDEPLOY_API", callback=api_url, metavar="URL", help="Base URL of the esdeploy API."
        ),
    ] = DEFAULT_API_URL,
    iam: Annotated[
        bool,
        typer.Option(
            "--iam",
            envvar="ESDEPLOY_API_IAM",
            help="Sign requests with SigV4 (every deployed stage: dev and prod; not esdeploy local).",
        ),
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="AWS region: to sign for with --iam (default: the execute-api URL's, else AWS_REGION, else the "
            "profile's), and of CloudWatch Logs for `logs`.",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="AWS profile for --iam signing, uploads, the embedder and logs (its region is used too).",
        ),
    ] = None,
    output: Annotated[
        OutputFormat | None,
        typer.Option("--output", case_sensitive=False, help="json: the API's JSON answer and nothing else."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The same as --output json.")] = False,
    timeout: Annotated[
        float, typer.Option(
            "--timeout", envvar="ESDEPLOY_TIMEOUT", min=0.1, metavar="SECONDS", help="Seconds to wait for one answer."
        )
    ] = DEFAULT_TIMEOUT_SECONDS,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            envvar="ESDEPLOY_POLL_INTERVAL",
            min=0.1,
            metavar="SECONDS",
            help="Seconds between polls while waiting.",
        ),
    ] = DEFAULT_POLL_SECONDS,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Blue/green deployment of embedding models to Amazon SageMaker."""
    if json_output and output == OutputFormat.TABLE:
        raise usage_error("--json and --output table contradict each other")
    hooks = ctx.obj if isinstance(ctx.obj, CliHooks) else CliHooks()
    ctx.obj = Runtime(
        api=api,
        iam=iam,
        region=region,
        json=json_output or output == OutputFormat.JSON,
        timeout=timeout,
        poll_interval=poll_interval,
        profile=profile,
        hooks=hooks,
    )


@app.command()
def deploy(
    ctx: typer.Context,
    model_id: ModelId,
    artifact: Annotated[
        str | None,
        typer.Option(
            "--artifact",
            metavar="S3_URL",
            help="s3://.../model.tar.gz (default: what MODEL_ID/latest.json names now).",
        ),
    ] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type", help="e.g. ml.g5.xlarge.")] = None,
    instance_count: Annotated[
        int | None, typer.Option("--instance-count", min=1, metavar="N", help="Instances behind green.")
    ] = None,
    image_uri: Annotated[str | None, typer.Option("--image-uri", help="Serving container image.")] = None,
    bake_seconds: Annotated[
        int | None, typer.Option("--bake-seconds", min=0, help="How long the previous variant stays up.")
    ] = None,
    skip_parity_check: Annotated[
        bool,
        typer.Option(
            "--skip-parity-check",
            help="The artifact has no reference embeddings: check shape and norms only (the task says so).",
        ),
    ] = False,
    manual_promotion: Annotated[
        bool,
        typer.Option(
            "--manual-promotion",
            help="Keep the checked candidate beside the live one (stage awaiting_promotion) until "
            "`esdeploy promote TASK_ID`: time to re-embed a corpus with it. --wait stops there.",
        ),
    ] = False,
    promotion_timeout: Annotated[
        int | None,
        typer.Option(
            "--promotion-timeout",
            min=60,
            metavar="SECONDS",
            help="With --manual-promotion: seconds the candidate waits for its promote (default: the stage's, 24 h).",
        ),
    ] = None,
    autoscaling: Annotated[
        str | None,
        typer.Option(
            "--autoscaling",
            metavar="MIN:MAX:TARGET",
            help="Target tracking on green: MIN-MAX instances at TARGET invocations per instance a minute "
            "(default: the live variant's policy, if it has one).",
        ),
    ] = None,
    rollback_alarms: Annotated[
        list[str] | None,
        typer.Option(
            "--rollback-alarm",
            metavar="NAME",
            help="A CloudWatch alarm that, in ALARM during the bake, rolls the alias back (repeatable).",
        ),
    ] = None,
    max_5xx_per_minute: Annotated[
        int | None,
        typer.Option(
            "--max-5xx-per-minute",
            min=0,
            metavar="N",
            help="Green's own rollback alarm: more 5XX invocation errors a minute than this during the bake "
            "(default: the stage's).",
        ),
    ] = None,
    max_latency_ms: Annotated[
        int | None,
        typer.Option(
            "--max-latency-ms",
            min=1,
            help="Green's own rollback alarm: model latency above this many milliseconds during the bake "
            "(default: the stage's).",
        ),
    ] = None,
    serving: Annotated[
        Serving | None,
        typer.Option(
            "--serving",
            help="What serves it: handler (default) or tei (text-embeddings-inference, GPU or CPU by the instance "
            "type); the artifact must have been packaged for it.",
        ),
    ] = None,
    dtype: Annotated[
        Dtype | None,
        typer.Option("--dtype", help="Precision (default: float16 on a GPU, float32 on a CPU)."),
    ] = None,
    task_id: TaskIdOption = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = DEFAULT_WAIT_TIMEOUT_SECONDS,
) -> None:
    """Deploy a model: a new (green) endpoint, smoke-tested, swapped in behind the alias, then baked."""
    if promotion_timeout is not None and not manual_promotion:
        raise usage_error("--promotion-timeout goes with --manual-promotion")
    scaling = autoscaling_option(autoscaling)
    rt = runtime(ctx)
    with rt.guard():
        handle = rt.client().deploy(
            model_id,
            artifact=artifact,
            instance_type=instance_type,
            instance_count=instance_count,
            image_uri=image_uri,
            bake_seconds=bake_seconds,
            skip_parity_check=skip_parity_check,
            manual_promotion=manual_promotion,
            promotion_timeout_seconds=promotion_timeout,
            autoscaling=scaling,
            rollback_alarms=rollback_alarms or None,
            max_5xx_errors_per_minute=max_5xx_per_minute,
            max_model_latency_ms=max_latency_ms,
            serving=serving.value if serving else None,
            dtype=dtype.value if dtype else None,
            task_id=task_id,
        )
        rt.task_answer(handle, wait=wait, wait_timeout=wait_timeout)


@app.command()
def delete(
    ctx: typer.Context,
    model_id: ModelId,
    reason: Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why; kept with the task.")] = None,
    task_id: TaskIdOption = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = DEFAULT_WAIT_TIMEOUT_SECONDS,
) -> None:
    """Delete a model: unalias it and tear down every variant."""
    rt = runtime(ctx)
    with rt.guard():
        handle = rt.client().delete(model_id, task_id=task_id, reason=reason)
        rt.task_answer(handle, wait=wait, wait_timeout=wait_timeout)


@app.command()
def status(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Argument(callback=checked_task_id, help="A deploy or delete task id.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", metavar="MODEL_ID", callback=checked_model_id, help="The newest task of this model instead."
        ),
    ] = None,
    deletion: Annotated[bool, typer.Option("--delete", help="With --model: its newest deletion task.")] = False,
    wait: Wait = False,
    wait_timeout: WaitTimeout = DEFAULT_WAIT_TIMEOUT_SECONDS,
) -> None:
    """Show a task (by id, or the newest of a model) with its events; --wait follows it."""
    if (task_id is None) == (model is None):
        raise usage_error("give a TASK_ID or --model MODEL_ID (one of them)")
    if deletion and model is None:
        raise usage_error("--delete goes with --model")
    rt = runtime(ctx)
    with rt.guard():
        client = rt.client()
        if task_id is not None:
            handle = client.task(task_id)
        else:
            assert model is not None
            handle = client.newest_task(model, "delete" if deletion else "deploy")
        if wait:
            rt.task_answer(handle, wait=True, wait_timeout=wait_timeout)
        else:
            rt.show(handle.task, views.task_details(handle.task, plain=rt.plain))


@app.command()
def cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(callback=checked_task_id, help="A deploy task id.")],
    wait: Wait = False,
    wait_timeout: WaitTimeout = DEFAULT_WAIT_TIMEOUT_SECONDS,
) -> None:
    """Cancel a deploy that has not ended: its green variant is torn down (during the bake, after the
    alias went back to the previous variant)."""
    rt = runtime(ctx)
    with rt.guard():
        handle = rt.client().cancel(task_id)
        rt.task_answer(handle, wait=wait, wait_timeout=wait_timeout)


@app.command()
def promote(
    ctx: typer.Context,
    task_id: Annotated[
        str,
        typer.Argument(
            callback=checked_task_id, help="A deploy task awaiting promotion (from --manual-promotion)."
        ),
    ],
    wait: Wait = False,
    wait_timeout: WaitTimeout = DEFAULT_WAIT_TIMEOUT_SECONDS,
) -> None:
    """Make the candidate of a deploy awaiting promotion live; the previous variant stays up for the bake."""
    rt = runtime(ctx)
    with rt.guard():
        handle = rt.client().promote(task_id)
        rt.task_answer(handle, wait=wait, wait_timeout=wait_timeout, promoted=True)


@app.command()
def rollback(ctx: typer.Context, model_id: ModelId) -> None:
    """Point the model's alias back at its previous variant (while the bake period keeps it up)."""
    rt = runtime(ctx)
    with rt.guard():
        alias = rt.client().rollback(model_id)
        rt.show(alias, views.rollback_view(alias, plain=rt.plain))


@app.command()
def models(ctx: typer.Context) -> None:
    """List deployed models and the endpoints behind their aliases."""
    rt = runtime(ctx)
    with rt.guard():
        answer = rt.client().models()
        rt.show(answer, views.models_table(answer["models"], plain=rt.plain))


@app.command()
def model(ctx: typer.Context, model_id: ModelId) -> None:
    """Show one model's alias: live and previous endpoint, last swap."""
    rt = runtime(ctx)
    with rt.guard():
        alias = rt.client().model(model_id)
        rt.show(alias, views.alias_view(alias, plain=rt.plain))


@app.command()
def invoke(
    ctx: typer.Context,
    model_id: ModelId,
    texts: Annotated[list[str], typer.Argument(metavar="TEXT", help="One or more texts to embed.")],
    normalize: Annotated[
        bool | None,
        typer.Option("--normalize/--no-normalize", help="L2-normalise (default: as the model was packaged)."),
    ] = None,
    candidate: Annotated[
        bool, typer.Option("--candidate", help="Embed with the candidate awaiting promotion, not the live variant.")
    ] = False,
) -> None:
    """Embed texts with whatever variant of the model is live now (or its candidate awaiting promotion)."""
    rt = runtime(ctx)
    with rt.guard():
        answer = rt.client().invoke(model_id, texts, normalize=normalize, candidate=candidate)
        rt.show(answer, views.invoke_view(model_id, texts, answer, plain=rt.plain))


@app.command()
def logs(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Argument(callback=checked_task_id, help="A deploy or delete task id.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", metavar="MODEL_ID", callback=checked_model_id, help="A model's lines, of every task."),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="ESDEPLOY_LOG_FILE",
            metavar="PATH",
            help="The local stack's log file (`esdeploy local` exports it); without it: CloudWatch Logs.",
        ),
    ] = None,
    stage: Annotated[
        str, typer.Option("--stage", envvar="ESDEPLOY_STAGE", help="Stage whose log groups to query on AWS.")
    ] = "dev",
    since_hours: Annotated[
        float, typer.Option("--since-hours", min=0.1, help="How far back to look on AWS (hours).")
    ] = 72.0,
) -> None:
    """Show what happened to a task (or, with --model, to a model lately): its log lines, without the
    reads of it (status polls); CloudWatch Logs Insights over every function on AWS, the log file locally."""
    if (task_id is None) == (model is None):
        raise usage_error("give a TASK_ID or --model MODEL_ID (one of them)")
    wanted = task_logs.of_task(task_id) if task_id is not None else task_logs.of_model(str(model))
    rt = runtime(ctx)
    with rt.guard():
        try:
            if log_file is not None:
                lines = task_logs.from_file(log_file, wanted)
                where = str(log_file)
            else:
                lines = task_logs.from_insights(
                    rt.client().aws_client("logs"),
                    stage,
                    wanted,
                    since_seconds=since_hours * 3600,
                    clock=rt.hooks.clock,
                    sleep=rt.hooks.sleep,
                )
                where = f"the log groups of stage {stage} (last {since_hours:g} h)"
        except task_logs.TaskLogsError as error:
            rt.err.print(Text(f"error: {error}", style="red"), soft_wrap=True)
            raise typer.Exit(Exit.ERROR) from None
    if rt.json:
        typer.echo(json.dumps({wanted.key: wanted.value, "lines": [line.record for line in lines]}, indent=2))
    else:
        for line in lines:
            rt.out.print(Text(line.text(with_task=model is not None)), soft_wrap=True)
    if not lines:
        hint = f"is the {wanted.noun} id right?"
        if task_id is not None:
            hint += f" (`esdeploy status {task_id}` says whether the task exists)"
        if log_file is None:
            hint += "; --since-hours looks further back"
        rt.err.print(Text(f"error: no log lines of {wanted} in {where}: {hint}", style="red"), soft_wrap=True)
        raise typer.Exit(Exit.ERROR)


@app.command()
def doctor(
    ctx: typer.Context,
    stage: Annotated[
        str,
        typer.Option(
            "--stage", envvar="ESDEPLOY_STAGE", metavar="STAGE", help="The stage to check (stack esdeploy-STAGE)."
        ),
    ] = "dev",
) -> None:
    """Check, read-only, that the account and a deployed stage are ready: one line per check, exit 1 on a problem."""
    from esdeploy import doctor as checks

    raise typer.Exit(checks.run(runtime(ctx), stage))


@app.command()
def local(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Loopback port of the HTTP API.")] = 8000,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Endpoints, logs, stack.json (default: a temp dir, removed at exit)."
        ),
    ] = None,
    sweep_every: Annotated[
        float, typer.Option("--sweep-every", metavar="SECONDS", help="Seconds between sweeper runs.")
    ] = 60.0,
    endpoint_creation_seconds: Annotated[
        float,
        typer.Option(
            "--endpoint-creation-seconds",
            min=0,
            max=3600,
            help="Seconds a local endpoint stays Creating at least (a GPU endpoint on AWS: 300-1200); "
            "meanwhile deleting it is refused, as SageMaker refuses.",
        ),
    ] = LOCAL_CREATION_SECONDS,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            help="text: one readable line per request, task step, endpoint change, alarm, warning; "
            "json: the app's JSON log lines (the log file has them either way).",
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Run the whole product on this machine (embedded AWS, the API, workers, local endpoints); Ctrl-C stops it."""
    require_extra("local", "local")
    from esdeploy.local.run import run

    raise typer.Exit(run(port, state_dir, sweep_every, endpoint_creation_seconds, log_format.value))


@app.command()
def package(
    ctx: typer.Context,
    model_dir: Annotated[
        Path, typer.Argument(help="Hugging Face / sentence-transformers model directory (safetensors weights).")
    ],
    model_id: Annotated[
        str,
        typer.Option(
            "--model-id",
            metavar="MODEL_ID",
            callback=model_id_option,
            help="Embedding model id (letters, digits, . _ -).",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="PATH", help="Where model.tar.gz goes (default: dist/MODEL_ID/model.tar.gz)."
        ),
    ] = None,
    upload: Annotated[
        str | None,
        typer.Option(
            "--upload",
            callback=s3_destination,
            metavar="S3_URL",
            help="s3://bucket/prefix: checked first, then uploaded to <prefix>/<model-id>/<content hash>/ "
            "(never overwritten) and made the model's latest version.",
        ),
    ] = None,
    instance_type: Annotated[str, typer.Option("--instance-type", help="Picks the GPU or CPU image.")] = (
        DEFAULT_INSTANCE_TYPE
    ),
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="Image region (default: the --upload bucket's; else AWS_REGION or us-east-1).",
        ),
    ] = None,
    pooling: Annotated[
        str | None, typer.Option("--pooling", metavar="mean|cls|max", help="Pooling (default: the model's).")
    ] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalise (default: the model's).")
    ] = None,
    max_seq_length: Annotated[
        int | None, typer.Option("--max-seq-length", metavar="TOKENS", help="Token window (default: the model's).")
    ] = None,
    probe: Annotated[
        list[str] | None, typer.Option("--probe", metavar="TEXT", help="A probe text for the smoke test (repeatable).")
    ] = None,
    check_python: Annotated[
        str | None, typer.Option("--check-python", help="Interpreter for the fresh-process check.")
    ] = None,
    serving: Annotated[
        Serving,
        typer.Option(
            "--serving",
            help="What will serve it: handler (code/inference.py in the archive) or tei (text-embeddings-inference "
            "reads the model folder; refused, with the reason, when TEI cannot serve it as the references say).",
        ),
    ] = Serving.HANDLER,
) -> None:
    """Build model.tar.gz (weights, tokenizer, serving code, manifest), check it loads, optionally upload."""
    require_extra("package", "package")
    destination = _checked_destination(upload, runtime(ctx)) if upload else None
    image_region = _image_region(region, destination)
    request = packaging.PackageRequest(
        model_dir=model_dir,
        model_id=model_id,
        output=output or Path("dist") / model_id / "model.tar.gz",
        region=image_region,
        instance_type=instance_type,
        pooling=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
        probe_texts=tuple(probe) if probe else packaging.PROBE_TEXTS,
        check_python=check_python or sys.executable,
        serving=serving,
    )
    earlier = packaging.earlier_build(request.output)
    try:
        with console.status("packaging") as status:
            result = packaging.package(request, progress=lambda step: status.update(step))
    except (packaging.PackagingError, OSError) as exc:  # OSError: an --output folder that cannot be written, ...
        console.print(Text(f"package failed: {exc}", style="red"), soft_wrap=True)
        raise typer.Exit(Exit.FAILED) from None
    _print_summary(result, earlier)
    if destination is not None:
        try:
            uploaded = s3upload.upload_artifact(
                result.archive,
                result.manifest_path,
                f"s3://{destination.bucket}/{destination.prefix}",
                model_id,
                result.manifest.content_sha256,
                s3_client=destination.session.client("s3"),
                console=console,
                metadata={"esdeploy-content-sha256": result.manifest.content_sha256},
                serving=Serving(result.manifest.serving),
            )
        except s3upload.UploadError as exc:
            console.print(Text(f"upload failed: {exc}", style="red"), soft_wrap=True)
            raise typer.Exit(Exit.FAILED) from None
        if uploaded.already_there:
            console.print(
                Text(f"already uploaded: {uploaded.archive_url} (same content hash; kept as it is)"), soft_wrap=True
            )
        else:
            console.print(Text(f"uploaded {uploaded.archive_url} and {uploaded.manifest_url}"), soft_wrap=True)
        console.print(Text(f"latest version of {model_id}: {uploaded.pointer_url} -> {uploaded.content_hash}"),
                      soft_wrap=True)
    # stdout carries only the artifact location, so scripts can capture it.
    typer.echo(str(result.archive))


app.command(name="acceptance")(acceptance_command)


def require_extra(extra: str, command: str) -> None:
    """`pip install esdeploy` brings the client and the CLI; `command` needs what `esdeploy[extra]` adds."""
    lacking = extras.missing(extra)
    if lacking:
        console.print(
            Text(
                f"error: esdeploy {command} needs {', '.join(lacking)}, not installed here: "
                f"pip install 'esdeploy[{extra}]' (from a checkout: pip install -e '.[{extra}]')",
                style="red",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(Exit.FAILED)


def _image_region(region: str | None, destination: s3upload.Destination | None) -> str:
    """SageMaker pulls the image and reads the artifact in the region it runs in: the bucket's."""
    bucket_region = destination.region if destination is not None else None
    if destination is not None and region and bucket_region and region != bucket_region:
        console.print(
            Text(
                f"package failed: --region {region} picks the serving image of {region}, but s3://{destination.bucket}"
                f" is in {bucket_region}; SageMaker deploys there and pulls images only from its own region: "
                f"pass --region {bucket_region} (or upload to a bucket in {region})",
                style="red",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(Exit.FAILED)
    return region or bucket_region or default_region()


def _checked_destination(upload: str, rt: Runtime) -> s3upload.Destination:
    """Where --upload goes, checked before minutes of packaging are spent on an upload that cannot work."""
    try:
        # --profile's session (and region); without it boto3's own default, as the AWS CLI does.
        session = rt.client().boto3_session() if rt.profile else None
        destination = s3upload.check_destination(upload, session=session)
    except (s3upload.UploadError, AwsSetupError) as exc:
        said = exc.cli_message if isinstance(exc, AwsSetupError) else str(exc)
        console.print(Text(f"upload check failed: {said}", style="red"), soft_wrap=True)
        raise typer.Exit(Exit.FAILED) from None
    in_region = f" in {destination.region}" if destination.region else ""
    console.print(
        Text(f"the upload goes to s3://{destination.bucket}/{destination.prefix} on {destination.where}{in_region}"),
        soft_wrap=True,
    )
    return destination


def _print_summary(result: packaging.PackageResult, earlier: str | None) -> None:
    plain = not console.is_terminal
    console.print(views.package_summary(result, plain=plain, replaced=earlier), soft_wrap=plain)
