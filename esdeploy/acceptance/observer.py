"""Operator tool layer: the run's window on EventBridge — SageMaker's and CloudWatch's events into an SQS queue.

The product's rules deliver the same events to its deploy queue, where the worker consumes them;
this second rule lets the run read what AWS actually sent (tags, status spellings, times) without
touching the product. Both are tagged with the run's id and deleted in the teardown. SQS keeps
the messages, and each one's `SentTimestamp` says when EventBridge delivered it, so the run reads
them once, at the end, with AWS's own times.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Everything SageMaker and CloudWatch put on the default bus: a sandbox account's volume is small,
# and the events of inference components have no documented detail-type to filter on yet.
EVENT_PATTERN = {"source": ["aws.sagemaker", "aws.cloudwatch"]}
RECEIVE_BATCH = 10


@dataclass(frozen=True)
class ObservedEvent:
    """One event as EventBridge delivered it, and when it reached the queue (epoch seconds, AWS's clock)."""

    body: Mapping[str, Any]
    delivered_at: float

    @property
    def detail_type(self) -> str:
        return str(self.body.get("detail-type", ""))

    @property
    def detail(self) -> Mapping[str, Any]:
        detail = self.body.get("detail")
        return detail if isinstance(detail, Mapping) else {}


class EventObserver:
    """`start()` makes the queue and the rule; `collect()` reads what arrived; `tear_down()` deletes both."""

    def __init__(self, events: Any, sqs: Any, name: str, tags: Mapping[str, str]) -> None:
        self._events = events
        self._sqs = sqs
        self.name = name
        self._tags = dict(tags)
        self.queue_url: str | None = None
        self.rule_made = False
        self.seen: list[ObservedEvent] = []

    @classmethod
    def existing(cls, events: Any, sqs: Any, name: str) -> EventObserver:
        """The rule and queue named `name` as they are now (a teardown in another process finds them by name)."""
        from botocore.exceptions import ClientError

        observer = cls(events, sqs, name, {})
        try:
            events.describe_rule(Name=name)
            observer.rule_made = True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        try:
            observer.queue_url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as error:
            if not _queue_gone(error):
                raise
        return observer

    def start(self) -> None:
        self.queue_url = str(
            self._sqs.create_queue(
                QueueName=self.name,
                Attributes={"MessageRetentionPeriod": str(4 * 86_400), "SqsManagedSseEnabled": "true"},
                tags=self._tags,
            )["QueueUrl"]
        )
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        rule_arn = self._events.put_rule(
            Name=self.name,
            EventPattern=json.dumps(EVENT_PATTERN),
            State="ENABLED",
            Description="esdeploy acceptance run: copies SageMaker and CloudWatch events to its queue",
            Tags=[{"Key": key, "Value": value} for key, value in self._tags.items()],
        )["RuleArn"]
        self.rule_made = True
        # EventBridge may send to the queue only for this rule (the documented queue policy for an SQS target).
        self._sqs.set_queue_attributes(
            QueueUrl=self.queue_url,
            Attributes={"Policy": json.dumps(_queue_policy(queue_arn, rule_arn))},
        )
        self._events.put_targets(Rule=self.name, Targets=[{"Id": "acceptance-queue", "Arn": queue_arn}])

    def collect(self, wait_seconds: int = 1) -> list[ObservedEvent]:
        """Everything that arrived since the last call (also kept in `seen`), each message deleted once read."""
        if self.queue_url is None:
            return []
        new: list[ObservedEvent] = []
        while True:
            answer = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=RECEIVE_BATCH,
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["SentTimestamp"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    body = json.loads(message["Body"])
                except ValueError:
                    body = {"unreadable": message["Body"][:500]}
                sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                new.append(ObservedEvent(body if isinstance(body, dict) else {"body": body}, sent))
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        self.seen.extend(new)
        return new

    def events(self, wanted: Callable[[ObservedEvent], bool]) -> list[ObservedEvent]:
        return [event for event in self.seen if wanted(event)]

    def tear_down(self) -> None:
        """Targets, rule, queue; each one already gone is fine (a teardown may run twice)."""
        from botocore.exceptions import ClientError

        if self.rule_made:
            try:
                self._events.remove_targets(Rule=self.name, Ids=["acceptance-queue"])
                self._events.delete_rule(Name=self.name)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
            self.rule_made = False
        if self.queue_url is not None:
            try:
                self._sqs.delete_queue(QueueUrl=self.queue_url)
            except ClientError as error:
                if not _queue_gone(error):
                    raise
            self.queue_url = None

    def leftovers(self) -> list[str]:
        """What of the rule and queue still exists (read from AWS, not from this object's memory)."""
        from botocore.exceptions import ClientError

        left: list[str] = []
        try:
            self._events.describe_rule(Name=self.name)
            left.append(f"EventBridge rule {self.name}")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        try:
            url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
            left.append(f"SQS queue {url}")
        except ClientError as error:
            if not _queue_gone(error):
                raise
        return left


def _queue_gone(error: Any) -> bool:
    """SQS's "no such queue", as its JSON protocol and its older query protocol spell it."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")


def _queue_policy(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeRuleOnly",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
