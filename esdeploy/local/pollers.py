"""Local stack: feeds SQS queues to the same handlers Lambda calls, keeping SQS semantics."""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esdeploy.local.environment import CHALICE_CONFIG, LOCAL_REGION

logger = logging.getLogger(__name__)

# moto's default account: the one its ARNs and the local stage's role carry.
LOCAL_ACCOUNT = "123456789012"

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """What the handlers read of Lambda's context object."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def event_source_concurrency(
    function_name: str, template: Mapping[str, Any], config_path: Path = CHALICE_CONFIG
) -> int:
    """How many batches Lambda hands `function_name` at once: its SQS event source's
    MaximumConcurrency (in `template`, infra/template.yaml), else its reserved concurrency
    (.chalice/config.json), else 1."""
    logical = "".join(part.capitalize() for part in function_name.split("_"))  # Chalice's resource name
    resource = template.get("Resources", {}).get(logical, {})
    for event in resource.get("Properties", {}).get("Events", {}).values():
        maximum = event.get("Properties", {}).get("ScalingConfig", {}).get("MaximumConcurrency")
        if isinstance(maximum, int) and maximum > 0:
            return maximum
    functions = json.loads(config_path.read_text()).get("lambda_functions", {})
    reserved = functions.get(function_name, {}).get("reserved_concurrency")
    return reserved if isinstance(reserved, int) and reserved > 0 else 1


def queue_functions(chalice_app: Any) -> dict[str, str]:
    """Queue name -> the function Lambda runs on its messages, as Chalice holds it: `app.event_sources`, which
    app.py's @app.on_sqs_message decorators fill (and `chalice package` turns into event source mappings). The
    local stack and the test harnesses feed each queue to its function by this map, never by a copy of it."""
    from chalice.app import SQSEventConfig

    return {
        str(source.queue): source.name for source in chalice_app.event_sources if isinstance(source, SQSEventConfig)
    }


def sqs_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """A ReceiveMessage message as Lambda's SQS event source hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}",
        "awsRegion": LOCAL_REGION,
    }


class QueuePoller(threading.Thread):
    """Like Lambda's event source mapping: long-poll, invoke with a one-record batch, delete on
    success. A reported failure is left for SQS: it reappears after `retry_seconds` (a shorter
    visibility timeout than the queue's, so a laptop demo does not stall) and moto's redrive
    moves it to the DLQ after the queue's max receive count — as on AWS. The stack runs as many
    pollers per queue as Lambda would run the function at once (`event_source_concurrency`), so
    one slow message does not hold the others."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function_name: str,
        handler: Handler,
        stop: threading.Event,
        retry_seconds: int = 2,
        wait_seconds: int = 1,
        index: int = 1,
    ) -> None:
        super().__init__(name=f"poll-{function_name}-{index}", daemon=True)
        self._sqs = sqs
        self._url = queue_url
        self._function = function_name
        self._handler = handler
        self._stop_event = stop
        self._retry = retry_seconds
        self._wait = wait_seconds
        self.delivered = 0
        self.failed = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._poll_once()
            except Exception:
                if self._stop_event.is_set():
                    return
                logger.exception("poller error", extra={"function": self._function})
                self._stop_event.wait(1)

    def _poll_once(self) -> None:
        answer = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self._wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        for message in answer.get("Messages", []):
            record = sqs_record(message, self._url)
            context = LambdaContext(self._function, str(uuid.uuid4()))
            try:
                result = self._handler({"Records": [record]}, context)
                failed = bool((result or {}).get("batchItemFailures"))
            except Exception:
                logger.exception("handler raised", extra={"function": self._function})
                failed = True
            self.delivered += 1
            if failed:
                self.failed += 1
                self._sqs.change_message_visibility(
                    QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=self._retry
                )
            else:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


class Scheduler(threading.Thread):
    """Calls a scheduled handler every `every` seconds (EventBridge's rate() rule)."""

    def __init__(self, function_name: str, handler: Handler, every: float, stop: threading.Event) -> None:
        super().__init__(name=f"schedule-{function_name}", daemon=True)
        self._function = function_name
        self._handler = handler
        self._every = every
        self._stop_event = stop

    def run(self) -> None:
        while not self._stop_event.wait(self._every):
            event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                     "source": "aws.events", "account": LOCAL_ACCOUNT, "time": "", "region": LOCAL_REGION,
                     "resources": [], "detail": {}}
            try:
                self._handler(event, LambdaContext(self._function, str(uuid.uuid4())))
            except Exception:
                logger.exception("scheduled handler raised", extra={"function": self._function})
