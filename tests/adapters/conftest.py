"""Adapter fixtures: SageMaker clients answered by botocore's Stubber (no network, no moto)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.adapters.sagemaker_hosting import SageMakerHosting

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.client import SageMakerClient
    from mypy_boto3_sagemaker_runtime.client import SageMakerRuntimeClient

ROLE_ARN = "arn:aws:iam::123456789012:role/esdeploy-test-sagemaker"


@dataclass
class StubbedSageMaker:
    hosting: SageMakerHosting
    control: Stubber
    runtime: Stubber


@pytest.fixture(scope="session")
def sagemaker_clients() -> tuple[SageMakerClient, SageMakerRuntimeClient]:
    # Building clients loads service models (~0.3 s); the Stubbers below are per test.
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return session.client("sagemaker"), session.client("sagemaker-runtime")


@pytest.fixture
def stubbed(sagemaker_clients: tuple[SageMakerClient, SageMakerRuntimeClient]) -> Iterator[StubbedSageMaker]:
    control_client, runtime_client = sagemaker_clients
    with Stubber(control_client) as control, Stubber(runtime_client) as runtime:
        yield StubbedSageMaker(
            hosting=SageMakerHosting(control_client, runtime_client, role_arn=ROLE_ARN),
            control=control,
            runtime=runtime,
        )
        # Every queued answer was asked for: the adapter made exactly the calls a test expects.
        control.assert_no_pending_responses()
        runtime.assert_no_pending_responses()
