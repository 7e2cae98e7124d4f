"""Racing requests against moto DynamoDB: the per-model lock lets exactly one win.

The `aws` fixture's moto keeps DynamoDB's atomic conditional writes by the same mechanism as the
local stack's (esdeploy/local/embedded_aws.py), not by a lock of its own; tests/e2e races over HTTP.
"""
from __future__ import annotations

import functools
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from chalicelib import wiring
from chalicelib.api.schemas import parse_delete, parse_deploy
from chalicelib.config import Settings
from chalicelib.domain.errors import IdempotencyConflictError, ModelBusyError
from chalicelib.services.tasks import TaskService

RACERS = 8


def race(target) -> list[str]:
    outcomes: list[str] = []
    start = threading.Barrier(RACERS)
    guard = threading.Lock()

    def run(index: int) -> None:
        start.wait()
        try:
            task = target(index)
            result = f"won:{task.task_id}"
        except ModelBusyError:
            result = "busy"
        except IdempotencyConflictError:
            result = "conflict"
        with guard:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_racing_operations_on_one_model_have_one_winner(aws_adapters: wiring.Adapters, upload) -> None:
    upload("m1")
    service = aws_adapters.build(TaskService)

    def submit(index: int):
        if index % 2:
            return service.submit(parse_delete({"embedding_model_id": "m1"}))
        return service.submit(parse_deploy({"embedding_model_id": "m1"}))

    outcomes = race(submit)
    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1, outcomes
    assert Counter(outcomes)["busy"] == RACERS - 1
    lock = aws_adapters.locks.get("m1")
    assert lock is not None and f"won:{lock.task_id}" == winners[0]


def test_racing_replays_of_one_client_id_make_one_task(aws_adapters: wiring.Adapters, upload) -> None:
    upload("m1")
    service = aws_adapters.build(TaskService)

    def submit(index: int):
        bake = 10 if index < RACERS // 2 else 20
        return service.submit(
            parse_deploy({"embedding_model_id": "m1", "id": "same", "config": {"bake_seconds": bake}})
        )

    outcomes = race(submit)
    winners = set(o for o in outcomes if o.startswith("won:"))
    assert winners == {"won:same"}
    stored = aws_adapters.store.get("same")
    assert stored is not None
    # Everyone who sent the stored body got it back; the others were told of the conflict.
    same_body = sum(1 for o in outcomes if o == "won:same")
    assert same_body + Counter(outcomes)["conflict"] == RACERS
    assert Counter(outcomes)["conflict"] == RACERS // 2


def test_the_embedded_dynamodb_lets_exactly_one_conditional_write_win(aws: dict, settings: Settings) -> None:
    """DynamoDB's guarantee itself. Without keep_dynamodb_atomic(), moto lets two of these writes
    through in about half the rounds once threads switch often (as they do under load)."""
    from botocore.config import Config

    client = aws["session"].client("dynamodb", config=Config(max_pool_connections=16))
    table = settings.models_table

    def take(barrier: threading.Barrier, key: str, index: int) -> bool:
        barrier.wait()
        try:
            client.update_item(
                TableName=table, Key={"embedding_model_id": {"S": key}},
                UpdateExpression="SET lock_task_id = :me", ConditionExpression="attribute_not_exists(lock_task_id)",
                ExpressionAttributeValues={":me": {"S": str(index)}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with ThreadPoolExecutor(16) as pool:
            winners = [sum(pool.map(functools.partial(take, threading.Barrier(16), f"m{n}"), range(16)))
                       for n in range(20)]
    finally:
        sys.setswitchinterval(previous)
    assert winners == [1] * 20

