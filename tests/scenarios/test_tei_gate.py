"""Scenarios: a TEI deploy behind the same gate — the variant is created with TEI's serving, the gate holds the
same references, an answer of the other serving fails it, and a GPU miss says what float32 would change."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.serving import Dtype, Serving
from tests.fakes.fake_hosting import Answer, fake_embedding
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


def tei_manifest(model: str = "m1", version: int = 1) -> dict[str, Any]:
    return {**manifest_for(model, version=version), "serving": "tei"}


def deploy_to_the_end(world: World, model: str = "m1", **config: Any) -> dict[str, Any]:
    task = world.deploy(model, **config)
    world.pump.run(until=lambda: world.task(task["task_id"])["status"] not in ("pending", "processing"))
    return world.task(task["task_id"])


def test_a_tei_deploy_creates_a_tei_variant_and_passes_the_same_gate(world: World) -> None:
    world.upload_artifact("m1", tei_manifest())

    done = deploy_to_the_end(world, serving="tei", instance_type="ml.m5.large", dtype="float32")

    assert done["status"] == "done", done["detail"]
    spec = world.hosting.spec(done["endpoint_name"])
    assert spec is not None and (spec.serving, spec.dtype) == (Serving.TEI, Dtype.FLOAT32)
    assert "/tei-cpu:" in spec.image_uri
    answer = world.post("/models/m1/invoke", {"inputs": ["a text"]}).json_body
    assert (answer["serving"], answer["model"]) == ("tei", "m1")  # TEI names no model: the alias's
    assert answer["embeddings"] == [fake_embedding("a text", 16)]


def test_a_tei_variant_answering_like_the_handler_fails_the_gate(world: World) -> None:
    """config.image_uri names the handler's image by mistake: the gate sees which serving answered."""
    world.upload_artifact("m1", tei_manifest())
    world.hosting.script(answers=[lambda name, payload: {
        "serving": "handler", "embeddings": [fake_embedding(t, 16) for t in payload["inputs"]], "dimension": 16,
    }])

    failed = deploy_to_the_end(world, serving="tei")

    assert failed["status"] == "failed"
    assert "answered as the handler serving does, but the deploy runs tei" in failed["detail"]


@pytest.mark.parametrize(
    ("config", "hinted"),
    [({"instance_type": "ml.g5.xlarge"}, True), ({"instance_type": "ml.m5.large"}, False),
     ({"instance_type": "ml.g5.xlarge", "dtype": "float32"}, False)],
)
def test_a_gpu_variant_that_misses_the_references_is_told_about_float32(
    world: World, config: dict[str, Any], hinted: bool
) -> None:
    world.upload_artifact("m1", tei_manifest())
    world.hosting.script(answers=[Answer.WRONG_VECTORS])

    failed = deploy_to_the_end(world, serving="tei", **config)

    assert failed["status"] == "failed" and "cosine similarity to the reference" in failed["detail"]
    assert ('config.dtype "float32"' in failed["detail"]) is hinted
    assert ("runs in float16 by default" in failed["detail"]) is hinted


def test_a_manifest_inside_that_contradicts_its_pointer_is_refused_at_preflight(world: World) -> None:
    """The pointer says tei (so the submit passes), the manifest inside the pinned archive says handler:
    the gate reads the manifest inside, fails closed and names both."""
    world.upload_artifact("m1", tei_manifest(), inside=manifest_for("m1"))

    refused = deploy_to_the_end(world, serving="tei")

    assert refused["status"] == "refused"
    assert "packaged for the handler serving (manifest serving), but the deploy runs tei" in refused["detail"]
