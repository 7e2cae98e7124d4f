"""Adapters: SageMaker's wire shapes, defined once — endpoint statuses, our tags, the state-change event.

SageMakerHosting speaks them to AWS; the local stack, the fakes and the scenario harness import them
from here, so that what a stand-in says is what SageMaker says. No boto3 here: stand-ins import it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.domain.messages import EndpointChanged
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantSpec

# Every part of a variant carries these tags: who owns it (task), for which model, and that we made it.
TAG_MODEL_ID = "embedding_model_id"
TAG_TASK_ID = "task_id"
TAG_MANAGED_BY = "managed-by"
MANAGED_BY = "esdeploy"
# The one production variant of each endpoint config (SageMaker's name for the traffic split).
PRODUCTION_VARIANT = "AllTraffic"

# Every SageMaker endpoint status (DescribeEndpoint's EndpointStatus), and what it means to the services.
ENDPOINT_STATES: Mapping[str, EndpointState] = {
    "Creating": EndpointState.CREATING,
    "Updating": EndpointState.CREATING,
    "SystemUpdating": EndpointState.CREATING,
    "RollingBack": EndpointState.CREATING,
    # Not serving now, but SageMaker may bring it back by itself: wait (the deploy deadline
    # bounds the wait) rather than tear down a variant that could still recover.
    "OutOfService": EndpointState.CREATING,
    "InService": EndpointState.IN_SERVICE,
    "Deleting": EndpointState.DELETING,
    "Failed": EndpointState.FAILED,
    "UpdateRollbackFailed": EndpointState.FAILED,
}
# What a stand-in reports for each state, in SageMaker's words.
_STATUS_OF_STATE: Mapping[EndpointState, str] = {
    EndpointState.CREATING: "Creating",
    EndpointState.IN_SERVICE: "InService",
    EndpointState.FAILED: "Failed",
    EndpointState.DELETING: "Deleting",
}

# EventBridge's detail-type for SageMaker endpoint state changes.
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"


def variant_tags(spec: VariantSpec, managed_by: str = MANAGED_BY) -> dict[str, str]:
    return {TAG_MODEL_ID: spec.embedding_model_id, TAG_TASK_ID: spec.task_id, TAG_MANAGED_BY: managed_by}


def state_of(platform_status: str) -> EndpointState:
    """Map a SageMaker endpoint status; an unknown (newer) one is waited on, not trusted."""
    return ENDPOINT_STATES.get(platform_status, EndpointState.CREATING)


def platform_status(state: EndpointState) -> str:
    """SageMaker's name for a state (a stand-in's EndpointStatus)."""
    return _STATUS_OF_STATE.get(state, state.value)


def endpoint_state_change(
    endpoint_name: str, status: str, tags: Mapping[str, str], failure_reason: str | None = None
) -> dict[str, Any]:
    """The event as EventBridge delivers it to the deploy-tasks queue (stand-ins send this)."""
    detail: dict[str, Any] = {"EndpointName": endpoint_name, "EndpointStatus": status, "Tags": dict(tags)}
    if failure_reason:
        detail["FailureReason"] = failure_reason
    return {"version": "0", "source": "aws.sagemaker", "detail-type": ENDPOINT_STATE_CHANGE, "detail": detail}


def is_endpoint_state_change(body: Mapping[str, Any]) -> bool:
    return body.get("detail-type") == ENDPOINT_STATE_CHANGE


def read_endpoint_state_change(body: Mapping[str, Any]) -> EndpointChanged | None:
    """The typed event, or None when the body is not a well-formed endpoint state change."""
    detail = body.get("detail")
    if not is_endpoint_state_change(body) or not isinstance(detail, dict):
        return None
    name, status, tags = detail.get("EndpointName"), detail.get("EndpointStatus"), detail.get("Tags") or {}
    if not isinstance(name, str) or not isinstance(status, str) or not isinstance(tags, dict):
        return None
    reason = detail.get("FailureReason")
    return EndpointChanged(
        endpoint_name=name,
        state=state_of(status),
        platform_status=status,
        task_id=_text(tags.get(TAG_TASK_ID)),
        embedding_model_id=_text(tags.get(TAG_MODEL_ID)),
        failure_reason=reason if isinstance(reason, str) else None,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
