"""Contract suite: the in-memory and the DynamoDB task store, locks and aliases behave alike."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from chalicelib.adapters.dynamodb_http import DynamoDbHttpClient
from chalicelib.adapters.dynamodb_models import DynamoAliases, DynamoLiveModelSlots, DynamoModelLocks
from chalicelib.adapters.dynamodb_table import DocumentTable, speak_python_types
from chalicelib.adapters.dynamodb_tasks import BY_MODEL_INDEX, DynamoTaskStore, item_to_task, model_kind_key
from chalicelib.adapters.sigv4 import Credentials
from chalicelib.config import Settings
from chalicelib.domain.errors import ConcurrentUpdateError, TaskAlreadyExistsError
from chalicelib.domain.models import (
    Alias,
    DeployConfig,
    ModelLock,
    ParityCheck,
    Promotion,
    RollbackAlarms,
    ScalingPolicy,
    Stage,
    Task,
    TaskKind,
    TaskStatus,
    utc_now,
)
from esdeploy.local.aws_server import EmbeddedAws
from esdeploy.local.processes import LOOPBACK, free_port
from tests.fakes.lagging_index import LaggingIndexTable
from tests.fakes.memory import (
    InMemoryAliases,
    InMemoryLiveModelSlots,
    InMemoryModelLocks,
    InMemoryModels,
    InMemoryTaskStore,
)

RETENTION = timedelta(days=90)


@pytest.fixture(scope="module")
def embedded_aws() -> Iterator[EmbeddedAws]:
    """The local stack's AWS (moto's server), reached over HTTP: what the stdlib DynamoDB client speaks to."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = EmbeddedAws(LOOPBACK, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _dynamodb_backend(dynamodb: Any, settings: Settings) -> dict[str, Any]:
    """The DynamoDB adapters on `dynamodb`, a client that speaks Python values."""
    models = DocumentTable(dynamodb, settings.models_table)
    tasks = LaggingIndexTable(DocumentTable(dynamodb, settings.tasks_table))

    def indexed_newest(model: str, kind: TaskKind) -> Task | None:
        items = tasks.query(IndexName=BY_MODEL_INDEX, KeyConditionExpression="model_kind = :key",
                            ExpressionAttributeValues={":key": model_kind_key(kind, model)},
                            ScanIndexForward=False, Limit=1)["Items"]
        return item_to_task(items[0]) if items else None

    return {
        "store": DynamoTaskStore(tasks, RETENTION),
        "keeps_forever": DynamoTaskStore(tasks, None),
        "locks": DynamoModelLocks(models),
        "aliases": DynamoAliases(models),
        "slots": DynamoLiveModelSlots(models),
        "catch_up_index": tasks.catch_up,
        "indexed_newest": indexed_newest,
    }


@pytest.fixture(params=["memory", "dynamodb-boto3", "dynamodb-stdlib"])
def backend(request: pytest.FixtureRequest, test_env: dict[str, str], settings: Settings) -> Iterator[dict[str, Any]]:
    """Each store keeps ended tasks for RETENTION; `keeps_forever` is one with no retention. Both
    have their index lagging behind the writes (a GSI read is eventually consistent): every case
    here holds while the index has not caught up. DynamoDB is spoken to through both clients the
    Lambdas may build (chalicelib/wiring.py's dynamodb_client): boto3's, under mock_aws, and the
    stdlib one, over HTTP to the embedded AWS."""
    if request.param == "memory":
        store = InMemoryTaskStore(RETENTION, index_lag=True)
        models = InMemoryModels()
        yield {
            "store": store,
            "keeps_forever": InMemoryTaskStore(index_lag=True),
            "locks": InMemoryModelLocks(models),
            "aliases": InMemoryAliases(models),
            "slots": InMemoryLiveModelSlots(),
            "catch_up_index": store.catch_up_index,
            "indexed_newest": store.indexed_newest,
        }
        return
    from esdeploy.local.embedded_aws import create_resources, keep_dynamodb_atomic

    keep_dynamodb_atomic()
    if request.param == "dynamodb-boto3":
        with mock_aws():
            create_resources(boto3.Session(region_name="us-east-1"), test_env)
            yield _dynamodb_backend(speak_python_types(boto3.client("dynamodb", region_name="us-east-1")), settings)
        return
    server: EmbeddedAws = request.getfixturevalue("embedded_aws")
    requests.post(f"{server.url}/moto-api/reset", timeout=10).raise_for_status()
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", server.url)
        create_resources(session, test_env)
    yield _dynamodb_backend(DynamoDbHttpClient(server.url, "us-east-1", Credentials("local", "local")), settings)


