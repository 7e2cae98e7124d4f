"""Operator tool layer: what an optional part of esdeploy (`esdeploy[package]`, `esdeploy[local]`) lacks here."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version

_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?")
_EXTRA = re.compile(r"extra\s*==\s*[\"']([^\"']+)[\"']")


def parse(requirement: str) -> tuple[str, list[str], str]:
    """(name, extras, environment marker) of a requirement as package metadata writes it."""
    found = _REQUIREMENT.match(requirement)
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    extras = [extra.strip() for extra in (found.group(2) or "").split(",") if extra.strip()]
    return found.group(1), extras, found.group(3) or ""


def extras_in(marker: str) -> set[str]:
    """The extras an environment marker names (`extra == "local"`); none: the requirement is unconditional."""
    return set(_EXTRA.findall(marker))


def missing(extra: str) -> list[str]:
    """The distributions `esdeploy[extra]` requires that are not installed ([] with all of them, or
    for a checkout used without installing esdeploy, which has no metadata to ask)."""
    try:
        requirements = requires("esdeploy") or []
    except PackageNotFoundError:
        return []
    lacking: list[str] = []
    for requirement in requirements:
        name, extras, marker = parse(requirement)
        if extra not in extras_in(marker):
            continue
        if name.lower() == "esdeploy":  # an extra that includes another
            lacking += [n for other in extras for n in missing(other) if n not in lacking]
            continue
        try:
            version(name)
        except PackageNotFoundError:
            lacking.append(name)
    return lacking
