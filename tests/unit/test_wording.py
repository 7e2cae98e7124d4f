"""Each surface speaks its own language: the API names its fields, the CLI its flags, Python its
keyword arguments, the docs the settings. Nothing an answer can carry names an environment setting."""
from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import typer

from chalicelib.api.schemas import DeployConfigIn
from esdeploy.cli import app
from esdeploy.client import Client
from esdeploy.contract import render
from esdeploy.wording import DEPLOY_OPTIONS, flag_of, for_the_cli

ROOT = Path(__file__).resolve().parents[2]
# Where the words of answers are made: task details, error details.
ANSWER_TEXT = [*sorted((ROOT / "chalicelib" / "services").glob("*.py")), ROOT / "chalicelib" / "domain" / "errors.py"]


def _strings_outside_docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("path", ANSWER_TEXT, ids=lambda path: path.name)
def test_no_answer_names_an_environment_setting(path: Path) -> None:
    """`... watched every 5 s (ESDEPLOY_BAKE_CHECK_SECONDS)` told an API caller the name of a Lambda
    setting; the docs say which setting it is (docs/lifecycle.md)."""
    named = [text for text in _strings_outside_docstrings(path) if "ESDEPLOY_" in text]
    assert named == []


def test_the_api_document_speaks_of_embedding_studio_not_of_our_seed() -> None:
    document = json.loads(render())
    assert "seed" not in json.dumps(document).lower()
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert tags["deploy"] == "Deploy tasks: submit, read, cancel, promote"


def test_the_one_table_of_deploy_options_matches_each_surface() -> None:
    deploy_flags = {
        name
        for param in typer.main.get_command(app).commands["deploy"].params  # type: ignore[attr-defined]
        for name in param.opts
    }
    keywords = set(inspect.signature(Client.deploy).parameters)
    for option in DEPLOY_OPTIONS:
        assert option.field in DeployConfigIn.model_fields, option
        assert option.keyword in keywords, option
        assert option.flag in deploy_flags, option
    assert {option.field for option in DEPLOY_OPTIONS} == set(DeployConfigIn.model_fields)


@pytest.mark.parametrize(
    ("api", "cli"),
    [
        ('Model `m1` has no candidate awaiting promotion (deploy it with config.promotion "manual" and wait for '
         "stage awaiting_promotion)",
         "Model `m1` has no candidate awaiting promotion (deploy it with --manual-promotion and wait for "
         "stage awaiting_promotion)"),
        ('Deployment task `t1` was submitted with config.promotion "auto": it goes live by itself',
         "Deployment task `t1` was submitted with no --manual-promotion: it goes live by itself"),
        ("field `config.image_uri`: String should have at most 512 characters",
         "option `--image-uri`: String should have at most 512 characters"),
        ("config.autoscaling.max_instances 9 is over the stage's limit of 4",
         "--autoscaling.max_instances 9 is over the stage's limit of 4"),
        ("candidate esd-m1-x was not promoted within 1 h (config.promotion_timeout_seconds=3600); it is torn down",
         "candidate esd-m1-x was not promoted within 1 h (--promotion-timeout 3600); it is torn down"),
        ("its candidate awaits promotion: promote it (POST /deploy/t-1.a/promote) or cancel it",
         "its candidate awaits promotion: promote it (esdeploy promote t-1.a) or cancel it"),
        ('it answers with "target": "candidate"; promote the task', "it answers with --candidate; promote the task"),
        ("config.surprise is unknown", "config.surprise is unknown"),  # no flag: as the API said it
    ],
)
def test_the_cli_says_what_the_api_said_in_its_own_words(api: str, cli: str) -> None:
    assert for_the_cli(api) == cli
    assert flag_of("config.model_data_url") == "--artifact" and flag_of("config.surprise") is None
    assert flag_of("config.autoscaling.max_instances") == "--autoscaling" and flag_of("body") is None


def test_a_missing_region_is_a_keyword_in_python_and_a_flag_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(Exception) as caught:
        Client("http://api.test").aws_client("logs")
    assert "pass region= to esdeploy.Client" in str(caught.value) and "--region" not in str(caught.value)
    assert "pass --region" in caught.value.cli_message and "region=" not in caught.value.cli_message  # type: ignore[attr-defined]