def make_task(task_id: str, model: str = "m1", kind: TaskKind = TaskKind.DEPLOY, offset: float = 0) -> Task:
    return Task.new(
        task_id=task_id,
        kind=kind,
        embedding_model_id=model,
        request_hash="h-" + task_id,
        at=utc_now() + timedelta(seconds=offset),
        deploy=CONFIG if kind == TaskKind.DEPLOY else None,
        reason="because" if kind == TaskKind.DELETE else None,
    )


CONFIG = DeployConfig(
    instance_type="ml.g5.xlarge",
    initial_instance_count=1,
    model_data_url="s3://bucket/models/m1/" + "a" * 64 + "/model.tar.gz",
    image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/hf:2.1",
    bake_seconds=600,
    content_hash="a" * 64,
)


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        replace(CONFIG, content_hash=None, match_live_instance_count=True),
        replace(
            CONFIG, parity_check=ParityCheck.SKIP, promotion=Promotion.MANUAL, promotion_timeout_seconds=3600,
            autoscaling=ScalingPolicy(1, 4, 600),
            alarms=RollbackAlarms(("checkout-errors", "p99"), max_5xx_errors_per_minute=0, max_model_latency_ms=750),
        ),
    ],
    ids=["defaults", "unpinned", "every-field"],
)
def test_a_deploys_config_reads_back_as_it_was_written(backend: dict[str, Any], config: DeployConfig) -> None:
    store = backend["store"]
    stored = store.create(replace(make_task("t1"), deploy=config))
    read = store.get("t1")
    assert read is not None and read.deploy == config == stored.deploy


