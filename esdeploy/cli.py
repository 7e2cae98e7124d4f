"""Operator tool layer: the `esdeploy` command line (commands stay thin; the work lives in modules)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from esdeploy import packaging, s3upload
from esdeploy.images import DEFAULT_INSTANCE_TYPE, default_region

app = typer.Typer(
    name="esdeploy",
    help="Blue/green deployment of embedding models to Amazon SageMaker.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """Blue/green deployment of embedding models to Amazon SageMaker."""


@app.command()
def package(
    model_dir: Annotated[
        Path, typer.Argument(help="Hugging Face / sentence-transformers model directory (safetensors weights).")
    ],
    model_id: Annotated[str, typer.Option("--model-id", help="Embedding model id (letters, digits, . _ -).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where model.tar.gz goes [default: dist/<model-id>/model.tar.gz]."),
    ] = None,
    upload: Annotated[
        str | None, typer.Option("--upload", help="s3://bucket/prefix: uploads to <prefix>/<model-id>/.")
    ] = None,
    instance_type: Annotated[str, typer.Option("--instance-type", help="Picks the GPU or CPU image.")] = (
        DEFAULT_INSTANCE_TYPE
    ),
    region: Annotated[str | None, typer.Option("--region", help="[default: AWS_REGION, else us-east-1]")] = None,
    pooling: Annotated[str | None, typer.Option("--pooling", help="mean | cls | max [default: the model's]")] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalise [default: the model's]")
    ] = None,
    max_seq_length: Annotated[int | None, typer.Option("--max-seq-length", help="[default: the model's]")] = None,
    probe: Annotated[
        list[str] | None, typer.Option("--probe", help="A probe text for the smoke test (repeatable).")
    ] = None,
    check_python: Annotated[
        str | None, typer.Option("--check-python", help="Interpreter for the fresh-process check.")
    ] = None,
) -> None:
    """Build model.tar.gz (weights, tokenizer, serving code, manifest), check it loads, optionally upload."""
    request = packaging.PackageRequest(
        model_dir=model_dir,
        model_id=model_id,
        output=output or Path("dist") / model_id / "model.tar.gz",
        region=region or default_region(),
        instance_type=instance_type,
        pooling=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
        probe_texts=tuple(probe) if probe else packaging.PROBE_TEXTS,
        check_python=check_python or sys.executable,
    )
    try:
        with console.status("packaging") as status:
            result = packaging.package(request, progress=lambda step: status.update(step))
    except packaging.PackagingError as exc:
        console.print(f"[red]package failed:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_summary(result)
    if upload:
        try:
            uploaded = s3upload.upload_artifact(
                result.archive,
                result.manifest_path,
                upload,
                model_id,
                console=console,
                metadata={"esdeploy-content-sha256": result.manifest.content_sha256},
            )
        except s3upload.UploadError as exc:
            console.print(f"[red]upload failed:[/red] {exc}")
            raise typer.Exit(1) from None
        console.print(f"uploaded [bold]{uploaded.archive_url}[/bold] and {uploaded.manifest_url}")
    # stdout carries only the artifact location, so scripts can capture it.
    typer.echo(str(result.archive))


def _print_summary(result: packaging.PackageResult) -> None:
    manifest = result.manifest
    table = Table(show_header=False, box=None)
    table.add_row("archive", f"{result.archive} ({result.archive_bytes / 1e6:.1f} MB)")
    table.add_row("manifest", str(result.manifest_path))
    table.add_row(
        "model",
        f"{manifest.model_id}: dim {manifest.dimension}, {manifest.pooling} pooling, "
        f"normalize={manifest.normalize}, max {manifest.max_seq_length} tokens",
    )
    table.add_row("content sha256", manifest.content_sha256)
    table.add_row("image", manifest.image_uri)
    table.add_row(
        "check",
        f"loaded in a fresh process in {result.check.get('load_seconds')} s, "
        f"min cosine {result.check.get('min_cosine')} over {len(manifest.probe_texts)} probe texts",
    )
    if result.st_min_cosine is not None:
        table.add_row("parity", f"min cosine {result.st_min_cosine:.6f} with sentence-transformers")
    console.print(table)
