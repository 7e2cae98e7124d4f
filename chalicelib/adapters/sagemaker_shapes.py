"""Adapters: SageMaker's wire shapes, defined once — endpoint statuses, our tags, the state-change event.

SageMakerHosting speaks them to AWS; the local stack, the fakes and the scenario harness import them
from here, so that what a stand-in says is what SageMaker says. No boto3 here: stand-ins import it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.eventbridge import event_envelope
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

# EventBridge's detail-type for SageMaker endpoint state changes. Its EndpointStatus is spelled in
# upper snake case (IN_SERVICE, FAILED, CREATING, UPDATING, DELETING, ...), not as DescribeEndpoint
# spells it (InService, ...); its Tags are a map in the documented example and a list of
# {key, value} in the published schema. The reader takes every form; stand-ins send the example's.
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
EVENT_SOURCE = "aws.sagemaker"


def variant_tags(spec: VariantSpec, managed_by: str = MANAGED_BY) -> dict[str, str]:
    return {TAG_MODEL_ID: spec.embedding_model_id, TAG_TASK_ID: spec.task_id, TAG_MANAGED_BY: managed_by}


def _folded(status: str) -> str:
    """One key for both spellings of a status: "InService" and "IN_SERVICE" are both "inservice"."""
    return status.replace("_", "").replace(" ", "").lower()


_STATES_BY_FOLDED: Mapping[str, EndpointState] = {_folded(status): state for status, state in ENDPOINT_STATES.items()}


def state_of(platform_status: str) -> EndpointState:
    """Map a SageMaker endpoint status in either spelling (DescribeEndpoint's "InService", the event's
    "IN_SERVICE"); an unknown (newer) one is waited on, not trusted."""
    return _STATES_BY_FOLDED.get(_folded(platform_status), EndpointState.CREATING)


def platform_status(state: EndpointState) -> str:
    """SageMaker's name for a state (a stand-in's EndpointStatus)."""
    return _STATUS_OF_STATE.get(state, state.value)


def event_status(status: EndpointState | str) -> str:
    """The state-change event's spelling of a status: InService -> IN_SERVICE, Updating -> UPDATING."""
    text = platform_status(status) if isinstance(status, EndpointState) else status
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text).upper()


def endpoint_arn(name: str, *, region: str, account: str) -> str:
    # SageMaker lower-cases the name in its ARNs.
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{name.lower()}"


def endpoint_state_change(
    endpoint_name: str,
    status: EndpointState | str,
    tags: Mapping[str, str],
    failure_reason: str | None = None,
    *,
    region: str,
    account: str,
    created_at: datetime | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The event as EventBridge delivers it to the deploy-tasks queue, shaped as AWS documents it
    ("SageMaker endpoint state change" in the SageMaker developer guide): stand-ins send this."""
    now = at or datetime.now(UTC)
    arn = endpoint_arn(endpoint_name, region=region, account=account)
    detail: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "EndpointArn": arn,
        "EndpointConfigName": endpoint_name,  # every part of a variant carries the variant's name
        "EndpointStatus": event_status(status),
        "CreationTime": _epoch_millis(created_at or now),
        "LastModifiedTime": _epoch_millis(now),
        "Tags": dict(tags),
    }
    if failure_reason:
        detail["FailureReason"] = failure_reason
    return event_envelope(
        detail_type=ENDPOINT_STATE_CHANGE,
        source=EVENT_SOURCE,
        account=account,
        region=region,
        at=now,
        resources=[arn],
        detail=detail,
    )


def _epoch_millis(when: datetime) -> float:
    return float(round(when.timestamp() * 1000))


def is_endpoint_state_change(body: Mapping[str, Any]) -> bool:
    return body.get("detail-type") == ENDPOINT_STATE_CHANGE


def read_endpoint_state_change(body: Mapping[str, Any]) -> EndpointChanged | None:
    """The typed event, or None when the body is not a well-formed endpoint state change."""
    detail = body.get("detail")
    if not is_endpoint_state_change(body) or not isinstance(detail, dict):
        return None
    name, status = detail.get("EndpointName"), detail.get("EndpointStatus")
    tags = _tag_map(detail.get("Tags"))
    if not isinstance(name, str) or not name or not isinstance(status, str) or not status or tags is None:
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


def _tag_map(tags: object) -> dict[str, object] | None:
    """Tags as a map (the documented example) or a list of {key, value} (the published schema;
    Key/Value as SageMaker's API spells them is taken too); None when they are neither."""
    if tags is None:
        return {}
    if isinstance(tags, dict):
        return dict(tags)
    if not isinstance(tags, list):
        return None
    found: dict[str, object] = {}
    for tag in tags:
        if not isinstance(tag, dict):
            return None
        key = tag.get("key", tag.get("Key"))
        if not isinstance(key, str):
            return None
        found[key] = tag.get("value", tag.get("Value"))
    return found


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