def test_created_task_reads_back_field_for_field(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = make_task("t1", kind=TaskKind.DELETE)
    stored = store.create(task)
    assert stored.version == 1
    read = store.get("t1")
    assert read is not None
    assert read == stored
    assert read.events[0].status == TaskStatus.PENDING
    assert read.reason == "because"


def test_creating_an_existing_id_is_refused(backend: dict[str, Any]) -> None:
    store = backend["store"]
    store.create(make_task("t1"))
    with pytest.raises(TaskAlreadyExistsError):
        store.create(make_task("t1", model="other"))
    stored = store.get("t1")
    assert stored is not None and stored.embedding_model_id == "m1"


def test_missing_task_is_none(backend: dict[str, Any]) -> None:
    assert backend["store"].get("nope") is None


def test_newest_for_model_is_the_latest_created_of_that_kind(backend: dict[str, Any]) -> None:
    store = backend["store"]
    store.create(make_task("old", offset=-60))
    store.create(make_task("new", offset=0))
    store.create(make_task("middle", offset=-30))
    store.create(make_task("delete", kind=TaskKind.DELETE, offset=60))
    store.create(make_task("other-model", model="m2", offset=120))
    newest = store.newest_for_model("m1", TaskKind.DEPLOY)
    assert newest is not None and newest.task_id == "new"
    newest_delete = store.newest_for_model("m1", TaskKind.DELETE)
    assert newest_delete is not None and newest_delete.task_id == "delete"
    assert store.newest_for_model("m3", TaskKind.DEPLOY) is None


def test_a_task_stored_a_moment_ago_is_the_newest_while_the_index_has_not_seen_it(
    backend: dict[str, Any],
) -> None:
    """Issue 11: GET /deploy-status right after POST /deploy answered 404 when the index lagged."""
    store = backend["store"]
    store.create(make_task("old", offset=-60))
    backend["catch_up_index"]()
    store.create(make_task("new"))
    indexed = backend["indexed_newest"]("m1", TaskKind.DEPLOY)
    assert indexed is not None and indexed.task_id == "old"  # the lag is real
    newest = store.newest_for_model("m1", TaskKind.DEPLOY)
    assert newest is not None and newest.task_id == "new"
    store.create(make_task("first-delete", kind=TaskKind.DELETE))
    assert backend["indexed_newest"]("m1", TaskKind.DELETE) is None
    newest_delete = store.newest_for_model("m1", TaskKind.DELETE)
    assert newest_delete is not None and newest_delete.task_id == "first-delete"


def test_the_newest_task_is_read_as_it_is_now_not_as_the_index_last_saw_it(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    backend["catch_up_index"]()
    task.record(at=utc_now(), stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING)
    store.update(task)
    indexed = backend["indexed_newest"]("m1", TaskKind.DEPLOY)
    assert indexed is not None and indexed.status == TaskStatus.PENDING  # the lag is real
    newest = store.newest_for_model("m1", TaskKind.DEPLOY)
    assert newest is not None and (newest.status, newest.version) == (TaskStatus.PROCESSING, 2)


def test_update_keeps_history_and_bumps_version(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    task.record(at=utc_now(), stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING, detail="checking")
    task.variant = "esd-m1-abc-def"
    task.polls = 3
    task.hops = 2
    task.deadline_at = utc_now() + timedelta(hours=1)
    task.promote_by = utc_now() + timedelta(hours=2)
    task.next_at = utc_now() + timedelta(seconds=30)
    task.step_token = "msg-1"
    task.deploy = replace(CONFIG, initial_instance_count=3)
    task.rekicked_at = utc_now()
    task.promote_requested = True
    updated = store.update(task)
    assert updated.version == 2
    read = store.get("t1")
    assert read is not None
    assert [e.stage for e in read.events] == [Stage.QUEUED, Stage.PREFLIGHT]
    assert read.detail == "checking" and read.variant == "esd-m1-abc-def" and read.polls == 3
    assert read.deadline_at == task.deadline_at and read.rekicked_at == task.rekicked_at
    assert read.promote_requested and not store.get("t1").cancel_requested
    assert (read.hops, read.promote_by, read.next_at, read.step_token) == (2, task.promote_by, task.next_at, "msg-1")
    assert read.deploy is not None and read.deploy.initial_instance_count == 3


def test_a_cancel_is_recorded_whatever_version_is_stored_and_a_stale_step_then_loses(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    task.record(at=utc_now(), stage=Stage.WAITING, status=TaskStatus.PROCESSING)
    task.step_token = "msg-7"
    task = store.update(task)  # the worker's last step; its next one reads this version
    at = utc_now()
    canceled = store.request_cancel("t1", at, "cancel requested")
    assert canceled is not None and canceled.cancel_requested and canceled.version == task.version + 1
    assert canceled.step_token is None and canceled.detail == "cancel requested" and canceled.updated_at == at
    assert canceled.events[-1] == replace(canceled.events[-1], at=at, stage=Stage.WAITING,
                                          status=TaskStatus.PROCESSING, detail="cancel requested")
    assert store.get("t1") == canceled
    with pytest.raises(ConcurrentUpdateError):
        store.update(task)  # a step that read before the cancel cannot write over it
    assert store.request_cancel("t1", utc_now(), "cancel requested") == canceled  # once only
    assert store.request_cancel("nope", utc_now(), "cancel requested") is None


def test_a_cancel_of_an_ended_task_changes_nothing(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    task.record(at=utc_now(), status=TaskStatus.FAILED, detail="the endpoint failed")
    ended = store.update(task)
    assert store.request_cancel("t1", utc_now(), "cancel requested") == ended
    assert store.get("t1") == ended


def test_update_from_a_stale_read_loses(backend: dict[str, Any]) -> None:
    store = backend["store"]
    store.create(make_task("t1"))
    first = store.get("t1")
    second = store.get("t1")
    assert first is not None and second is not None
    first.record(at=utc_now(), status=TaskStatus.PROCESSING)
    store.update(first)
    second.record(at=utc_now(), status=TaskStatus.CANCELED)
    with pytest.raises(ConcurrentUpdateError):
        store.update(second)
    read = store.get("t1")
    assert read is not None and read.status == TaskStatus.PROCESSING


def test_an_ended_task_expires_a_retention_after_its_end_and_an_active_one_never(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    assert task.expires_at is None
    start = utc_now()
    task.record(at=start, stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING)
    task = store.update(task)
    read = store.get("t1")
    assert task.expires_at is None and read is not None and read.expires_at is None

    ended = start + timedelta(minutes=12, microseconds=654_321)
    task.record(at=ended, status=TaskStatus.FAILED, detail="the endpoint failed")
    task = store.update(task)
    expected = (ended + RETENTION).replace(microsecond=0)  # TTL is whole epoch seconds
    read = store.get("t1")
    assert task.expires_at == expected and read is not None and read.expires_at == expected
    # A later write to the ended task (a duplicate message's note) does not push its expiry back.
    read.record(at=ended + timedelta(hours=5), detail="duplicate message ignored")
    store.update(read)
    again = store.get("t1")
    assert again is not None and again.expires_at == expected


def test_an_active_task_sent_with_an_expiry_is_stored_without_one(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = make_task("t1")
    task.expires_at = utc_now()  # whatever a caller says: only the final status decides
    assert store.create(task).expires_at is None
    read = store.get("t1")
    assert read is not None and read.expires_at is None


def test_a_store_without_retention_keeps_ended_tasks_forever(backend: dict[str, Any]) -> None:
    store = backend["keeps_forever"]
    task = store.create(make_task("t1"))
    task.record(at=utc_now(), status=TaskStatus.CANCELED, detail="canceled before it started")
    assert store.update(task).expires_at is None
    read = store.get("t1")
    assert read is not None and read.status == TaskStatus.CANCELED and read.expires_at is None


def test_lock_allows_one_holder_and_reentry(backend: dict[str, Any]) -> None:
    locks = backend["locks"]
    now = utc_now()
    assert locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, now)) is None
    assert locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, now)) is None
    held = locks.acquire(ModelLock("m1", "t2", TaskKind.DELETE, now))
    assert held is not None and held.task_id == "t1" and held.kind == TaskKind.DEPLOY
    assert locks.acquire(ModelLock("m2", "t2", TaskKind.DELETE, now)) is None


def test_lock_release_only_by_holder_and_stale_takeover(backend: dict[str, Any]) -> None:
    locks = backend["locks"]
    now = utc_now()
    locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, now))
    locks.release("m1", "t2")
    held = locks.get("m1")
    assert held is not None and held.task_id == "t1"
    assert locks.acquire(ModelLock("m1", "t3", TaskKind.DEPLOY, now), replace_task_id="t9") is not None
    assert locks.acquire(ModelLock("m1", "t3", TaskKind.DEPLOY, now), replace_task_id="t1") is None
    held = locks.get("m1")
    assert held is not None and held.task_id == "t3"
    locks.release("m1", "t3")
    assert locks.get("m1") is None


def test_alias_swap_is_conditional_on_version(backend: dict[str, Any]) -> None:
    aliases = backend["aliases"]
    assert aliases.get("m1") is None
    first = Alias("m1", "esd-a", None, "t1", utc_now())
    written = aliases.swap(first, expected_version=0)
    assert written.version == 1
    with pytest.raises(ConcurrentUpdateError):
        aliases.swap(replace(first, live_variant="esd-x"), expected_version=0)
    second = aliases.swap(Alias("m1", "esd-b", "esd-a", "t2", utc_now(), previous_task_id="t1"), expected_version=1)
    read = aliases.get("m1")
    assert read == second
    assert read.live_variant == "esd-b" and read.previous_variant == "esd-a"
    assert (read.task_id, read.previous_task_id) == ("t2", "t1")  # what a rollback names again
    aliases.swap(Alias("m1", "esd-a", None, "t1", utc_now()), expected_version=2)
    assert aliases.get("m1").previous_task_id is None


def test_an_alias_keeps_the_content_hash_and_dimension_of_both_variants(backend: dict[str, Any]) -> None:
    """The dimensions bound invoke batches: they come back as the ints they went in (DynamoDB
    answers numbers as Decimal), and a variant without one stays without."""
    aliases = backend["aliases"]
    aliases.swap(Alias("m1", "esd-a", None, "t1", utc_now(), live_content_hash="a" * 64, live_dimension=384),
                 expected_version=0)
    written = aliases.swap(
        Alias("m1", "esd-b", "esd-a", "t2", utc_now(), live_content_hash="b" * 64, previous_content_hash="a" * 64,
              live_dimension=4096, previous_dimension=384),
        expected_version=1,
    )
    read = aliases.get("m1")
    assert read == written
    assert (read.live_dimension, read.previous_dimension) == (4096, 384)
    assert type(read.live_dimension) is int
    dropped = aliases.swap(replace(read, previous_variant=None, previous_content_hash=None, previous_dimension=None),
                           expected_version=read.version)
    assert aliases.get("m1") == dropped and dropped.previous_dimension is None


def test_alias_and_lock_live_side_by_side(backend: dict[str, Any]) -> None:
    aliases, locks = backend["aliases"], backend["locks"]
    locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, utc_now()))
    aliases.swap(Alias("m1", "esd-a", None, "t1", utc_now()), expected_version=0)
    locks.release("m1", "t1")
    alias = aliases.get("m1")
    assert alias is not None and alias.live_variant == "esd-a"
    assert locks.get("m1") is None


