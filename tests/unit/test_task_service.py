"""Unit tests of TaskService on in-memory fakes: idempotency, the model lock, dispatch faults."""
from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.api.intake import read_intake
from chalicelib.api.schemas import parse_delete, parse_deploy
from chalicelib.domain.errors import (
    ConcurrentUpdateError,
    DispatchError,
    IdempotencyConflictError,
    InvalidRequestError,
    InvalidStateError,
    ModelBusyError,
    TaskNotFoundError,
)
from chalicelib.domain.messages import Advance, DeleteModel, IntakeRequest
from chalicelib.domain.models import ModelLock, Stage, Task, TaskKind, TaskStatus
from chalicelib.services.tasks import TaskService
from tests.fakes.artifacts import content_hash_for, minimal_manifest, publish_in_memory
from tests.fakes.interleave import Interleave
from tests.fakes.memory import InMemoryQueue, ManualClock


def tasks(adapters: wiring.Adapters) -> TaskService:
    return adapters.build(TaskService)


def deploy(adapters: wiring.Adapters, **body: Any):
    """A deploy of a model that `esdeploy package --upload` has uploaded (unless the test did already)."""
    model_id = body.get("embedding_model_id") or body["model_id"]
    if adapters.settings.artifact_layout.pointer(model_id).url not in adapters.artifacts.pointers:  # type: ignore[attr-defined]
        publish_in_memory(adapters.artifacts, adapters.settings, model_id)
    return tasks(adapters).submit(parse_deploy(body))


def test_deploy_is_stored_pending_and_dispatched(memory_adapters: wiring.Adapters) -> None:
    task = deploy(memory_adapters, model_id="abc123", config={})
    assert task.status == TaskStatus.PENDING and task.stage == Stage.QUEUED
    assert task.deploy_config.instance_type == "ml.g5.xlarge"
    digest = content_hash_for("abc123")
    assert task.deploy_config.model_data_url == f"s3://esdeploy-test-artifacts/models/abc123/{digest}/model.tar.gz"
    assert task.deploy_config.content_hash == digest
    assert task.deploy_config.bake_seconds == 600
    queue = memory_adapters.deploy_queue
    assert isinstance(queue, InMemoryQueue)
    assert queue.messages == [(Advance(task.task_id, version=1), 0)]
    assert tasks(memory_adapters).get(TaskKind.DEPLOY, task.task_id) == task


def test_given_a_task_the_worker_started_when_its_request_is_replayed_then_the_same_task_comes_back_and_nothing_is_sent(
    memory_adapters: wiring.Adapters,
) -> None:
    first = deploy(memory_adapters, embedding_model_id="m", id="client-1", config={"bake_seconds": 5})
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    first.record(at=memory_adapters.clock.now(), stage=Stage.CREATING, status=TaskStatus.PROCESSING)
    started = memory_adapters.store.update(first)
    again = deploy(memory_adapters, model_id="m", id="client-1", config={"bake_seconds": 5})
    assert again == started
    assert memory_adapters.deploy_queue.messages == []  # type: ignore[attr-defined]


def test_given_a_pending_task_whose_first_step_was_lost_when_its_request_is_retried_then_the_step_is_sent_again(
    memory_adapters: wiring.Adapters,
) -> None:
    """The submitting function may die between storing the task and sending its first step (the
    crash matrix finds it); the caller's retry, HTTP or the requests queue's redelivery, sends it."""
    first = deploy(memory_adapters, embedding_model_id="m", id="client-1", config={"bake_seconds": 5})
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]  # lost with the crash
    again = deploy(memory_adapters, model_id="m", id="client-1", config={"bake_seconds": 5})
    assert again == first
    assert memory_adapters.deploy_queue.messages == [(Advance(first.task_id, version=1), 0)]  # type: ignore[attr-defined]


