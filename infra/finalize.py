"""Pin a packaged template to its stage and refuse a package that would ship broken.

`chalice package --merge-template infra/template.yaml` writes one template per stage, but
infra/template.yaml serves both stages through parameters. This step copies the values that
.chalice/config.json gave the packaged functions into the parameters' defaults (and allows only
a rule refuses any other Stage), so `deploy` needs no parameter that could disagree with the code. It then fails if:
- a patch in infra/template.yaml names a function Chalice did not generate (a resource with no Type);
- the API (any stage: dev is reachable from the internet too) has a route without IAM (SigV4) auth;
- the stage names a serving image (ESDEPLOY_DEFAULT_IMAGE_URI) in another region than the package's:
  SageMaker pulls ECR images only from its own region. A stage that names none gets the AWS Hugging
  Face PyTorch inference image for the package's region and its default instance type, resolved
  offline with sagemaker-core, in every function's environment.
- likewise for each serving's image per processor (ESDEPLOY_SERVING_IMAGES: handler-gpu, handler-cpu,
  tei-gpu, tei-cpu): a stage that names none gets AWS's images of the package's region, the handler's
  (unless the stage names its own default image) and text-embeddings-inference's at the pinned version.
It also writes parameters.txt beside the template (`Name=value` per line) for infra/deploy.sh.
Usage: python infra/finalize.py out/<stage>/sam.yaml REGION
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)
IMAGE_SETTING = "ESDEPLOY_DEFAULT_IMAGE_URI"
IMAGES_SETTING = "ESDEPLOY_SERVING_IMAGES"
# An instance type of each processor, to look the image up with (the image depends on the processor only).
PROCESSOR_TYPES = {"gpu": "ml.g5.xlarge", "cpu": "ml.c6i.large"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


class PackageError(Exception):
    pass


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    """The API function's environment: every function gets the same one from config.json."""
    try:
        return template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    except KeyError as exc:
        raise PackageError("the packaged template has no APIHandler function with an environment") from exc


def functions(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [res for res in template["Resources"].values() if res.get("Type") == "AWS::Serverless::Function"]


def serving_image(env: dict[str, Any], region: str) -> str:
    """The stage's image if it names one (in `region`, or PackageError), else the AWS image for `region`."""
    configured = str(env.get(IMAGE_SETTING, "")).strip()
    if configured:
        return _in_region(IMAGE_SETTING, configured, region)
    from esdeploy.images import ImageLookupError, serving_image_uri

    allowed = str(env.get("ESDEPLOY_ALLOWED_INSTANCE_TYPES", "ml.g5.xlarge")).split(",")
    instance_type = str(env.get("ESDEPLOY_DEFAULT_INSTANCE_TYPE") or allowed[0]).strip()
    try:
        return serving_image_uri(region, instance_type)
    except ImageLookupError as exc:
        raise PackageError(str(exc)) from None


def _in_region(setting: str, configured: str, region: str) -> str:
    image = IMAGE_URI.match(configured)
    if image is None:
        raise PackageError(f"{setting} names {configured!r}, which is not an ECR image URI")
    if image["region"] != region:
        raise PackageError(
            f"{setting} names an image in {image['region']}, but this package is for {region}: SageMaker pulls "
            f"images only from its own region. Name images in {region}, or leave {setting} out of "
            ".chalice/config.json to get AWS's images of the region"
        )
    return configured


def serving_images(env: dict[str, Any], region: str) -> str:
    """ESDEPLOY_SERVING_IMAGES: the stage's own (each checked to be in `region`), else AWS's for `region`."""
    configured = str(env.get(IMAGES_SETTING, "")).strip()
    if configured:
        for entry in configured.split(","):
            _in_region(IMAGES_SETTING, entry.partition("=")[2].strip(), region)
        return configured
    from chalicelib.domain.serving import Serving
    from esdeploy.images import ImageLookupError, serving_image_uri

    # A stage that names its own default image serves the handler with it (on its default type's processor).
    servings = [Serving.TEI] if str(env.get(IMAGE_SETTING, "")).strip() else [Serving.HANDLER, Serving.TEI]
    try:
        return ",".join(
            f"{serving.value}-{processor}={serving_image_uri(region, instance_type, serving)}"
            for serving in servings
            for processor, instance_type in PROCESSOR_TYPES.items()
        )
    except ImageLookupError as exc:
        raise PackageError(str(exc)) from None


def pin_serving_image(template: dict[str, Any], region: str) -> str:
    """Every function gets the one default image and the servings' images for the package's region."""
    env = function_environment(template)
    image = serving_image(env, region)
    images = serving_images(env, region)
    for function in functions(template):
        variables = function["Properties"].setdefault("Environment", {}).setdefault("Variables", {})
        variables[IMAGE_SETTING] = image
        variables[IMAGES_SETTING] = images
    return image


def image_of(env: dict[str, Any], key: str) -> re.Match[str] | None:
    """The ECR URI that ESDEPLOY_SERVING_IMAGES names under `key`, parsed."""
    for entry in str(env.get(IMAGES_SETTING, "")).split(","):
        name, _, uri = entry.partition("=")
        if name.strip() == key:
            return IMAGE_URI.match(uri.strip())
    return None


def pinned_parameters(env: dict[str, Any]) -> dict[str, str]:
    image = IMAGE_URI.match(str(env.get(IMAGE_SETTING, "")))
    if image is None:
        raise PackageError(f"{IMAGE_SETTING} is not an ECR image URI")
    tei = image_of(env, "tei-gpu") or image_of(env, "tei-cpu")
    if tei is None:
        raise PackageError(f"{IMAGES_SETTING} names no tei-gpu or tei-cpu image")
    return {
        "Stage": str(env["ESDEPLOY_STAGE"]),
        "ResourcePrefix": str(env.get("ESDEPLOY_RESOURCE_PREFIX", "esd")),
        "ArtifactPrefix": str(env.get("ESDEPLOY_ARTIFACT_PREFIX", "models/")).strip("/"),
        "SsmPrefix": "/" + str(env["ESDEPLOY_SSM_PREFIX"]).strip("/"),
        "ServingImageAccount": image["account"],
        "ServingImageRepository": image["repo"],
        # AWS publishes TEI's images (repositories tei and tei-cpu) from another account than the PyTorch ones.
        "TeiImageAccount": tei["account"],
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


def finalize(template: dict[str, Any], region: str) -> dict[str, Any]:
    missing = untyped_resources(template)
    if missing:
        raise PackageError(
            f"infra/template.yaml patches resources Chalice did not generate: {', '.join(missing)} "
            "(a handler was renamed or removed in app.py?)"
        )
    pin_serving_image(template, region)
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
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, region = Path(argv[1]), argv[2]
    template = yaml.safe_load(path.read_text())
    try:
        finalize(template, region)
    except PackageError as exc:
        print(f"infra/finalize.py: {exc}", file=sys.stderr)
        return 1
    path.write_text(yaml.safe_dump(template, sort_keys=False, allow_unicode=True))
    pinned = pinned_parameters(function_environment(template))
    (path.parent / "parameters.txt").write_text("".join(f"{k}={v}\n" for k, v in pinned.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