def test_list_live_skips_cleared_aliases(backend: dict[str, Any]) -> None:
    aliases = backend["aliases"]
    aliases.swap(Alias("b", "esd-b", None, "t1", utc_now()), expected_version=0)
    aliases.swap(Alias("a", "esd-a", None, "t2", utc_now()), expected_version=0)
    aliases.swap(Alias("c", "esd-c", None, "t3", utc_now()), expected_version=0)
    aliases.swap(Alias("c", None, None, "t4", None), expected_version=1)
    backend["locks"].acquire(ModelLock("d", "t5", TaskKind.DEPLOY, utc_now()))
    assert [a.embedding_model_id for a in aliases.list_live()] == ["a", "b"]


def test_list_held_locks(backend: dict[str, Any]) -> None:
    locks = backend["locks"]
    locks.acquire(ModelLock("b", "t2", TaskKind.DELETE, utc_now()))
    locks.acquire(ModelLock("a", "t1", TaskKind.DEPLOY, utc_now()))
    backend["aliases"].swap(Alias("c", "esd-c", None, "t3", utc_now()), expected_version=0)
    assert [(lock.embedding_model_id, lock.task_id) for lock in locks.list_held()] == [("a", "t1"), ("b", "t2")]


def test_releasing_a_lease_to_forget_a_model_with_nothing_aliased_removes_it(backend: dict[str, Any]) -> None:
    """Issue 15: model items were never deleted; a deleted (or never live) model leaves nothing."""
    aliases, locks = backend["aliases"], backend["locks"]
    locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, utc_now()))
    aliases.swap(Alias("m1", "esd-a", None, "t1", utc_now()), expected_version=0)
    locks.release("m1", "t1")
    locks.acquire(ModelLock("m1", "t2", TaskKind.DELETE, utc_now()))
    aliases.swap(Alias("m1", None, None, "t2", utc_now()), expected_version=1)
    locks.release("m1", "t2")
    cleared = aliases.get("m1")
    assert cleared is not None and cleared.live_variant is None  # kept without `forget`
    locks.acquire(ModelLock("m1", "t3", TaskKind.DELETE, utc_now()))
    locks.release("m1", "t3", forget=True)
    assert aliases.get("m1") is None and locks.get("m1") is None
    # The next deploy starts from no alias at all.
    assert aliases.swap(Alias("m1", "esd-b", None, "t4", utc_now()), expected_version=0).version == 1


