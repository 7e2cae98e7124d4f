"""Unit tests: `config.serving` and `config.dtype` at submit — the image per serving and processor, a type no
serving has an image for, and an artifact packaged for the other serving (a 422 either way)."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.adapters.dynamodb_items import ItemFields
from chalicelib.adapters.dynamodb_tasks import config_of, config_to_item
from chalicelib.api.schemas import parse_deploy
from chalicelib.config import load_settings
from chalicelib.domain.errors import ConfigurationError, InvalidRequestError
from chalicelib.domain.models import DeployConfig
from chalicelib.domain.serving import Dtype, Processor, Serving, processor_of
from chalicelib.services.tasks import TaskService
from tests.conftest import TEST_ENV, TEST_TEI_CPU_IMAGE_URI, TEST_TEI_IMAGE_URI
from tests.fakes.artifacts import minimal_manifest, publish_in_memory


def submit(adapters: wiring.Adapters, model_id: str = "m", **config: Any) -> DeployConfig:
    return adapters.build(TaskService).submit(parse_deploy({"model_id": model_id, "config": config})).deploy_config


def publish(adapters: wiring.Adapters, model_id: str, serving: str | None) -> str:
    manifest = minimal_manifest(model_id)
    if serving is not None:
        manifest["serving"] = serving
    return publish_in_memory(adapters.artifacts, adapters.settings, model_id, manifest)


@pytest.mark.parametrize(
    ("instance_type", "processor"),
    [("ml.g5.xlarge", Processor.GPU), ("ml.p4d.24xlarge", Processor.GPU), ("ml.g6e.2xlarge", Processor.GPU),
     ("ml.c6i.large", Processor.CPU), ("ml.m5.large", Processor.CPU), ("ml.r7i.xlarge", Processor.CPU),
     ("ml.inf2.xlarge", None), ("ml.trn1.2xlarge", None), ("g5.xlarge", None)],
)
def test_the_processor_follows_the_instance_family_as_sagemaker_core_decides(
    instance_type: str, processor: Processor | None
) -> None:
    assert processor_of(instance_type) is processor


@pytest.mark.parametrize(
    ("instance_type", "image"), [("ml.g5.xlarge", TEST_TEI_IMAGE_URI), ("ml.m5.large", TEST_TEI_CPU_IMAGE_URI)]
)
def test_a_tei_deploy_gets_teis_image_for_the_instance_types_processor(
    memory_adapters: wiring.Adapters, instance_type: str, image: str
) -> None:
    publish(memory_adapters, "m", "tei")

    config = submit(memory_adapters, serving="tei", instance_type=instance_type, dtype="float32")

    assert (config.serving, config.image_uri, config.dtype) == (Serving.TEI, image, Dtype.FLOAT32)
    stored = config_to_item(config)
    assert stored["serving"] == "tei" and config_of(ItemFields({"config": stored}, "tasks", "task_id")) == config


def test_a_handler_deploy_on_a_cpu_type_gets_the_handlers_cpu_image(memory_adapters: wiring.Adapters) -> None:
    publish(memory_adapters, "m", None)  # a manifest that names no serving: packaged for the handler

    config = submit(memory_adapters, instance_type="ml.m5.large")

    assert config.serving is Serving.HANDLER and config.dtype is None
    assert config.image_uri.endswith("-cpu-py312-ubuntu22.04") and "huggingface-pytorch-inference" in config.image_uri


def test_a_type_neither_serving_has_an_image_for_is_a_422_naming_it(memory_adapters: wiring.Adapters) -> None:
    memory_adapters.settings = memory_adapters.settings.model_copy(
        update={"allowed_instance_types": ("ml.g5.xlarge", "ml.inf2.xlarge")}
    )
    publish(memory_adapters, "m", "tei")

    with pytest.raises(InvalidRequestError, match=r"'ml\.inf2\.xlarge' has no tei image") as caught:
        submit(memory_adapters, serving="tei", instance_type="ml.inf2.xlarge")
    assert caught.value.field == "config.instance_type"


def test_a_stage_without_a_tei_image_says_which_image_it_lacks_and_what_to_do(memory_adapters: wiring.Adapters) -> None:
    images = dict(memory_adapters.settings.serving_images)
    del images["tei-cpu"]
    memory_adapters.settings = memory_adapters.settings.model_copy(update={"serving_images": images})
    publish(memory_adapters, "m", "tei")

    # In the API's words (issue 21): the field to set, not the stage's setting behind it.
    with pytest.raises(InvalidRequestError, match=r"no tei image for cpu instance types such as ml\.m5\.large.*"
                       r"name one in config\.image_uri") as caught:
        submit(memory_adapters, serving="tei", instance_type="ml.m5.large")
    assert caught.value.field == "config.image_uri"
    assert submit(memory_adapters, serving="tei", instance_type="ml.g5.xlarge").image_uri == TEST_TEI_IMAGE_URI


@pytest.mark.parametrize(("packaged", "asked"), [("tei", None), ("tei", "handler"), (None, "tei"), ("handler", "tei")])
def test_an_artifact_packaged_for_the_other_serving_is_a_422(
    memory_adapters: wiring.Adapters, packaged: str | None, asked: str | None
) -> None:
    """The latest pointer (the default) and an explicit model_data_url are both checked."""
    url = publish(memory_adapters, "m", packaged)
    config = {"serving": asked} if asked else {}
    for where in ({}, {"model_data_url": url}):
        with pytest.raises(InvalidRequestError, match=f"was packaged for '{packaged or 'handler'}'") as caught:
            submit(memory_adapters, **config, **where)
        assert caught.value.field == "config.serving"
        assert f"--serving {asked or 'handler'}" in caught.value.message


def test_serving_and_dtype_are_checked_for_shape(memory_adapters: wiring.Adapters) -> None:
    for config, field in (({"serving": "vllm"}, "config.serving"), ({"dtype": "bfloat16"}, "config.dtype")):
        with pytest.raises(InvalidRequestError) as caught:
            parse_deploy({"model_id": "m", "config": config})
        assert caught.value.field == field


def test_serving_images_are_read_from_the_stage(memory_adapters: wiring.Adapters) -> None:
    settings = memory_adapters.settings
    assert settings.serving_image(Serving.TEI, Processor.CPU) == TEST_TEI_CPU_IMAGE_URI
    bare = settings.model_copy(update={"serving_images": {}})
    assert bare.serving_image(Serving.HANDLER, Processor.GPU) == settings.default_image_uri  # the legacy default
    assert bare.serving_image(Serving.HANDLER, Processor.CPU) is None  # the GPU image is not served on a CPU
    with pytest.raises(ConfigurationError, match=r"ESDEPLOY_SERVING_IMAGES.*'tei-neuron=x' is not KEY=IMAGE_URI"):
        load_settings({**TEST_ENV, "ESDEPLOY_SERVING_IMAGES": "tei-gpu=a,tei-neuron=x"})
