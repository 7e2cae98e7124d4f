"""infra/finalize.py refuses packages that would ship broken (no app.py needed)."""
from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest
from infra_support import INFRA


def _load_finalize() -> Any:
    spec = importlib.util.spec_from_file_location("esdeploy_infra_finalize", INFRA / "finalize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


finalize = _load_finalize()


def template(stage: str, security: list[Any] | None) -> dict[str, Any]:
    operation: dict[str, Any] = {"responses": {}}
    if security is not None:
        operation["security"] = security
    return {
        "Parameters": {name: {"Type": "String"} for name in (
            "Stage", "ResourcePrefix", "ArtifactPrefix", "SsmPrefix", "ServingImageAccount",
            "ServingImageRepository", "TeiImageAccount")},
        "Resources": {
            "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {"Environment": {"Variables": {
                "ESDEPLOY_STAGE": stage,
                "ESDEPLOY_RESOURCE_PREFIX": "esd",
                "ESDEPLOY_ARTIFACT_PREFIX": "models/",
                "ESDEPLOY_SSM_PREFIX": f"/esdeploy/{stage}",
                "ESDEPLOY_DEFAULT_IMAGE_URI":
                    "763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-inference:2.6.0-gpu",
            }}}},
            "RestAPI": {"Type": "AWS::Serverless::Api", "Properties": {"DefinitionBody": {
                "securityDefinitions": {"sigv4": {"x-amazon-apigateway-authtype": "awsSigv4"}},
                "paths": {"/deploy": {"post": operation}},
            }}},
        },
    }


def test_pins_parameters_from_the_function_environment() -> None:
    done = finalize.finalize(template("dev", [{"sigv4": []}]), "eu-west-1")
    defaults = {name: p.get("Default") for name, p in done["Parameters"].items()}
    assert defaults == {
        "Stage": "dev",
        "ResourcePrefix": "esd",
        "ArtifactPrefix": "models",
        "SsmPrefix": "/esdeploy/dev",
        "ServingImageAccount": "763104351884",
        "ServingImageRepository": "huggingface-pytorch-inference",
        "TeiImageAccount": "141502667606",
    }
    assert done["Rules"]["PackagedStage"]["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "Stage"}, "dev"]}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_any_stage_with_an_open_route_is_refused(stage: str) -> None:
    with pytest.raises(finalize.PackageError, match=f"{stage} routes without IAM auth.*POST /deploy"):
        finalize.finalize(template(stage, None), "eu-west-1")


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_sigv4_everywhere_passes(stage: str) -> None:
    finalize.finalize(template(stage, [{"sigv4": []}]), "eu-west-1")


def test_a_patch_for_a_function_chalice_did_not_generate_is_refused() -> None:
    broken = template("dev", [{"sigv4": []}])
    broken["Resources"]["DeployWorker"] = {"Properties": {"Timeout": 3}}
    with pytest.raises(finalize.PackageError, match="DeployWorker"):
        finalize.finalize(broken, "eu-west-1")


def without_image(stage: str) -> dict[str, Any]:
    found = template(stage, [{"sigv4": []}])
    found["Resources"]["DeployWorker"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Environment": {"Variables": {"ESDEPLOY_STAGE": stage}}},
    }
    del found["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]["ESDEPLOY_DEFAULT_IMAGE_URI"]
    return found


@pytest.mark.parametrize(("region", "account"), [("eu-central-1", "763104351884"), ("af-south-1", "626614931356")])
def test_every_function_gets_the_serving_image_of_the_region_it_is_packaged_for(region: str, account: str) -> None:
    """SageMaker refuses an ECR image of another region: the image follows the package's region
    (sagemaker-core knows which account serves the image in each region)."""
    done = finalize.finalize(without_image("dev"), region)
    images = {
        name: res["Properties"]["Environment"]["Variables"]["ESDEPLOY_DEFAULT_IMAGE_URI"]
        for name, res in done["Resources"].items()
        if res.get("Type") == "AWS::Serverless::Function"
    }
    assert set(images) == {"APIHandler", "DeployWorker"} and len(set(images.values())) == 1
    image = images["APIHandler"]
    assert image.startswith(f"{account}.dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-inference:")
    assert "-gpu-" in image  # the stage's default instance type is a GPU type
    assert done["Parameters"]["ServingImageAccount"]["Default"] == account


def test_a_stage_image_of_another_region_fails_packaging_naming_both() -> None:
    with pytest.raises(finalize.PackageError, match="an image in eu-west-1, but this package is for us-east-1"):
        finalize.finalize(template("dev", [{"sigv4": []}]), "us-east-1")


def serving_images_of(done: dict[str, Any]) -> dict[str, str]:
    env = done["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    return dict(entry.split("=", 1) for entry in env["ESDEPLOY_SERVING_IMAGES"].split(","))


def test_every_function_gets_each_servings_images_of_the_packages_region() -> None:
    """Handler and TEI, GPU and CPU: resolved offline from sagemaker-core's tables (TEI at its pinned version)."""
    done = finalize.finalize(without_image("dev"), "eu-central-1")
    images = serving_images_of(done)
    assert set(images) == {"handler-gpu", "handler-cpu", "tei-gpu", "tei-cpu"}
    registry = "492215442770.dkr.ecr.eu-central-1.amazonaws.com"
    assert images["tei-gpu"] == f"{registry}/tei:2.0.1-tei1.8.2-gpu-py310-cu122-ubuntu22.04"
    assert images["tei-cpu"] == f"{registry}/tei-cpu:2.0.1-tei1.8.2-cpu-py310-ubuntu22.04"
    assert "-cpu-py312-" in images["handler-cpu"] and "-gpu-py312-" in images["handler-gpu"]
    worker = done["Resources"]["DeployWorker"]["Properties"]["Environment"]["Variables"]
    assert worker["ESDEPLOY_SERVING_IMAGES"] == done["Resources"]["APIHandler"]["Properties"]["Environment"][
        "Variables"]["ESDEPLOY_SERVING_IMAGES"]
    # The SageMaker execution role may pull TEI's repositories from TEI's account too.
    assert done["Parameters"]["TeiImageAccount"]["Default"] == "492215442770"


def test_a_stage_with_its_own_default_image_serves_the_handler_with_it() -> None:
    done = finalize.finalize(template("dev", [{"sigv4": []}]), "eu-west-1")
    assert set(serving_images_of(done)) == {"tei-gpu", "tei-cpu"}


def test_serving_images_of_another_region_fail_packaging_naming_both() -> None:
    named = template("dev", [{"sigv4": []}])
    named["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]["ESDEPLOY_SERVING_IMAGES"] = (
        "tei-gpu=683313688378.dkr.ecr.us-east-1.amazonaws.com/tei:2.0.1-tei1.8.2-gpu-py310-cu122-ubuntu22.04"
    )
    with pytest.raises(finalize.PackageError, match="ESDEPLOY_SERVING_IMAGES names an image in us-east-1, but this "
                                                    "package is for eu-west-1"):
        finalize.finalize(named, "eu-west-1")
