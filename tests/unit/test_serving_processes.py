"""Unit tests: which process the local hosting starts for a variant, and with which environment."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from chalicelib.domain.serving import Dtype, Serving
from chalicelib.ports import VariantSpec
from esdeploy.local.serving_processes import serving_process

SPEC = VariantSpec(
    name="esdlocal-m-1", embedding_model_id="m", task_id="t", model_data_url="s3://b/m/model.tar.gz",
    image_uri="i", instance_type="ml.c6i.large", initial_instance_count=1,
)
ARTIFACT = Path("/tmp/esdlocal-m-1/model.tar.gz")


def test_a_handler_variant_runs_the_local_endpoint() -> None:
    command, env = serving_process(SPEC, ARTIFACT, "python")
    assert command == ["python", "-u", "-m", "esdeploy.local.endpoint", "--artifact", str(ARTIFACT), "--port", "0"]
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_MODEL_ID" not in env and "ESDEPLOY_SERVING_DTYPE" not in env
    assert serving_process(replace(SPEC, dtype=Dtype.FLOAT16), ARTIFACT, "python")[1]["ESDEPLOY_SERVING_DTYPE"] == (
        "float16"
    )


def test_a_tei_variant_runs_the_stand_in_with_teis_container_environment() -> None:
    command, env = serving_process(replace(SPEC, serving=Serving.TEI), ARTIFACT, "python")
    assert command[3] == "esdeploy.local.tei_standin"
    assert (env["HF_MODEL_ID"], env["AUTO_TRUNCATE"], env["MAX_CLIENT_BATCH_SIZE"]) == ("/opt/ml/model", "true", "32")
    assert "DTYPE" not in env  # TEI's CPU image: float32


def test_on_a_gpu_type_the_stand_in_runs_float16_as_teis_cuda_image_does_unless_told() -> None:
    gpu = replace(SPEC, serving=Serving.TEI, instance_type="ml.g5.xlarge")
    assert serving_process(gpu, ARTIFACT, "python")[1]["DTYPE"] == "float16"
    assert serving_process(replace(gpu, dtype=Dtype.FLOAT32), ARTIFACT, "python")[1]["DTYPE"] == "float32"