def test_releasing_the_lease_keeps_a_model_with_a_live_or_previous_variant(backend: dict[str, Any]) -> None:
    aliases, locks = backend["aliases"], backend["locks"]
    locks.acquire(ModelLock("m1", "t1", TaskKind.DEPLOY, utc_now()))
    aliases.swap(Alias("m1", "esd-a", None, "t1", utc_now()), expected_version=0)
    locks.release("m1", "t1", forget=True)
    locks.acquire(ModelLock("m2", "t2", TaskKind.DEPLOY, utc_now()))
    aliases.swap(Alias("m2", None, "esd-old", "t2", utc_now()), expected_version=0)
    locks.release("m2", "t2", forget=True)
    locks.acquire(ModelLock("m3", "t3", TaskKind.DEPLOY, utc_now()))
    locks.release("m3", "someone-else", forget=True)
    alias1, alias2 = aliases.get("m1"), aliases.get("m2")
    assert alias1 is not None and alias1.live_variant == "esd-a"
    assert alias2 is not None and alias2.previous_variant == "esd-old"
    held = locks.get("m3")
    assert held is not None and held.task_id == "t3"


def test_live_model_slots_stop_at_the_cap_and_a_model_keeps_its_own(backend: dict[str, Any]) -> None:
    slots = backend["slots"]
    assert slots.holders() == {}
    assert slots.reserve("b", "t1", cap=2) is None
    assert slots.reserve("a", "t2", cap=2) is None
    assert slots.reserve("c", "t3", cap=2) == ["a", "b"]
    assert slots.reserve("a", "t4", cap=2) is None  # a redeploy of a model that holds a slot
    assert slots.holders() == {"a": "t4", "b": "t1"}
    # Only the task that reserved last frees it (a newer deploy of the model keeps it) ...
    slots.release("a", "t2")
    assert slots.holders() == {"a": "t4", "b": "t1"}
    slots.release("a", "t4")
    assert slots.reserve("c", "t3", cap=2) is None
    # ... or anyone, for a model that is gone (a delete).
    slots.release("b")
    slots.release("nothing-here")
    assert slots.holders() == {"c": "t3"}


def test_live_model_slots_are_not_a_model(backend: dict[str, Any]) -> None:
    backend["slots"].reserve("a", "t1", cap=5)
    assert backend["aliases"].list_live() == [] and backend["locks"].list_held() == []


def test_a_rekick_is_noted_on_the_version_read_and_leaves_the_version(backend: dict[str, Any]) -> None:
    store = backend["store"]
    task = store.create(make_task("t1"))
    at = utc_now()
    assert store.note_rekick(task, at) is True
    read = store.get("t1")
    assert read is not None and read.rekicked_at == at and read.version == 1
    read.record(at=utc_now(), stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING)
    store.update(read)
    assert store.note_rekick(task, utc_now()) is False  # it moved on: it was not stalled
    moved = store.get("t1")
    assert moved is not None and moved.version == 2 and moved.stage == Stage.PREFLIGHT
