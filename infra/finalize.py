"""Pin a packaged template to its stage and refuse a package that would ship broken.

`chalice package --merge-template infra/template.yaml` writes one template per stage, but
infra/template.yaml serves both stages through parameters. This step copies the values that
.chalice/config.json gave the packaged functions into the parameters' defaults (and allows only
a rule refuses any other Stage), so `deploy` needs no parameter that could disagree with the code. It then fails if:
- a patch in infra/template.yaml names a function Chalice did not generate (a resource with no Type);
- the API (any stage: dev is reachable from the internet too) has a route without IAM (SigV4) auth.
It also writes parameters.txt beside the template (`Name=value` per line) for infra/deploy.sh.
Usage: python infra/finalize.py out/<stage>/sam.yaml
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

IMAGE_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


class PackageError(Exception):
    pass


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    """The API function's environment: every function gets the same one from config.json."""
    try:
        return template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    except KeyError as exc:
        raise PackageError("the packaged template has no APIHandler function with an environment") from exc


def pinned_parameters(env: dict[str, Any]) -> dict[str, str]:
    image = IMAGE_URI.match(str(env.get("ESDEPLOY_DEFAULT_IMAGE_URI", "")))
    if image is None:
        raise PackageError("ESDEPLOY_DEFAULT_IMAGE_URI is not an ECR image URI")
    return {
        "Stage": str(env["ESDEPLOY_STAGE"]),
        "ResourcePrefix": str(env.get("ESDEPLOY_RESOURCE_PREFIX", "esd")),
        "ArtifactPrefix": str(env.get("ESDEPLOY_ARTIFACT_PREFIX", "models/")).strip("/"),
        "SsmPrefix": "/" + str(env["ESDEPLOY_SSM_PREFIX"]).strip("/"),
        "ServingImageAccount": image["account"],
        "ServingImageRepository": image["repo"],
    }


def untyped_resources(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, res in template["Resources"].items() if "Type" not in res)


def open_routes(template: dict[str, Any]) -> list[str]:
    """`METHOD /path` of every API operation that does not require SigV4."""
    body = template["Resources"].get("RestAPI", {}).get("Properties", {}).get("DefinitionBody", {})
    schemes = {
        name
        for name, scheme in body.get("securityDefinitions", {}).items()
        if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4"
    }
    found = []
    for path, operations in body.get("paths", {}).items():
        for method, operation in operations.items():
            if method.lower() not in HTTP_METHODS:
                continue
            required = {name for entry in operation.get("security", []) for name in entry}
            if not required & schemes:
                found.append(f"{method.upper()} {path}")
    return sorted(found)


def finalize(template: dict[str, Any]) -> dict[str, Any]:
    missing = untyped_resources(template)
    if missing:
        raise PackageError(
            f"infra/template.yaml patches resources Chalice did not generate: {', '.join(missing)} "
            "(a handler was renamed or removed in app.py?)"
        )
    values = pinned_parameters(function_environment(template))
    parameters = template["Parameters"]
    for name, value in values.items():
        parameters[name]["Default"] = value
    # A rule, not AllowedValues=[stage]: that would make cfn-lint call the other branch of every
    # `!If [IsProd, ...]` unreachable.
    template.setdefault("Rules", {})["PackagedStage"] = {
        "Assertions": [
            {
                "Assert": {"Fn::Equals": [{"Ref": "Stage"}, values["Stage"]]},
                "AssertDescription": f"this package was built for stage {values['Stage']}",
            }
        ]
    }
    unsigned = open_routes(template)
    if unsigned:
        raise PackageError(
            f"{values['Stage']} routes without IAM auth (every deployed stage needs authorizer=IAMAuthorizer(); "
            "ESDEPLOY_API_AUTH=none is for the local stack only): " + ", ".join(unsigned)
        )
    return template


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    template = yaml.safe_load(path.read_text())
    try:
        finalize(template)
    except PackageError as exc:
        print(f"infra/finalize.py: {exc}", file=sys.stderr)
        return 1
    path.write_text(yaml.safe_dump(template, sort_keys=False, allow_unicode=True))
    pinned = pinned_parameters(function_environment(template))
    (path.parent / "parameters.txt").write_text("".join(f"{k}={v}\n" for k, v in pinned.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