def test_same_id_with_a_different_body_is_a_conflict(memory_adapters: wiring.Adapters) -> None:
    deploy(memory_adapters, embedding_model_id="m", id="client-1")
    with pytest.raises(IdempotencyConflictError, match="client-1"):
        deploy(memory_adapters, embedding_model_id="m", id="client-1", config={"bake_seconds": 1})


def test_second_operation_on_a_busy_model_names_the_active_task(
    memory_adapters: wiring.Adapters,
) -> None:
    first = deploy(memory_adapters, embedding_model_id="m")
    with pytest.raises(ModelBusyError) as caught:
        tasks(memory_adapters).submit(parse_delete({"model_id": "m"}))
    assert caught.value.active_task_id == first.task_id
    assert first.task_id in str(caught.value)
    # Another model is not blocked.
    deploy(memory_adapters, embedding_model_id="other")


def test_lock_of_a_finished_task_is_taken_over(memory_adapters: wiring.Adapters) -> None:
    first = deploy(memory_adapters, embedding_model_id="m")
    first.record(at=memory_adapters.clock.now(), status=TaskStatus.DONE, stage=Stage.FINISHED)
    memory_adapters.store.update(first)
    second = deploy(memory_adapters, embedding_model_id="m")
    held = memory_adapters.locks.get("m")
    assert held is not None and held.task_id == second.task_id


