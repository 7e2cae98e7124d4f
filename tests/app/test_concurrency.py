"""Racing requests against moto DynamoDB: the per-model lock lets exactly one win."""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_delete, parse_deploy
from chalicelib.domain.errors import IdempotencyConflictError, ModelBusyError
from chalicelib.services.tasks import TaskService

RACERS = 8


@pytest.fixture(autouse=True)
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real DynamoDB evaluates a condition and writes atomically; moto's backend does not lock,
    so under threads it can let two conditional writes through. Give moto DynamoDB's guarantee
    (one lock around each item operation) so that these tests judge our code, not moto's."""
    from moto.dynamodb.models import DynamoDBBackend

    guard = threading.RLock()
    for name in ("put_item", "update_item", "get_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, __original=original, **kwargs):
            with guard:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


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
