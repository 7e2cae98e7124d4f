"""esdeploy.Client against the real API on loopback: a deploy handle to wait on, rollback, delete, the embedder."""
from __future__ import annotations

from typing import Any

import pytest

import esdeploy
from chalicelib.domain.models import EndpointState
from chalicelib.version import VERSION
from esdeploy import Client, ModelNotDeployedError, TaskHandle, TaskWaitTimeoutError
from tests.cli.conftest import URL, FakeApi, FakeClock, task
from tests.client.runtime import StubRuntime
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


class Setup:
    """A Client whose waits let the workers take one step per poll; its runtime answers from the fake hosting."""

    def __init__(self, world: World, url: str) -> None:
        self.world = world
        self.clock = FakeClock()
        self.runtime = StubRuntime(self.answer)
        self.client = Client(
            url,
            ssm_prefix="/esdeploy/test",
            ssm_client=_ssm(world),
            runtime_client=self.runtime,
            clock=self.clock.time,
            sleep=self.sleep,
        )

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.world.pump.run(steps=1)

    def answer(self, name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if name not in self.world.hosting.endpoint_names():
            return None
        return self.world.hosting.invoke(name, payload)


def _ssm(world: World) -> Any:
    import boto3

    return boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def setup(world: World, api_url: str) -> Setup:
    world.upload_artifact("m1", manifest_for("m1"))
    return Setup(world, api_url)


def dedup(stages: list[str]) -> list[str]:
    return [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]


def test_the_package_exports_a_typed_client() -> None:
    assert esdeploy.Client is Client and "Client" in esdeploy.__all__
    assert esdeploy.__version__ == VERSION


def test_deploy_wait_embed_swap_rollback_delete(setup: Setup) -> None:
    client = setup.client
    seen: list[str] = []
    blue = client.deploy("m1", bake_seconds=600, task_id="blue")
    assert isinstance(blue, TaskHandle) and blue.task_id == "blue" and not blue.done
    ended = blue.wait(progress=lambda task: seen.append(task["stage"]))
    assert ended["status"] == "done", ended
    # One call per answer of the API, in order: what a progress bar shows between the first and the last.
    order = ["queued", "preflight", "creating", "waiting", "verifying", "swapping", "finished"]
    shown = dedup(seen)
    assert shown[0] == "queued" and shown[-1] == "finished" and len(shown) >= 4
    assert [order.index(s) for s in shown] == sorted(order.index(s) for s in shown)
    assert blue.status()["endpoint_name"] == ended["endpoint_name"] and blue.done
    # One shape per concept: the listing is GET /models's answer in Python too.
    listing = client.models()
    assert listing == setup.world.get("/models").json_body
    assert [model["endpoint_name"] for model in listing["models"]] == [ended["endpoint_name"]]
    assert client.model("m1") == listing["models"][0]

    embedder = blue.embedder()
    assert embedder.embed(["hello"]).endpoint_name == ended["endpoint_name"]

    green = client.deploy("m1", bake_seconds=600, task_id="green").wait()
    assert green["status"] == "done"
    assert client.model("m1")["endpoint_name"] == green["endpoint_name"]

    alias = client.task("green").rollback()
    assert alias["endpoint_name"] == ended["endpoint_name"]
    setup.world.pump.run()  # the rolled-away green variant is torn down
    assert green["endpoint_name"] not in setup.world.hosting.endpoint_names()
    assert setup.client.embedder("m1").embed(["x"]).endpoint_name == ended["endpoint_name"]

    deletion = blue.delete(reason="over")
    assert deletion.kind == "delete"
    assert deletion.wait()["status"] == "done"
    # The cached alias names a torn-down endpoint; SSM no longer has one: a typed answer, not a traceback.
    with pytest.raises(ModelNotDeployedError, match="`m1` is not deployed"):
        embedder.embed(["after the delete"])
    # The listing in the API's shape, as `esdeploy --json models` prints it and GET /models answers it.
    assert client.models() == {"models": []} == setup.world.get("/models").json_body


def test_a_failed_deploy_is_returned_with_its_detail_not_raised(setup: Setup) -> None:
    setup.world.hosting.script(None, outcome=EndpointState.FAILED)
    ended = setup.client.deploy("m1", task_id="doomed").wait()
    assert ended["status"] == "failed" and ended["detail"]


def test_wait_gives_up_after_its_timeout_and_the_task_goes_on(setup: Setup) -> None:
    setup.world.hosting.script(None, creation_seconds=10**9)
    handle = setup.client.deploy("m1", task_id="slow")
    with pytest.raises(TaskWaitTimeoutError, match="deploy task slow still processing") as raised:
        handle.wait(timeout=5)
    assert raised.value.task["status"] == "processing"
    assert handle.cancel().task["task_id"] == "slow"
    # SageMaker refuses to delete an endpoint while it is Creating; this one finishes, then goes.
    setup.world.hosting.set_state(handle.status()["endpoint_name"], EndpointState.IN_SERVICE)
    assert handle.wait()["status"] == "canceled"


def test_a_refusal_of_the_api_is_an_api_error_with_its_status(setup: Setup) -> None:
    with pytest.raises(esdeploy.ApiError) as raised:
        setup.client.rollback("never-deployed")
    assert raised.value.status == 404


def test_a_manual_promotion_from_python_waits_at_the_candidate_then_past_it(setup: Setup) -> None:
    client = setup.client
    blue = client.deploy("m1", bake_seconds=0)
    blue.wait()
    setup.world.upload_artifact("m1", manifest_for("m1", version=2))
    green = client.deploy("m1", bake_seconds=0, config={"promotion": "manual"})
    waiting = green.wait()
    assert (waiting["status"], waiting["stage"]) == ("processing", "awaiting_promotion")
    answer = client.invoke("m1", ["re-embed me"], candidate=True)
    assert answer["endpoint_name"] == waiting["endpoint_name"]
    done = green.promote().wait()
    assert done["status"] == "done", done
    assert client.model("m1")["endpoint_name"] == waiting["endpoint_name"]
    again = client.task(green.task_id).promote()  # a second promote changes nothing
    assert again.task["status"] == "done"


def test_deploy_sends_only_what_it_is_given_its_own_arguments_over_config() -> None:
    api = FakeApi().on("POST", "/deploy", (200, task()))
    client = Client(URL, http=api.session())
    handle = client.deploy(
        "m1",
        manual_promotion=True,
        promotion_timeout_seconds=600,
        autoscaling={"min_instances": 2, "max_instances": 6, "target_invocations_per_instance": 100},
        rollback_alarms=("search-p99", "search-errors"),
        max_5xx_errors_per_minute=0,
        max_model_latency_ms=800,
        config={"bake_seconds": 60, "max_model_latency_ms": 100},
    )
    assert handle.task_id == "t1"
    assert api.sent[0].body == {
        "embedding_model_id": "m1",
        "config": {
            "bake_seconds": 60,
            "promotion": "manual",
            "promotion_timeout_seconds": 600,
            "autoscaling": {"min_instances": 2, "max_instances": 6, "target_invocations_per_instance": 100},
            "rollback_alarms": ["search-p99", "search-errors"],
            "max_5xx_errors_per_minute": 0,
            "max_model_latency_ms": 800,
        },
    }
    api.sent.clear()
    client.deploy("m1", rollback_alarms="search-p99")  # one name, not its letters
    client.deploy("m1")
    assert [sent.body for sent in api.sent] == [
        {"embedding_model_id": "m1", "config": {"rollback_alarms": ["search-p99"]}},
        {"embedding_model_id": "m1"},
    ]
