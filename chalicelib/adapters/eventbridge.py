"""Adapters: the EventBridge event envelope, defined once for every event a stand-in sends as AWS would."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def event_envelope(
    *,
    detail_type: str,
    source: str,
    account: str,
    region: str,
    at: datetime,
    resources: Sequence[str],
    detail: dict[str, Any],
) -> dict[str, Any]:
    """An event as EventBridge delivers it to an SQS target (the raw event is the message body)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": list(resources),
        "detail": detail,
    }
