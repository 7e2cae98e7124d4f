"""Operator tool layer: ``python -m esdeploy`` runs the CLI."""

from esdeploy.cli import app

app(prog_name="esdeploy")
