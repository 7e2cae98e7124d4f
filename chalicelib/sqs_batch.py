"""Handlers' helper: process an SQS batch record by record and report partial failures."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


def process_batch(
    records: Iterable[Any], handle: Callable[[dict[str, Any], dict[str, Any]], None]
) -> dict[str, list[dict[str, str]]]:
    """Call `handle(body, record)` for each record; failed ones are reported, not the whole
    batch, so SQS redelivers only those (ReportBatchItemFailures is set on the mapping)."""
    failures: list[dict[str, str]] = []
    for record in records:
        raw = record.to_dict() if hasattr(record, "to_dict") else dict(record)
        message_id = str(raw.get("messageId", ""))
        try:
            body = json.loads(raw.get("body") or "")
            if not isinstance(body, dict):
                raise ValueError("message body is not a JSON object")
            handle(body, raw)
        except Exception as exc:
            logger.warning(
                "message failed; SQS will redeliver it (then the DLQ takes it)",
                extra={"message_id": message_id, "error": f"{type(exc).__name__}: {exc}",
                       "receive_count": raw.get("attributes", {}).get("ApproximateReceiveCount")},
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
