"""Adapters: an SQS queue behind the Queue port (JSON bodies, delays capped at SQS's 900 s)."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.queue_messages import to_body
from chalicelib.config import SQS_MAX_DELAY_SECONDS
from chalicelib.domain.errors import DispatchError
from chalicelib.domain.messages import WorkMessage


class SqsQueue:
    def __init__(self, client: Any, queue_name: str, queue_url: str | None = None) -> None:
        self._client = client
        self.name = queue_name
        self._url = queue_url

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._client.get_queue_url(QueueName=self.name)["QueueUrl"]
        return self._url

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        delay = max(0, min(int(delay_seconds), SQS_MAX_DELAY_SECONDS))
        try:
            answer = self._client.send_message(
                QueueUrl=self.url,
                MessageBody=json.dumps(to_body(message), separators=(",", ":"), sort_keys=True),
                DelaySeconds=delay,
            )
        except (ClientError, BotoCoreError) as exc:
            raise DispatchError(f"could not send a message to queue {self.name}: {exc}") from exc
        return str(answer["MessageId"])
