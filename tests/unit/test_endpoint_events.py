"""SageMaker's "Endpoint State Change" event as AWS documents it: read in every documented form,
sent in the documented shape by every stand-in, and never a poison message when it is malformed."""
from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.queue_messages import read_deploy_tasks
from chalicelib.adapters.sagemaker_shapes import endpoint_state_change, event_status
from chalicelib.domain.errors import UnreadableMessageError
from chalicelib.domain.messages import EndpointChanged
from chalicelib.domain.models import EndpointState
from esdeploy.local.pollers import sqs_record

NAME = "esd-intfloat-e5-small-1a2b3c4d-5e6f7a8b"

# The example of the SageMaker developer guide ("Events that Amazon SageMaker AI sends to Amazon
# EventBridge", SageMaker endpoint state change), with our endpoint's name and tags filled in.
DOCUMENTED: dict[str, Any] = {
    "version": "0",
    "id": "d2921b5a-b0ad-cace-a8e3-0f159d018e06",
    "detail-type": "SageMaker Endpoint State Change",
    "source": "aws.sagemaker",
    "account": "111122223333",
    "time": "1583831889050",
    "region": "us-west-2",
    "resources": [f"arn:aws:sagemaker:us-west-2:111122223333:endpoint/{NAME}"],
    "detail": {
        "EndpointName": NAME,
        "EndpointArn": f"arn:aws:sagemaker:us-west-2:111122223333:endpoint/{NAME}",
        "EndpointConfigName": NAME,
        "ProductionVariants": [{"DesiredWeight": 1.0, "DesiredInstanceCount": 1.0}],
        "EndpointStatus": "IN_SERVICE",
        "CreationTime": 1592411992203.0,
        "LastModifiedTime": 1592411994287.0,
        "Tags": {"embedding_model_id": "intfloat/e5-small", "task_id": "task-1", "managed-by": "esdeploy"},
    },
}
WOKEN = EndpointChanged(
    endpoint_name=NAME,
    state=EndpointState.IN_SERVICE,
    platform_status="IN_SERVICE",
    task_id="task-1",
    embedding_model_id="intfloat/e5-small",
)


def event(**detail: Any) -> dict[str, Any]:
    documented = copy.deepcopy(DOCUMENTED)
    documented["detail"].update(detail)
    return documented


def test_the_documented_example_wakes_its_task() -> None:
    assert read_deploy_tasks(json.dumps(DOCUMENTED)) == WOKEN


def test_tags_as_the_published_schemas_list_of_key_and_value() -> None:
    listed = event(Tags=[{"key": k, "value": v} for k, v in DOCUMENTED["detail"]["Tags"].items()])
    assert read_deploy_tasks(json.dumps(listed)) == WOKEN
    as_the_api_spells_them = event(Tags=[{"Key": k, "Value": v} for k, v in DOCUMENTED["detail"]["Tags"].items()])
    assert read_deploy_tasks(json.dumps(as_the_api_spells_them)) == WOKEN


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("CREATING", EndpointState.CREATING),
        ("UPDATING", EndpointState.CREATING),
        ("SYSTEM_UPDATING", EndpointState.CREATING),
        ("ROLLING_BACK", EndpointState.CREATING),
        ("OUT_OF_SERVICE", EndpointState.CREATING),
        ("IN_SERVICE", EndpointState.IN_SERVICE),
        ("DELETING", EndpointState.DELETING),
        ("FAILED", EndpointState.FAILED),
        ("UPDATE_ROLLBACK_FAILED", EndpointState.FAILED),
        # DescribeEndpoint's spelling, which stand-ins used to send, is read alike.
        ("InService", EndpointState.IN_SERVICE),
        ("Failed", EndpointState.FAILED),
    ],
)
def test_every_status_in_either_spelling(status: str, state: EndpointState) -> None:
    changed = read_deploy_tasks(json.dumps(event(EndpointStatus=status)))
    assert isinstance(changed, EndpointChanged)
    assert (changed.state, changed.platform_status) == (state, status)


def test_a_failure_carries_its_reason() -> None:
    changed = read_deploy_tasks(json.dumps(event(EndpointStatus="FAILED", FailureReason="CUDA out of memory")))
    assert isinstance(changed, EndpointChanged) and changed.failure_reason == "CUDA out of memory"


def test_what_stand_ins_send_has_the_documented_shape() -> None:
    tags = DOCUMENTED["detail"]["Tags"]
    sent = endpoint_state_change(NAME, EndpointState.IN_SERVICE, tags, region="us-west-2", account="111122223333")

    assert set(sent) == set(DOCUMENTED)
    assert {k: sent[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        k: DOCUMENTED[k] for k in ("version", "detail-type", "source", "account", "region", "resources")
    }
    assert set(sent["detail"]) == set(DOCUMENTED["detail"]) - {"ProductionVariants"}
    assert sent["detail"]["EndpointStatus"] == "IN_SERVICE" and sent["detail"]["Tags"] == tags
    assert sent["detail"]["EndpointArn"] == DOCUMENTED["detail"]["EndpointArn"]
    assert read_deploy_tasks(json.dumps(sent)) == WOKEN


@pytest.mark.parametrize(
    ("status", "documented"),
    [(EndpointState.IN_SERVICE, "IN_SERVICE"), (EndpointState.CREATING, "CREATING"),
     (EndpointState.FAILED, "FAILED"), (EndpointState.DELETING, "DELETING"), ("Updating", "UPDATING"),
     ("SystemUpdating", "SYSTEM_UPDATING"), ("UpdateRollbackFailed", "UPDATE_ROLLBACK_FAILED")],
)
def test_event_status_spells_as_the_event_does(status: EndpointState | str, documented: str) -> None:
    assert event_status(status) == documented


MALFORMED = [
    event(Tags="embedding_model_id=m1"),
    event(Tags=["embedding_model_id"]),
    event(Tags=[{"value": "m1"}]),
    event(EndpointStatus=None),
    event(EndpointStatus=""),
    event(EndpointName=42),
    {**DOCUMENTED, "detail": "IN_SERVICE"},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_a_malformed_event_is_unreadable(body: dict[str, Any]) -> None:
    with pytest.raises(UnreadableMessageError, match="SageMaker Endpoint State Change"):
        read_deploy_tasks(json.dumps(body))


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_malformed_event_is_logged_and_acknowledged_never_retried(test_env: dict[str, str]) -> None:
    from app import app

    records = [
        sqs_record({"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": json.dumps(body)}, "deploy-tasks")
        for i, body in enumerate(MALFORMED)
    ]
    logged = Records()
    batch_logger = logging.getLogger("chalicelib.batch")  # whoever else listens (Powertools' JSON) too
    batch_logger.addHandler(logged)
    try:
        with Client(app) as client:
            for record in records:
                payload = client.lambda_.invoke("deploy_worker", {"Records": [record]}).payload
                assert payload == {"batchItemFailures": []}  # acknowledged: SQS would never redeliver it
    finally:
        batch_logger.removeHandler(logged)
    unreadable = [r for r in logged.records if r.getMessage().startswith("unreadable message acknowledged")]
    assert [(r.levelname, r.__dict__["message_id"]) for r in unreadable] == [
        ("ERROR", record["messageId"]) for record in records
    ]
