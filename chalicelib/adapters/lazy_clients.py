"""Adapters: boto3 clients and resources made on first use, so that a Lambda pays only for those it calls.

Building a client loads its service model (tens of milliseconds each, DynamoDB's resource the most);
`GET /deploy/{id}` needs one table, not SQS, SSM, S3 and SageMaker as well (bench/coldstart.py).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class OnFirstUse:
    """Stands for what `make()` returns, made once, under a lock (boto3's default session is not safe
    to build clients from in several threads at once), when one of its attributes is first read."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None
        self._lock = threading.Lock()

    def made(self) -> Any:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
        return self._made

    def __getattr__(self, name: str) -> Any:
        # Only attributes this class lacks get here: everything the client or resource has.
        return getattr(self.made(), name)
