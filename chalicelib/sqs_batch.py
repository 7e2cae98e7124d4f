"""Handlers' helper: read and handle an SQS batch record by record, reporting partial failures."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from chalicelib.domain.errors import UnreadableMessageError
from chalicelib.metrics import count_failed_message

logger = logging.getLogger(__name__)

MessageT = TypeVar("MessageT")


def process_batch(
    function: str,
    records: Iterable[Any],
    read: Callable[[str], MessageT],
    handle: Callable[[MessageT, dict[str, Any]], object],
) -> dict[str, list[dict[str, str]]]:
    """`handle(read(body), record)` for each record. A failure is reported for that record only, so
    SQS redelivers just it (ReportBatchItemFailures is set on the mapping); a body that no reader
    understands is logged and acknowledged, since no redelivery can make it readable."""
    failures: list[dict[str, str]] = []
    for record in records:
        raw = record.to_dict() if hasattr(record, "to_dict") else dict(record)
        message_id = str(raw.get("messageId", ""))
        body = raw.get("body") or ""
        try:
            handle(read(body), raw)
        except UnreadableMessageError as exc:
            logger.error(
                "unreadable message acknowledged: no worker can act on it",
                extra={"message_id": message_id, "error": str(exc), "body": body[:2000]},
            )
        except Exception as exc:
            logger.warning(
                "message failed; SQS will redeliver it (then the DLQ takes it)",
                extra={"message_id": message_id, "error": f"{type(exc).__name__}: {exc}",
                       "receive_count": raw.get("attributes", {}).get("ApproximateReceiveCount")},
            )
            count_failed_message(function, message_id)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
