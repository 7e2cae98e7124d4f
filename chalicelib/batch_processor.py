"""Handlers' helper: Powertools' SQS BatchProcessor, told to report rather than raise, and to count
each failed message for its alarm. Imported on the first SQS batch only (see chalicelib/batch.py)."""
from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from chalicelib.metrics import count_failed_message

logger = logging.getLogger(__name__)


class CountingBatchProcessor(BatchProcessor):
    """Reports failed records as batch item failures (ReportBatchItemFailures is set on the event
    source mapping in infra/), never raises for a wholly failed batch (Lambda's Errors would count
    it while the failure is already reported per item), and counts each failure as MessagesFailed."""

    def __init__(self, function: str) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self.function = function

    def failure_handler(self, record: Any, exception: Any) -> Any:
        _kind, error, _traceback = exception
        message_id = str(record.message_id)
        logger.warning(
            "message failed; SQS will redeliver it (then the DLQ takes it)",
            extra={"message_id": message_id, "error": f"{type(error).__name__}: {error}",
                   "receive_count": record.attributes.approximate_receive_count, "function": self.function},
        )
        count_failed_message(self.function, message_id)
        return super().failure_handler(record, exception)
