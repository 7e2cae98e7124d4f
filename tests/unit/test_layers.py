"""Unit tests: the layer rules (README, Architecture), checked on every import statement (ast)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "chalicelib"
AWS = ("boto3", "botocore", "chalice")
HEAVY = ("torch", "sagemaker", "sagemaker_core", "pandas", "numpy", "transformers")

# Which modules each layer may not import (a prefix forbids its submodules too).
RULES: dict[str, tuple[str, ...]] = {
    "chalicelib/domain": (*AWS, "os", "pydantic", "chalicelib.adapters", "chalicelib.api", "chalicelib.config",
                          "chalicelib.ports", "chalicelib.services", "chalicelib.wiring"),
    "chalicelib/ports.py": (*AWS, "chalicelib.adapters", "chalicelib.api", "chalicelib.services", "chalicelib.wiring"),
    "chalicelib/services": (*AWS, "chalicelib.adapters", "chalicelib.api", "chalicelib.wiring", "chalicelib.metrics"),
    "chalicelib/adapters": ("chalice", "chalicelib.api", "chalicelib.services", "chalicelib.wiring"),
    "chalicelib/api": ("boto3", "botocore", "chalicelib.adapters", "chalicelib.services", "chalicelib.wiring"),
    "chalicelib": (*HEAVY, "esdeploy", "serving"),
    # The handlers reach adapters through the wiring only (services, and the queues' readers: Adapters.messages).
    "app.py": ("boto3", "botocore", "chalicelib.adapters", *HEAVY),
}


def imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def modules_of(layer: str) -> list[Path]:
    path = ROOT / layer
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def breaks(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in forbidden)


@pytest.mark.parametrize("layer", sorted(RULES))
def test_each_layer_imports_only_what_design_allows(layer: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in modules_of(layer)
        for line, module in imports(path)
        if breaks(module, RULES[layer])
    ]
    assert violations == []


def test_the_rules_see_a_violation() -> None:
    probe = ast.parse("import os\nfrom chalicelib.api.schemas import parse_deploy\n")
    modules = [a.name for n in probe.body if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in probe.body if isinstance(n, ast.ImportFrom) and n.module]
    assert [m for m in modules if breaks(m, RULES["chalicelib/services"])] == ["chalicelib.api.schemas"]
    assert [m for m in modules if breaks(m, RULES["chalicelib/domain"])] == ["os", "chalicelib.api.schemas"]
    assert all(modules_of(layer) for layer in RULES), "a layer in RULES has no module: a typo?"


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports, `from package import module` counted as `package.module` too."""
    found = {module for _, module in imports(path)}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_lambda_bundle_holds_no_module_that_only_tests_use() -> None:
    """Chalice ships all of chalicelib/ in every function: test code (the in-memory ports) lives in tests/."""
    users = [ROOT / "app.py", *LIB.rglob("*.py"), *(ROOT / "esdeploy").rglob("*.py"), *(ROOT / "infra").glob("*.py")]
    used = set().union(*(imported_names(path) for path in users))
    shipped = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in LIB.rglob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(shipped - used) == []
