"""Local stack: every invocation of a local endpoint, from which SageMaker's AWS/SageMaker metrics follow.

SageMaker publishes, per endpoint and variant, one sample per InvokeEndpoint request: `Invocations`
(1), `Invocation4XXErrors` / `Invocation5XXErrors` (1 when the model answered that class, else 0) and
`ModelLatency` (microseconds the container took, for requests it answered). The local hosting records
each invocation once, whichever way it came (InvokeEndpoint on the embedded AWS, or the product's
own invoke and smoke test), and the alarm stand-in computes the metrics from these records.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "AWS/SageMaker"
INVOCATIONS = "Invocations"
ERRORS_4XX = "Invocation4XXErrors"
ERRORS_5XX = "Invocation5XXErrors"
MODEL_LATENCY = "ModelLatency"
METRICS = (INVOCATIONS, ERRORS_4XX, ERRORS_5XX, MODEL_LATENCY)
# In the stack's folder: every invocation of a local endpoint (the smoke test's too), for a person and the demo.
INVOCATIONS_LOG = "invocations.jsonl"
# Enough for an hour of a busy laptop endpoint; older records only matter to alarms with long periods.
KEPT_PER_ENDPOINT = 200_000


@dataclass(frozen=True)
class Invocation:
    """One request to an endpoint: when (epoch seconds), the class of the container's answer
    ("2XX", "4XX", "5XX"; "5XX" when it did not answer at all) and its latency (None: no answer)."""

    at: float
    status_class: str
    model_latency_us: int | None

    @staticmethod
    def class_of(status: int | None) -> str:
        if status is None or status >= 500:
            return "5XX"
        return "4XX" if status >= 400 else "2XX"

    def sample(self, metric: str) -> float | None:
        """This invocation's sample of `metric`, or None when it adds none (ModelLatency of no answer)."""
        if metric == INVOCATIONS:
            return 1.0
        if metric == ERRORS_4XX:
            return 1.0 if self.status_class == "4XX" else 0.0
        if metric == ERRORS_5XX:
            return 1.0 if self.status_class == "5XX" else 0.0
        if metric == MODEL_LATENCY:
            return None if self.model_latency_us is None else float(self.model_latency_us)
        raise ValueError(f"{metric} is not one of {', '.join(METRICS)}")


class InvocationRecords:
    """Thread-safe records per endpoint name; an endpoint is known from its creation on."""

    def __init__(self, clock: Callable[[], float] = time.time, log: Path | None = None) -> None:
        self._clock = clock
        self._log = log  # one JSON line per invocation, for a person and the demo's report
        self._lock = threading.Lock()
        self._records: dict[str, deque[Invocation]] = {}

    def register(self, endpoint: str) -> None:
        with self._lock:
            self._records.setdefault(endpoint, deque(maxlen=KEPT_PER_ENDPOINT))

    def knows(self, endpoint: str) -> bool:
        with self._lock:
            return endpoint in self._records

    def record(self, endpoint: str, status: int | None, model_latency_us: int | None) -> Invocation:
        invocation = Invocation(self._clock(), Invocation.class_of(status), model_latency_us)
        with self._lock:
            self._records.setdefault(endpoint, deque(maxlen=KEPT_PER_ENDPOINT)).append(invocation)
            if self._log is not None:
                with self._log.open("a") as log:
                    log.write(json.dumps({"at": invocation.at, "endpoint": endpoint, "status": invocation.status_class,
                                          "model_latency_us": model_latency_us}) + "\n")
        return invocation

    def since(self, endpoint: str, start: float) -> list[Invocation]:
        """The endpoint's invocations at `start` or later, oldest first."""
        with self._lock:
            records = list(self._records.get(endpoint, ()))
        return [r for r in records if r.at >= start]