def test_lock_of_a_task_that_was_never_stored_expires(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    memory_adapters.locks.acquire(ModelLock("m", "ghost", TaskKind.DEPLOY, clock.now()))
    with pytest.raises(ModelBusyError):
        deploy(memory_adapters, embedding_model_id="m")
    clock.advance(memory_adapters.settings.stale_lock_seconds + 1)
    task = deploy(memory_adapters, embedding_model_id="m")
    assert task.status == TaskStatus.PENDING


def test_dispatch_failure_fails_the_task_and_frees_the_model(
    memory_adapters: wiring.Adapters,
) -> None:
    memory_adapters.deploy_queue.fail_next = 1  # type: ignore[attr-defined]
    with pytest.raises(DispatchError, match="Failed to create and send model deployment task"):
        deploy(memory_adapters, embedding_model_id="m", id="t-1")
    stored = tasks(memory_adapters).get(TaskKind.DEPLOY, "t-1")
    assert stored.status == TaskStatus.FAILED
    assert stored.detail is not None and "simulated outage" in stored.detail
    assert memory_adapters.locks.get("m") is None
    assert deploy(memory_adapters, embedding_model_id="m").status == TaskStatus.PENDING


def test_delete_dispatch_failure_uses_the_deletion_message(
    memory_adapters: wiring.Adapters,
) -> None:
    memory_adapters.teardown_queue.fail_next = 1  # type: ignore[attr-defined]
    with pytest.raises(DispatchError, match="Failed to create and send model deletion task"):
        tasks(memory_adapters).submit(parse_delete({"model_id": "m", "reason": "old"}))


def test_delete_keeps_the_reason_and_goes_to_the_teardown_queue(
    memory_adapters: wiring.Adapters,
) -> None:
    task = tasks(memory_adapters).submit(
        parse_delete({"model_id": "your_model_id", "reason": "No longer needed"})
    )
    assert task.reason == "No longer needed"
    assert memory_adapters.teardown_queue.messages == [  # type: ignore[attr-defined]
        (DeleteModel(task.task_id, "your_model_id"), 0)
    ]


def test_newest_task_by_model(memory_adapters: wiring.Adapters, clock: ManualClock) -> None:
    first = deploy(memory_adapters, embedding_model_id="m")
    first.record(at=clock.now(), status=TaskStatus.FAILED, detail="x")
    memory_adapters.store.update(first)
    clock.advance(5)
    second = deploy(memory_adapters, embedding_model_id="m")
    assert tasks(memory_adapters).newest(TaskKind.DEPLOY, "m").task_id == second.task_id
    with pytest.raises(TaskNotFoundError, match="Deletion task for model with ID `m` is not found"):
        tasks(memory_adapters).newest(TaskKind.DELETE, "m")


def test_a_delete_task_is_not_found_as_a_deployment(memory_adapters: wiring.Adapters) -> None:
    task = tasks(memory_adapters).submit(parse_delete({"model_id": "m"}))
    with pytest.raises(TaskNotFoundError, match=f"Deployment task with ID `{task.task_id}` is not found"):
        tasks(memory_adapters).get(TaskKind.DEPLOY, task.task_id)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"instance_type": "ml.p5.48xlarge"}, "config.instance_type"),
        ({"initial_instance_count": 99}, "config.initial_instance_count"),
        ({"model_data_url": "s3://elsewhere/models/m/model.tar.gz"}, "config.model_data_url"),
        ({"model_data_url": "s3://esdeploy-test-artifacts/models/../x/model.tar.gz"}, "config.model_data_url"),
        ({"parity_check": "sometimes"}, "config.parity_check"),
        ({"image_uri": "docker.io/evil:latest"}, "config.image_uri"),
        ({"bake_seconds": 10**9}, "config.bake_seconds"),
    ],
)
def test_config_outside_the_stage_rules_is_refused_naming_the_field(
    memory_adapters: wiring.Adapters, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        deploy(memory_adapters, embedding_model_id="m", config=config)
    assert caught.value.field == field
    assert memory_adapters.locks.get("m") is None


def test_task_times_are_utc(memory_adapters: wiring.Adapters) -> None:
    task = deploy(memory_adapters, embedding_model_id="m")
    assert task.created_at.utcoffset() == timedelta(0)


def test_cancel_before_the_worker_started_ends_the_task_and_frees_the_model(
    memory_adapters: wiring.Adapters,
) -> None:
    task = deploy(memory_adapters, embedding_model_id="m")
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    canceled = tasks(memory_adapters).cancel(task.task_id)
    assert (canceled.status, canceled.detail) == (TaskStatus.CANCELED, "canceled before it started")
    assert memory_adapters.locks.get("m") is None
    assert memory_adapters.deploy_queue.messages == []  # type: ignore[attr-defined]


def test_cancel_of_a_running_deploy_asks_the_worker_once(memory_adapters: wiring.Adapters) -> None:
    task = deploy(memory_adapters, embedding_model_id="m")
    task.record(at=memory_adapters.clock.now(), stage=Stage.WAITING, status=TaskStatus.PROCESSING)
    task.variant = "esd-m-1-2"
    running = memory_adapters.store.update(task)
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    requested = tasks(memory_adapters).cancel(task.task_id)
    assert requested.cancel_requested and requested.status == TaskStatus.PROCESSING
    assert memory_adapters.deploy_queue.messages == [  # type: ignore[attr-defined]
        (Advance(task.task_id, running.version + 1), 0)
    ]
    assert tasks(memory_adapters).cancel(task.task_id).version == requested.version  # nothing new
    assert len(memory_adapters.deploy_queue.messages) == 1  # type: ignore[attr-defined]


def test_cancel_of_a_canceled_deploy_answers_it_as_it_stands(memory_adapters: wiring.Adapters) -> None:
    """As a second promote does: a retried or repeated cancel got what it asked for."""
    task = deploy(memory_adapters, embedding_model_id="m")
    canceled = tasks(memory_adapters).cancel(task.task_id)
    assert canceled.status == TaskStatus.CANCELED
    again = tasks(memory_adapters).cancel(task.task_id)
    assert (again.status, again.version, len(again.events)) == (TaskStatus.CANCELED, canceled.version,
                                                                len(canceled.events))


def test_cancel_of_an_ended_or_unknown_deploy_is_refused(memory_adapters: wiring.Adapters) -> None:
    task = deploy(memory_adapters, embedding_model_id="m")
    task.record(at=task.created_at, status=TaskStatus.FAILED, detail="it failed")
    memory_adapters.store.update(task)
    with pytest.raises(InvalidStateError, match="is already failed"):
        tasks(memory_adapters).cancel(task.task_id)
    deletion = tasks(memory_adapters).submit(parse_delete({"model_id": "other"}))
    with pytest.raises(TaskNotFoundError, match=f"Deployment task with ID `{deletion.task_id}` is not found"):
        tasks(memory_adapters).cancel(deletion.task_id)


def test_given_one_client_id_raced_across_two_models_when_the_other_stores_first_then_the_loser_holds_no_lease(
    memory_adapters: wiring.Adapters,
) -> None:
    """The lease is taken before the id is claimed: the racer that loses the id must give back
    the lease it took on its own model, or that model stays locked until the winner ends."""
    store = memory_adapters.store

    def winner_on_x() -> None:
        memory_adapters.store = store
        deploy(memory_adapters, embedding_model_id="x", id="same")

    memory_adapters.store = Interleave(  # type: ignore[assignment]
        store, "create", winner_on_x, when=lambda task: task.embedding_model_id == "y"
    )
    with pytest.raises(IdempotencyConflictError, match="same"):
        deploy(memory_adapters, embedding_model_id="y", id="same")
    memory_adapters.store = store
    held_x = memory_adapters.locks.get("x")
    assert held_x is not None and held_x.task_id == "same"
    assert memory_adapters.locks.get("y") is None
    assert deploy(memory_adapters, embedding_model_id="y").status == TaskStatus.PENDING


def test_given_a_lease_held_under_another_models_task_id_when_a_deploy_comes_then_it_is_taken_over(
    memory_adapters: wiring.Adapters,
) -> None:
    """A lease such a race left behind before the fix is not a real holder either."""
    other = deploy(memory_adapters, embedding_model_id="x", id="same")
    memory_adapters.locks.acquire(ModelLock("y", other.task_id, TaskKind.DEPLOY, memory_adapters.clock.now()))
    task = deploy(memory_adapters, embedding_model_id="y")
    held = memory_adapters.locks.get("y")
    assert held is not None and held.task_id == task.task_id


def test_given_the_worker_writes_while_a_cancel_is_written_when_cancelling_then_the_cancel_still_lands(
    memory_adapters: wiring.Adapters,
) -> None:
    task = deploy(memory_adapters, embedding_model_id="m")
    store = memory_adapters.store

    def worker_step() -> None:
        current = store.get(task.task_id)
        assert current is not None
        current.record(at=memory_adapters.clock.now(), stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING)
        current.variant = "esd-m-1-2"
        store.update(current)

    memory_adapters.store = Interleave(store, "update", worker_step)  # type: ignore[assignment]
    canceled = tasks(memory_adapters).cancel(task.task_id)
    assert canceled.cancel_requested and canceled.stage == Stage.PREFLIGHT
    stored = store.get(task.task_id)
    assert stored is not None and stored.cancel_requested and stored.version == canceled.version


def awaiting_promotion_behind_a_store_whose_versioned_writes_always_lose(memory_adapters: wiring.Adapters) -> Task:
    """A candidate awaiting promotion (both a cancel and a promote of it are allowed), and from now on a
    store on which every conditional update on the version read loses, as to a worker writing non-stop."""
    task = deploy(memory_adapters, embedding_model_id="m", config={"promotion": "manual"})
    task.record(at=memory_adapters.clock.now(), stage=Stage.AWAITING_PROMOTION, status=TaskStatus.PROCESSING)
    task.variant = "esd-m-1-2"
    memory_adapters.store.update(task)

    class AlwaysLosing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def update(self, task: Any) -> Any:
            raise ConcurrentUpdateError(f"task {task.task_id} changed since version {task.version} was read")

    memory_adapters.store = AlwaysLosing(memory_adapters.store)  # type: ignore[assignment]
    return task


def test_given_a_task_that_keeps_changing_when_promoting_then_the_answer_says_so(
    memory_adapters: wiring.Adapters,
) -> None:
    task = awaiting_promotion_behind_a_store_whose_versioned_writes_always_lose(memory_adapters)
    gave_up = "changed 5 times while the promote was being written; send the promote again"
    with pytest.raises(ConcurrentUpdateError, match=gave_up):
        tasks(memory_adapters).promote(task.task_id)


def test_given_a_task_that_keeps_changing_when_cancelling_then_the_cancel_still_lands(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 22: a cancel lost its versioned write to the worker five times in a row, answered 409 and
    the deploy went live; it now has a write of its own that no worker write holds up."""
    task = awaiting_promotion_behind_a_store_whose_versioned_writes_always_lose(memory_adapters)
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    canceled = tasks(memory_adapters).cancel(task.task_id)
    assert canceled.cancel_requested and canceled.is_active
    stored = memory_adapters.store.get(task.task_id)
    assert stored is not None and stored.cancel_requested and stored.version == canceled.version
    assert memory_adapters.deploy_queue.messages == [(Advance(task.task_id, canceled.version), 0)]  # type: ignore[attr-defined]


def intake(body: dict[str, Any]) -> IntakeRequest:
    return read_intake(json.dumps({"action": "delete", **body}))


def test_given_a_busy_model_when_a_queued_request_comes_then_it_waits_on_the_requests_queue(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    busy = deploy(memory_adapters, embedding_model_id="m")
    assert tasks(memory_adapters).take(intake({"embedding_model_id": "m", "id": "retire-m"})) is None
    [(waiting, delay)] = memory_adapters.requests_queue.drain()  # type: ignore[attr-defined]
    settings = memory_adapters.settings
    assert isinstance(waiting, IntakeRequest) and waiting.attempt == 1
    assert delay == settings.intake_retry_seconds
    assert waiting.deadline is not None
    assert abs((waiting.deadline - clock.now()).total_seconds() - settings.intake_max_wait_seconds) < 1
    assert memory_adapters.store.get("retire-m") is None
    # The model frees up: the next delivery becomes the task.
    memory_adapters.writer.end(busy, TaskStatus.DONE, "live")
    clock.advance(delay)
    task = tasks(memory_adapters).take(waiting)
    assert task is not None and task.task_id == "retire-m" and task.status == TaskStatus.PENDING


def test_given_a_model_busy_past_the_requests_deadline_then_the_request_is_a_refused_task(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    busy = deploy(memory_adapters, embedding_model_id="m")
    deadline = clock.now() + timedelta(seconds=90)
    request = intake({"embedding_model_id": "m", "id": "retire-m", "deadline": deadline.isoformat()})
    assert tasks(memory_adapters).take(request) is None
    [(waiting, delay)] = memory_adapters.requests_queue.drain()  # type: ignore[attr-defined]
    assert delay == 60 and waiting.deadline == deadline
    clock.advance(60)
    assert tasks(memory_adapters).take(waiting) is None
    [(waiting, delay)] = memory_adapters.requests_queue.drain()  # type: ignore[attr-defined]
    assert delay == 30  # never past the deadline
    clock.advance(31)
    refused = tasks(memory_adapters).take(waiting)
    assert refused is not None and refused.status == TaskStatus.REFUSED and refused.task_id == "retire-m"
    assert refused.detail is not None and busy.task_id in refused.detail and "deadline" in refused.detail
    assert tasks(memory_adapters).get(TaskKind.DELETE, "retire-m") == refused
    assert memory_adapters.locks.get("m") is not None and memory_adapters.locks.get("m").task_id == busy.task_id  # type: ignore[union-attr]
    assert memory_adapters.requests_queue.messages == []  # type: ignore[attr-defined]
    # A redelivery of the same request replays the refused task.
    assert tasks(memory_adapters).take(waiting) == refused


# ---- the artifact is pinned once, at submit ------------------------------------------------------


def test_a_deploy_pins_the_key_and_hash_that_latest_names_at_submit(memory_adapters: wiring.Adapters) -> None:
    settings = memory_adapters.settings
    v1 = publish_in_memory(memory_adapters.artifacts, settings, "m", minimal_manifest("m", version=1))
    task = deploy(memory_adapters, embedding_model_id="m")
    publish_in_memory(memory_adapters.artifacts, settings, "m", minimal_manifest("m", version=2))
    stored = tasks(memory_adapters).get(TaskKind.DEPLOY, task.task_id)
    assert (stored.deploy_config.model_data_url, stored.deploy_config.content_hash) == (v1, content_hash_for("m", 1))


def test_a_replay_returns_the_same_task_after_latest_moved(memory_adapters: wiring.Adapters) -> None:
    settings = memory_adapters.settings
    publish_in_memory(memory_adapters.artifacts, settings, "m", minimal_manifest("m", version=1))
    first = deploy(memory_adapters, embedding_model_id="m", id="client-1")
    publish_in_memory(memory_adapters.artifacts, settings, "m", minimal_manifest("m", version=2))
    again = deploy(memory_adapters, embedding_model_id="m", id="client-1")
    assert again == first and again.deploy_config.content_hash == content_hash_for("m", 1)
    # Even with no artifact left at all, the replay is the stored task, not a 422.
    memory_adapters.artifacts.pointers.clear()  # type: ignore[attr-defined]
    assert deploy(memory_adapters, embedding_model_id="m", id="client-1") == first


def test_an_explicit_model_data_url_is_pinned_with_the_hash_of_the_manifest_inside_it(
    memory_adapters: wiring.Adapters,
) -> None:
    settings = memory_adapters.settings
    url = publish_in_memory(memory_adapters.artifacts, settings, "m", minimal_manifest("m", version=7))
    task = deploy(memory_adapters, embedding_model_id="m", config={"model_data_url": url})
    assert (task.deploy_config.model_data_url, task.deploy_config.content_hash) == (url, content_hash_for("m", 7))
    with pytest.raises(InvalidRequestError, match="there is no artifact at s3://") as caught:
        deploy(memory_adapters, embedding_model_id="other", config={"model_data_url": url.replace("/m/", "/x/")})
    assert caught.value.field == "config.model_data_url"


def test_a_deploy_of_a_model_never_uploaded_is_refused_at_submit_naming_the_upload(
    memory_adapters: wiring.Adapters,
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tasks(memory_adapters).submit(parse_deploy({"embedding_model_id": "ghost"}))
    assert caught.value.field == "config.model_data_url"
    assert "s3://esdeploy-test-artifacts/models/ghost/latest.json does not exist" in caught.value.message
    assert "esdeploy package MODEL_DIR --model-id ghost --upload s3://esdeploy-test-artifacts/models" in (
        caught.value.message
    )
    assert memory_adapters.locks.get("ghost") is None and memory_adapters.store.all() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://esdeploy-test-artifacts/models/m/model.tar.gz#.tar.gz", "fragment"),
        ("s3://esdeploy-test-artifacts/models/m/x?v=1.tar.gz", "query string"),
        ("s3://esdeploy-test-artifacts/models/m/a\nb/model.tar.gz", "control character U+000A"),
        ("s3://esdeploy-test-artifacts/models//m/model.tar.gz", "empty path segment"),
        ("s3://esdeploy-test-artifacts/models/./m/model.tar.gz", "'.' path segment"),
        ("s3://esdeploy-test-artifacts/models/m/model%20x.tar.gz", "character '%'"),
        ("s3://Esdeploy-Test-Artifacts/models/m/model.tar.gz", "not a valid S3 bucket name"),
        ("s3://esdeploy-test-artifacts/models/m/model.tar", "must be a .tar.gz under"),
    ],
)
def test_model_data_url_is_parsed_as_strictly_as_s3_reads_it(
    memory_adapters: wiring.Adapters, url: str, problem: str
) -> None:
    """A '#' or '?' used to pass the .tar.gz rule while the preflight read another key than SageMaker."""
    with pytest.raises(InvalidRequestError, match=re.escape(problem)) as caught:
        deploy(memory_adapters, embedding_model_id="m", config={"model_data_url": url})
    assert caught.value.field == "config.model_data_url"


@pytest.mark.parametrize(
    ("image", "fits"),
    [
        # Another tag, or a digest, of the stage's serving repository: the role may pull it.
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0-cpu", True),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference@sha256:" + "a" * 64, True),
        # Another tag of the stage's TEI repositories (AWS publishes them from another account).
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/tei:2.0.1-tei1.7.0-gpu-py310-cu122-ubuntu22.04", True),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/tei-cpu:2.0.1-tei1.8.2-cpu-py310-ubuntu22.04", True),
        # Another repository, or the same name in another account: SageMaker could not pull it.
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-text-embeddings-inference:1.6", False),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0", False),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-team/embedder:7", False),
    ],
)
def test_an_image_the_execution_role_cannot_pull_is_refused_at_submit(
    memory_adapters: wiring.Adapters, image: str, fits: bool
) -> None:
    """The execution role pulls only from the stage's serving images' repositories (infra/template.yaml):
    an image from anywhere else would make an endpoint that fails minutes later."""
    settings = memory_adapters.settings
    assert settings.default_image_uri is not None and settings.default_image_uri.startswith(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
    )
    if fits:
        deployed = deploy(memory_adapters, embedding_model_id="m", config={"image_uri": image})
        assert deployed.deploy_config.image_uri == image
        return
    with pytest.raises(InvalidRequestError) as caught:
        deploy(memory_adapters, embedding_model_id="m", config={"image_uri": image})
    assert caught.value.field == "config.image_uri"
    assert caught.value.message.startswith(f"config.image_uri {image} is not in a repository this stage's")
    assert ("(683313688378.dkr.ecr.us-east-1.amazonaws.com/tei, 683313688378.dkr.ecr.us-east-1.amazonaws.com/tei-cpu, "
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference)") in caught.value.message
    assert memory_adapters.store.newest_for_model("m", TaskKind.DEPLOY) is None


def test_an_image_of_another_region_is_refused_before_anything_is_made(memory_adapters: wiring.Adapters) -> None:
    """SageMaker refuses cross-region ECR images, after minutes; we say so at submit."""
    settings = memory_adapters.settings.model_copy(update={"region": "eu-west-1"})
    memory_adapters.settings = settings
    eu_image = settings.default_image_uri.replace("us-east-1", "eu-west-1")  # type: ignore[union-attr]
    with pytest.raises(InvalidRequestError, match="is in us-east-1, but esdeploy deploys to eu-west-1") as caught:
        deploy(memory_adapters, embedding_model_id="m")
    assert caught.value.field == "config.image_uri"
    assert "the stage's handler image for gpu instance types" in caught.value.message
    assert "ESDEPLOY_" not in caught.value.message  # the API's words, not the settings'
    memory_adapters.settings = settings.model_copy(update={"serving_images": {}})
    with pytest.raises(InvalidRequestError, match="the stage's default image"):
        deploy(memory_adapters, embedding_model_id="m")
    memory_adapters.settings = settings
    with pytest.raises(InvalidRequestError, match=r"config\.image_uri .* is in us-east-1"):
        deploy(memory_adapters, embedding_model_id="m", config={"image_uri": settings.default_image_uri})
    assert deploy(memory_adapters, embedding_model_id="m", config={"image_uri": eu_image}).deploy_config.image_uri == (
        eu_image
    )
