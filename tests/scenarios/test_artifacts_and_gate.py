"""Scenarios: artifacts are pinned at submit and immutable; the parity gate fails closed; the probe is bounded."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.artifacts import NO_MANIFEST, archive_bytes, content_hash_for
from tests.fakes.fake_hosting import Answer, fake_embedding
from tests.scenarios.conftest import DIMENSION, PROBES, manifest_for
from tests.scenarios.harness import World


def live(world: World, model: str = "m1") -> dict[str, Any]:
    return world.get(f"/models/{model}").json_body


def deploy_to_the_end(world: World, model: str = "m1", **config: Any) -> dict[str, Any]:
    task = world.deploy(model, **config)
    world.pump.run(until=lambda: world.task(task["task_id"])["status"] not in ("pending", "processing"))
    return world.task(task["task_id"])


# ---- pinned at submit, immutable after -------------------------------------------------------------


def test_two_versions_live_under_two_keys_and_the_alias_shows_each_ones_content_hash(world: World) -> None:
    v1_url = world.upload_artifact("m1", manifest_for("m1", version=1))
    v1 = deploy_to_the_end(world, bake_seconds=600)
    v2_url = world.upload_artifact("m1", manifest_for("m1", version=2))
    v2 = deploy_to_the_end(world, bake_seconds=600)
    v1_hash, v2_hash = content_hash_for("m1", 1), content_hash_for("m1", 2)
    assert v1_url == f"s3://esdeploy-test-artifacts/models/m1/{v1_hash}/model.tar.gz"
    assert v2_url == f"s3://esdeploy-test-artifacts/models/m1/{v2_hash}/model.tar.gz"
    assert (v1["config"]["model_data_url"], v1["config"]["content_hash"]) == (v1_url, v1_hash)
    assert (v2["config"]["model_data_url"], v2["config"]["content_hash"]) == (v2_url, v2_hash)
    # SageMaker was given each version's own key: re-downloading blue after v2 still gets v1.
    assert world.hosting.spec(v1["endpoint_name"]).model_data_url == v1_url  # type: ignore[union-attr]
    assert world.hosting.spec(v2["endpoint_name"]).model_data_url == v2_url  # type: ignore[union-attr]
    alias = live(world)
    assert (alias["content_hash"], alias["previous_content_hash"]) == (v2_hash, v1_hash)
    rolled_back = world.post("/models/m1/rollback").json_body
    assert (rolled_back["endpoint_name"], rolled_back["content_hash"]) == (v1["endpoint_name"], v1_hash)
    assert live(world)["content_hash"] == v1_hash and live(world)["previous_content_hash"] is None


def test_an_upload_during_a_deploy_changes_nothing_in_that_deploy(world: World) -> None:
    """Today's references are checked against today's artifact: "latest" moving mid-deploy is not seen."""
    v1_url = world.upload_artifact("m1", manifest_for("m1", version=1))
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    # v2 has other references (another dimension): had verify read "latest", the smoke test would fail.
    world.upload_artifact("m1", manifest_for("m1", dimension=DIMENSION + 1, version=2))
    world.pump.run()
    done = world.task(task["task_id"])
    assert done["status"] == "done", done["detail"]
    assert world.hosting.spec(done["endpoint_name"]).model_data_url == v1_url  # type: ignore[union-attr]
    assert live(world)["content_hash"] == content_hash_for("m1", 1)


def test_an_explicit_model_data_url_is_pinned_with_its_content_hash(world: World) -> None:
    v1_url = world.upload_artifact("m1", manifest_for("m1", version=1))
    world.upload_artifact("m1", manifest_for("m1", version=2))  # latest is v2; v1 is asked for by name
    done = deploy_to_the_end(world, model_data_url=v1_url)
    assert done["status"] == "done", done["detail"]
    assert (done["config"]["model_data_url"], done["config"]["content_hash"]) == (v1_url, content_hash_for("m1", 1))


def test_an_artifact_overwritten_after_submit_is_refused_not_deployed(world: World) -> None:
    url = world.upload_artifact("m1", manifest_for("m1", version=1))
    task = world.deploy("m1")
    bucket, key = url[len("s3://"):].split("/", 1)
    # Someone writes over the key by hand (our uploader never does): the pin catches it.
    world.s3.put_object(Bucket=bucket, Key=key, Body=archive_bytes(manifest_for("m1", version=9)))
    world.pump.run()
    refused = world.task(task["task_id"])
    assert refused["status"] == "refused"
    assert "changed since the deploy was submitted" in refused["detail"]
    assert content_hash_for("m1", 9) in refused["detail"] and content_hash_for("m1", 1) in refused["detail"]
    assert world.hosting.count("create_variant") == 0


def test_an_artifact_of_another_model_is_refused(world: World) -> None:
    """Model A's artifact does not go live as model B."""
    world.upload_artifact("m1", manifest_for("m1"))
    url = world.upload_artifact("other", manifest_for("other"))
    refused = deploy_to_the_end(world, model_data_url=url)
    assert refused["status"] == "refused" and refused["stage"] == "preflight"
    assert "packaged for model 'other' (manifest model_id), not 'm1'" in refused["detail"]
    assert world.hosting.count("create_variant") == 0


# ---- the parity gate fails closed ----------------------------------------------------------------


