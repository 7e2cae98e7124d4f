"""Infra: CloudFormation YAML as plain data, its short tags (!Ref, !Sub, !GetAtt, ...) in their long form.

The one CloudFormation reader. PyYAML and the standard library only: infra/lint_iam.py imports it in
.venv-infra, where esdeploy is not installed, and esdeploy/local/embedded_aws.py loads it by path
from the infra/ beside the checkout's app.py, where it finds infra/template.yaml too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (the wheels are): ten times the pure-Python one's speed,
# and every test that builds the embedded AWS reads the template.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CfnLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """YAML with CloudFormation's short tags read as their long form (`!Sub x` -> {"Fn::Sub": x})."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _short_tag)


def load(path: Path) -> Any:
    """The file's YAML as plain data; whether it is a template is the caller's question (each has its error)."""
    return yaml.load(path.read_text(), Loader=CfnLoader)
