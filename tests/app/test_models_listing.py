"""GET /models reads the live models through an index, not by scanning every model item."""
from __future__ import annotations

from typing import Any

from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.domain.models import Alias, ModelLock, TaskKind, utc_now


def test_live_models_are_one_query_on_the_live_models_index(aws_adapters: wiring.Adapters) -> None:
    """Issue 15: GET /models scanned the whole models table (52 / 161 / 340 ms at 0 / 1,000 / 3,000
    models). The index holds the live ones only, in model id order."""
    for model in ("b", "a", "c"):
        aws_adapters.aliases.swap(Alias(model, f"esd-{model}", None, "t", utc_now()), expected_version=0)
    aws_adapters.aliases.swap(Alias("c", None, None, "t", utc_now()), expected_version=1)  # deleted
    for index in range(5):  # models with a deploy running and nothing live yet
        aws_adapters.locks.acquire(ModelLock(f"busy{index}", f"t{index}", TaskKind.DEPLOY, utc_now()))
    requests: list[tuple[str, dict[str, Any]]] = []
    client = aws_adapters.aliases._table.client  # type: ignore[attr-defined]

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        requests.append((model.name, params))

    client.meta.events.register("before-parameter-build.dynamodb.*", record)
    with Client(app) as test_client:
        answer = test_client.http.get("/models")
    assert answer.status_code == 200, answer.json_body
    assert [m["embedding_model_id"] for m in answer.json_body["models"]] == ["a", "b"]
    # One Query of the index and one read of the live-model slots (what a first deploy awaiting
    # promotion holds: README, item 4 of issue 21); never a Scan.
    assert [(name, params.get("IndexName")) for name, params in requests] == [("Query", "live-models"),
                                                                               ("GetItem", None)]
