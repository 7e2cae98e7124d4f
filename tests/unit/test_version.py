"""One version, from one place (chalicelib/version.py): the installed package, `esdeploy --version`,
the API's OpenAPI document and /health all say it; pyproject.toml reads it and names none itself."""
from __future__ import annotations

import json
import tomllib
from importlib.metadata import version
from pathlib import Path

from chalice.test import Client

import esdeploy
from app import app
from chalicelib.version import VERSION
from esdeploy.contract import render

ROOT = Path(__file__).resolve().parents[2]


def test_every_surface_says_the_one_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "chalicelib.version.VERSION"}
    assert version("esdeploy") == esdeploy.__version__ == VERSION  # as installed: `pip install -e .`
    assert json.loads(render())["info"]["version"] == VERSION
    assert json.loads((ROOT / "docs" / "openapi.json").read_text())["info"]["version"] == VERSION
    with Client(app) as client:
        assert client.http.get("/health").json_body["version"] == VERSION