def without(manifest: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != field}


def with_value(manifest: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**manifest, field: value}


BASE = manifest_for("m1", version=2)
REFS = BASE["reference_embeddings"]


@pytest.mark.parametrize(
    ("inside", "needle"),
    [
        (NO_MANIFEST, "has no manifest.json as its first member (found 'config.json')"),
        (b"{not json", "manifest.json inside s3://"),
        (without(BASE, "reference_embeddings"), "the manifest has no reference_embeddings"),
        (with_value(BASE, "reference_embeddings", []), "the manifest has no reference_embeddings"),
        (with_value(BASE, "reference_embeddings", REFS[:-1]), "`reference_embeddings` has 2 rows for 3 probe texts"),
        (
            with_value(BASE, "reference_embeddings", [REFS[0], REFS[1][:-1], REFS[2]]),
            "`reference_embeddings[1]` has 15 values, the dimension is 16",
        ),
        (
            with_value(BASE, "reference_embeddings", [REFS[0], ["x", *REFS[1][1:]], REFS[2]]),
            "`reference_embeddings[1]` holds a value that is not a finite number",
        ),
        (with_value(BASE, "dimension", "16"), "`dimension` is '16', not a positive integer"),
        (with_value(BASE, "normalize", "yes"), "`normalize` is 'yes', not true or false"),
        (with_value(BASE, "probe_texts", "first probe text"), "`probe_texts` must be a list"),
        (without(BASE, "format"), "`format` is None"),
    ],
    ids=[
        "no-manifest", "not-json", "no-references", "empty-references", "a-row-short", "a-value-short",
        "a-string-value", "dimension-as-string", "normalize-as-string", "probe-texts-as-string", "no-format",
    ],
)
def test_an_unverifiable_artifact_is_refused_at_once_naming_the_problem(world: World, inside: Any, needle: str) -> None:
    """The gate never passes by default: what it cannot check ends the deploy `refused` in its own step,
    naming the problem, not after the DLQ with "failed N times"; nothing is created."""
    world.upload_artifact("m1", manifest_for("m1", version=2), inside=inside)
    refused = deploy_to_the_end(world)
    assert refused["status"] == "refused" and refused["stage"] == "preflight", refused
    assert needle in refused["detail"]
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
    assert [d.outcome for d in world.pump.deliveries if d.handler == "deploy_worker"] == ["ok"]  # one step
    assert world.hosting.count("create_variant") == 0


def test_a_refused_deploy_leaves_blue_serving(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1", version=1))
    blue = deploy_to_the_end(world)
    world.upload_artifact("m1", manifest_for("m1", version=2), inside=without(BASE, "reference_embeddings"))
    assert deploy_to_the_end(world)["status"] == "refused"
    assert live(world)["endpoint_name"] == blue["endpoint_name"]
    assert live(world)["content_hash"] == content_hash_for("m1", 1)
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]


def test_references_checked_only_when_skipped_explicitly_and_the_task_says_so(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"), inside=without(manifest_for("m1"), "reference_embeddings"))
    done = deploy_to_the_end(world, parity_check="skip")
    assert done["status"] == "done", done["detail"]
    assert done["config"]["parity_check"] == "skip"
    assert "the parity check was skipped (config.parity_check=skip)" in done["detail"]
    details = [e.get("detail") or "" for e in done["events"]]
    assert any("shape and norms only: the parity check was skipped" in d for d in details)


def test_a_skipped_parity_check_still_refuses_wrong_shapes(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"), inside=without(manifest_for("m1"), "reference_embeddings"))
    world.hosting.script(answers=[Answer.WRONG_DIMENSION])
    failed = deploy_to_the_end(world, parity_check="skip")
    assert failed["status"] == "failed" and "dimension 17, the manifest says 16" in failed["detail"]


def test_a_manifest_beside_the_tarball_is_not_trusted(world: World) -> None:
    """The copy beside the tarball says all is well; the one inside has no references: refused."""
    world.upload_artifact("m1", manifest_for("m1"), inside=without(manifest_for("m1"), "reference_embeddings"))
    refused = deploy_to_the_end(world)
    assert refused["status"] == "refused" and "no reference_embeddings" in refused["detail"]


# ---- the probe is bounded ------------------------------------------------------------------------


def test_a_green_that_does_not_answer_the_probe_fails_naming_the_bound(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    world.hosting.script(answers=[Answer.NO_ANSWER])
    failed = deploy_to_the_end(world)
    assert failed["status"] == "failed" and failed["stage"] == "verifying"
    assert failed["detail"] == (
        "smoke test: the endpoint did not answer the probe texts within the stage's 60 s"
    )
    assert world.hosting.invoke_timeouts == [60]
    world.pump.run()
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
    assert world.hosting.endpoint_names() == []  # the green is torn down


def test_the_probe_sends_the_pinned_manifests_texts(world: World) -> None:
    seen: list[Any] = []

    def record(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {"embeddings": [fake_embedding(t, DIMENSION) for t in payload["inputs"]], "dimension": DIMENSION}

    world.upload_artifact("m1", manifest_for("m1"))
    world.hosting.script(answers=[record])
    assert deploy_to_the_end(world)["status"] == "done"
    assert seen == [{"inputs": PROBES}]
    assert json.dumps(seen)  # plain JSON went out
