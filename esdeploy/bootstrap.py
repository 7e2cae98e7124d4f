"""Local tooling: creates the tables, queues (with DLQs) and bucket the app needs, as infra/ does."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters.dynamodb_tasks import EXPIRES_AT
from chalicelib.config import Settings, dead_letter_name

MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class QueueUrls:
    requests: str
    deploy: str
    teardown: str
    dead_letters: dict[str, str]


def create_tables(dynamodb_client: Any, settings: Settings) -> None:
    """Key design mirrors infra/: tasks by id, newest-by-model on the `by-model` index, ended
    tasks expiring by TTL; models by id, the live ones on the sparse `live-models` index."""
    dynamodb_client.create_table(
        TableName=settings.tasks_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "task_id", "AttributeType": "S"},
            {"AttributeName": "model_kind", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-model",
                "KeySchema": [
                    {"AttributeName": "model_kind", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb_client.update_time_to_live(
        TableName=settings.tasks_table,
        TimeToLiveSpecification={"AttributeName": EXPIRES_AT, "Enabled": True},
    )
    dynamodb_client.create_table(
        TableName=settings.models_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "embedding_model_id", "AttributeType": "S"},
            {"AttributeName": "listed", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "embedding_model_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "live-models",
                "KeySchema": [
                    {"AttributeName": "listed", "KeyType": "HASH"},
                    {"AttributeName": "embedding_model_id", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def create_queues(
    sqs_client: Any, settings: Settings, visibility_timeout: int = 60, max_receive_count: int = MAX_RECEIVE_COUNT
) -> QueueUrls:
    urls: dict[str, str] = {}
    dead: dict[str, str] = {}
    for name in (settings.requests_queue, settings.deploy_queue, settings.teardown_queue):
        dlq_url = sqs_client.create_queue(QueueName=dead_letter_name(name))["QueueUrl"]
        dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        dead[name] = dlq_url
        urls[name] = sqs_client.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
                ),
            },
        )["QueueUrl"]
    return QueueUrls(
        requests=urls[settings.requests_queue],
        deploy=urls[settings.deploy_queue],
        teardown=urls[settings.teardown_queue],
        dead_letters=dead,
    )


def create_bucket(s3_client: Any, settings: Settings) -> None:
    region = s3_client.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": settings.artifact_bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3_client.create_bucket(**kwargs)


def create_all(session: Any, settings: Settings, visibility_timeout: int = 60) -> QueueUrls:
    """Everything at once, from one boto3 session (moto in tests, ThreadedMotoServer locally)."""
    create_tables(session.client("dynamodb"), settings)
    create_bucket(session.client("s3"), settings)
    return create_queues(session.client("sqs"), settings, visibility_timeout)
