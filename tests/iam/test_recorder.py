"""The recorder sees which function makes each call and fails a denied call as AWS would."""
from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib import wiring
from tests.iam.lifecycle import SCHEDULED_EVENT
from tests.iam.recorder import Recorder, running_function


def test_calls_are_attributed_to_the_function_whose_handler_runs(aws_adapters: wiring.Adapters) -> None:
    from app import app

    with Recorder().installed() as recorder, Client(app) as client:
        assert client.http.get("/models").status_code == 200
        assert client.lambda_.invoke("sweeper", SCHEDULED_EVENT).payload
    by_function = {(c.call.function, f"{c.call.signing_name}.{c.call.operation}") for c in recorder.calls}
    assert ("api_handler", "dynamodb.Query") in by_function  # GET /models: the live-models index
    assert ("sweeper", "sagemaker.ListEndpoints") in by_function
    assert recorder.problems() == []


def test_test_code_is_not_the_product(aws: dict[str, Any]) -> None:
    with Recorder().installed() as recorder:
        aws["session"].client("sqs").list_queues()
    assert recorder.calls == []


def test_a_denied_call_fails_with_access_denied_and_the_report_names_the_statements(
    aws_adapters: wiring.Adapters,
) -> None:
    settings = aws_adapters.settings
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    token = running_function.set("sweeper")
    try:
        with Recorder().installed() as recorder, pytest.raises(ClientError) as raised:
            sagemaker.delete_model(ModelName=f"{settings.resource_prefix}-m1-00000000-00000000")
    finally:
        running_function.reset(token)
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    report = recorder.take_report()
    assert report is not None
    assert "sweeper: sagemaker.DeleteModel" in report
    assert "no statement in infra/iam/sweeper.json grants sagemaker:DeleteModel" in report
    assert recorder.take_report() is None  # each problem is reported once
