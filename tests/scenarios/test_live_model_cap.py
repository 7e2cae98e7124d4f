"""The live-model cap (ESDEPLOY_MAX_DEPLOYED_MODELS, 3 in tests) holds for deploys in flight too."""
from __future__ import annotations

from chalicelib.domain.models import EndpointState
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


def deploy_all(world: World, *models: str) -> dict[str, dict]:
    tasks = {}
    for model in models:
        world.upload_artifact(model, manifest_for(model))
        tasks[model] = world.deploy(model)
    world.pump.run()
    return {model: world.task(task["task_id"]) for model, task in tasks.items()}


def live_models(world: World) -> list[str]:
    return [m["embedding_model_id"] for m in world.get("/models").json_body["models"]]


def test_given_one_free_slot_when_two_new_models_deploy_at_once_then_only_one_goes_live(world: World) -> None:
    """Issue 12: the cap counted live aliases only, so deploys of new models in flight together all
    passed it, and the stage ended with more live models than the cap."""
    deploy_all(world, "a", "b")
    ended = deploy_all(world, "c", "d")
    assert sorted(task["status"] for task in ended.values()) == ["done", "refused"]
    refused = next(task for task in ended.values() if task["status"] == "refused")
    assert "the stage's cap is 3: delete a model or raise the cap" in refused["detail"]
    assert len(live_models(world)) == 3
    assert world.hosting.count("create_variant") == 3  # the refused one created nothing


def test_given_a_full_cap_when_a_deploy_of_a_new_model_fails_or_a_model_is_deleted_then_its_slot_is_free(
    world: World,
) -> None:
    deploy_all(world, "a", "b")
    world.hosting.script(outcome=EndpointState.FAILED, reason="CUDA out of memory")
    assert deploy_all(world, "c")["c"]["status"] == "failed"
    world.hosting.script(outcome=EndpointState.IN_SERVICE)
    assert deploy_all(world, "d")["d"]["status"] == "done"  # c's slot came back when it failed
    assert deploy_all(world, "e")["e"]["status"] == "refused"
    answer = world.post("/delete", {"model_id": "a"})
    assert answer.status_code == 200, answer.json_body
    world.pump.run()
    assert deploy_all(world, "e")["e"]["status"] == "done"
    assert live_models(world) == ["b", "d", "e"]
