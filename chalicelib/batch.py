"""Handlers' helper: an SQS batch, record by record, through Powertools' batch processing, with a
partial batch response. Powertools' batch module builds its pydantic event models on import (over
100 ms), so it is imported on the first SQS batch, never by the HTTP function."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.domain.errors import UnreadableMessageError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)

MessageT = TypeVar("MessageT")


def process_sqs_batch(
    function: str,
    event: dict[str, Any],
    read: Callable[[str], MessageT],
    handle: Callable[[MessageT, dict[str, Any]], object],
) -> dict[str, Any]:
    """`handle(read(body), record)` for each record of a Lambda SQS event; the answer lists the
    records that failed, so SQS redelivers just them. A body that no reader understands is logged
    and acknowledged, since no redelivery can make it readable."""
    from aws_lambda_powertools.utilities.batch import process_partial_response

    from chalicelib.batch_processor import CountingBatchProcessor

    def handle_record(record: SQSRecord) -> None:
        try:
            handle(read(record.body), record.raw_event)
        except UnreadableMessageError as exc:
            logger.error(
                "unreadable message acknowledged: no worker can act on it",
                extra={"message_id": record.message_id, "error": str(exc), "body": record.body[:2000]},
            )

    processor = CountingBatchProcessor(function)
    return dict(process_partial_response(event=event, record_handler=handle_record, processor=processor))
