"""Operator tool layer: `esdeploy acceptance`'s options (registered in esdeploy/cli.py; the work: command.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esdeploy.acceptance.facts import PROBE
from esdeploy.cli_runtime import runtime


def acceptance(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Go ahead (without it: the plan, nothing made).")] = False,
    stage: Annotated[
        str, typer.Option("--stage", help="The stage whose stack (esdeploy-STAGE) names its bucket and roles.")
    ] = "dev",
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", help="Default: the cheapest CPU type with 8 GiB (ml.m5.large).")
    ] = None,
    artifact: Annotated[
        Path | None,
        typer.Option("--artifact", help="A model.tar.gz from esdeploy package (default: all-MiniLM-L6-v2, packaged)."),
    ] = None,
    probe: Annotated[
        list[str] | None, typer.Option("--probe", metavar="NAME", help=f"Also measure: {PROBE} (AWS only).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Where the JSON report goes (default: ./acceptance-RUN_ID.json).")
    ] = None,
    tear_down_only: Annotated[
        bool, typer.Option("--tear-down-only", help="Only remove what a killed run left (listed; --yes removes it).")
    ] = False,
    model_id: Annotated[str | None, typer.Option("--model-id", help="Default: esdeploy-acceptance.")] = None,
    upload: Annotated[
        str | None, typer.Option("--upload", help="s3://bucket/prefix for the artifact (default: the stack's).")
    ] = None,
    ssm_prefix: Annotated[
        str | None,
        typer.Option("--ssm-prefix", envvar="ESDEPLOY_SSM_PREFIX", help="The stage's SSM path (default: the stack's)."),
    ] = None,
    execution_role_arn: Annotated[
        str | None, typer.Option("--execution-role-arn", help="The probe's model role (default: the stack's).")
    ] = None,
    bake_seconds: Annotated[int, typer.Option("--bake-seconds", min=0, help="The bake of v3 and v4.")] = 60,
    rollback_window: Annotated[
        int, typer.Option("--rollback-window", min=30, help="v2's bake: its forced alarm must roll it back within.")
    ] = 900,
    emf_wait: Annotated[int, typer.Option("--emf-wait", min=0, help="Seconds to wait for the EMF metrics.")] = 600,
) -> None:
    """Run the lifecycle on an AWS (sandbox) account; report what only an account shows (docs/infra.md)."""
    from esdeploy.acceptance.command import Acceptance, Request
    from esdeploy.cli import require_extra

    require_extra("package", "acceptance")
    request = Request(
        stage=stage, yes=yes, model_id=model_id, instance_type=instance_type, artifact=artifact, upload=upload,
        ssm_prefix=ssm_prefix,
        execution_role_arn=execution_role_arn, bake_seconds=bake_seconds, rollback_window_seconds=rollback_window,
        emf_wait_seconds=emf_wait, probes=tuple(probe or ()), report=report, tear_down_only=tear_down_only,
    )
    rt = runtime(ctx)
    with rt.guard():
        code = Acceptance(rt.client(), request, rt.out, rt.err, clock=rt.hooks.clock, sleep=rt.hooks.sleep).main()
    raise typer.Exit(code)
