"""Test fakes: in-memory implementations of the ports, run by the same contract suites as the AWS adapters."""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.errors import (
    AliasConflictError,
    ArtifactRefusedError,
    ConcurrentUpdateError,
    DispatchError,
    TaskAlreadyExistsError,
)
from chalicelib.domain.messages import WorkMessage
from chalicelib.domain.models import AlarmReading, AlarmState, Alias, ModelLock, ScalingPolicy, Task, TaskKind, utc_now
from chalicelib.domain.names import variant_alarm_names
from chalicelib.ports import VariantAlarms


class InMemoryTaskStore:
    """Tasks in a dict, with the DynamoDB store's shape of "newest by model": an index that may lag
    behind the writes (`index_lag=True` holds it back until `catch_up_index()`, as a GSI does) and
    a pointer to the newest task that never lags."""

    def __init__(self, retention: timedelta | None = None, index_lag: bool = False) -> None:
        self._tasks: dict[str, Task] = {}
        self._indexed: dict[str, Task] = {}
        self._newest: dict[tuple[TaskKind, str], Task] = {}
        self._index_lag = index_lag
        self._lock = threading.Lock()
        self._retention = retention  # sets `expires_at` as DynamoTaskStore does; nothing expires here

    def create(self, task: Task) -> Task:
        with self._lock:
            if task.task_id in self._tasks:
                raise TaskAlreadyExistsError(task.task_id)
            stored = task.copy()
            stored.version = 1
            stored.expires_at = stored.expiry(self._retention)
            self._write(stored)
            pointer = self._newest.get((task.kind, task.embedding_model_id))
            if pointer is None or pointer.created_at <= stored.created_at:
                self._newest[(task.kind, task.embedding_model_id)] = stored
            return stored.copy()

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.copy() if task else None

    def newest_for_model(self, embedding_model_id: str, kind: TaskKind) -> Task | None:
        with self._lock:
            candidates = [
                t for t in self._indexed.values()
                if t.embedding_model_id == embedding_model_id and t.kind == kind
            ]
            pointer = self._newest.get((kind, embedding_model_id))
            if pointer is not None:
                candidates.append(pointer)
            if not candidates:
                return None
            newest = max(candidates, key=lambda t: (t.created_at, t.task_id))
            return self._tasks[newest.task_id].copy()  # the current version, not the indexed one

    def indexed_newest(self, embedding_model_id: str, kind: TaskKind) -> Task | None:
        """What the index alone answers (tests show the lag with it)."""
        with self._lock:
            candidates = [
                t for t in self._indexed.values() if t.embedding_model_id == embedding_model_id and t.kind == kind
            ]
            return max(candidates, key=lambda t: (t.created_at, t.task_id)).copy() if candidates else None

    def catch_up_index(self) -> None:
        with self._lock:
            self._indexed = {task_id: task.copy() for task_id, task in self._tasks.items()}

    def update(self, task: Task) -> Task:
        with self._lock:
            current = self._tasks.get(task.task_id)
            if current is None or current.version != task.version:
                raise ConcurrentUpdateError(
                    f"task {task.task_id} changed since version {task.version} was read"
                )
            stored = task.copy()
            stored.version = task.version + 1
            stored.expires_at = stored.expiry(self._retention)
            self._write(stored)
            return stored.copy()

    def request_cancel(self, task_id: str, at: datetime, detail: str) -> Task | None:
        with self._lock:
            current = self._tasks.get(task_id)
            if current is None:
                return None
            if current.status.is_terminal or current.cancel_requested:
                return current.copy()
            canceled = current.copy()
            canceled.cancel_requested = True
            canceled.record(at=at, detail=detail)
            canceled.version = current.version + 1
            canceled.step_token = None
            self._write(canceled)
            return canceled.copy()

    def note_rekick(self, task: Task, at: datetime) -> bool:
        with self._lock:
            current = self._tasks.get(task.task_id)
            if current is None or current.version != task.version:
                return False
            noted = current.copy()
            noted.rekicked_at = at
            self._write(noted)
            return True

    def _write(self, task: Task) -> None:
        self._tasks[task.task_id] = task
        if not self._index_lag:
            self._indexed[task.task_id] = task

    def all(self) -> list[Task]:
        with self._lock:
            return [t.copy() for t in self._tasks.values()]


class InMemoryModels:
    """The models table in memory: per model its lease and its alias, side by side as DynamoDB
    keeps them, so that releasing the lease of a model with nothing aliased forgets the model."""

    def __init__(self) -> None:
        self.locks: dict[str, ModelLock] = {}
        self.aliases: dict[str, Alias] = {}
        self.guard = threading.RLock()


class InMemoryModelLocks:
    def __init__(self, models: InMemoryModels | None = None) -> None:
        self._models = models or InMemoryModels()

    def acquire(self, lock: ModelLock, replace_task_id: str | None = None) -> ModelLock | None:
        with self._models.guard:
            held = self._models.locks.get(lock.embedding_model_id)
            if held is None or held.task_id in (lock.task_id, replace_task_id):
                if held is None or held.task_id != lock.task_id:
                    self._models.locks[lock.embedding_model_id] = lock
                return None
            return held

    def get(self, embedding_model_id: str) -> ModelLock | None:
        with self._models.guard:
            return self._models.locks.get(embedding_model_id)

    def release(self, embedding_model_id: str, task_id: str, forget: bool = False) -> None:
        with self._models.guard:
            held = self._models.locks.get(embedding_model_id)
            if held is None or held.task_id != task_id:
                return
            del self._models.locks[embedding_model_id]
            alias = self._models.aliases.get(embedding_model_id)
            if forget and alias is not None and not alias.live_variant and not alias.previous_variant:
                del self._models.aliases[embedding_model_id]

    def list_held(self) -> list[ModelLock]:
        with self._models.guard:
            return sorted(self._models.locks.values(), key=lambda lock: lock.embedding_model_id)


class InMemoryAliases:
    def __init__(self, models: InMemoryModels | None = None) -> None:
        self._models = models or InMemoryModels()

    def get(self, embedding_model_id: str) -> Alias | None:
        with self._models.guard:
            return self._models.aliases.get(embedding_model_id)

    def swap(self, alias: Alias, expected_version: int) -> Alias:
        with self._models.guard:
            current = self._models.aliases.get(alias.embedding_model_id)
            current_version = current.version if current else 0
            if current_version != expected_version:
                raise AliasConflictError(
                    f"alias of {alias.embedding_model_id} is at version {current_version}, "
                    f"not {expected_version}"
                )
            written = replace(alias, version=expected_version + 1)
            self._models.aliases[alias.embedding_model_id] = written
            return written

    def list_live(self) -> list[Alias]:
        with self._models.guard:
            return sorted(
                (a for a in self._models.aliases.values() if a.live_variant),
                key=lambda a: a.embedding_model_id,
            )


class InMemoryLiveModelSlots:
    def __init__(self) -> None:
        self._slots: dict[str, str] = {}
        self._lock = threading.Lock()

    def reserve(self, embedding_model_id: str, task_id: str, cap: int) -> list[str] | None:
        with self._lock:
            if embedding_model_id not in self._slots and len(self._slots) >= cap:
                return sorted(self._slots)
            self._slots[embedding_model_id] = task_id
            return None

    def release(self, embedding_model_id: str, task_id: str | None = None) -> None:
        with self._lock:
            if embedding_model_id in self._slots and task_id in (None, self._slots[embedding_model_id]):
                del self._slots[embedding_model_id]

    def holders(self) -> dict[str, str]:
        with self._lock:
            return dict(self._slots)


class InMemoryQueue:
    """Collects messages; `fail_next` makes the next sends fail like an SQS outage would."""

    def __init__(self, name: str = "queue") -> None:
        self.name = name
        self.messages: list[tuple[WorkMessage, int]] = []
        self.fail_next = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise DispatchError(f"could not send to {self.name}: simulated outage")
            self.messages.append((message, delay_seconds))
            return f"{self.name}-{next(self._ids)}"

    def drain(self) -> list[tuple[WorkMessage, int]]:
        with self._lock:
            taken, self.messages = self.messages, []
            return taken


class InMemoryArtifacts:
    """`archives`: artifact URL -> the manifest inside it (None: an archive without one);
    `pointers`: pointer URL -> its JSON."""

    def __init__(self) -> None:
        self.archives: dict[str, dict[str, Any] | None] = {}
        self.pointers: dict[str, Any] = {}

    def read_pointer(self, url: str) -> Any | None:
        return self.pointers.get(url)

    def read_manifest(self, model_data_url: str) -> dict[str, Any] | None:
        if model_data_url not in self.archives:
            return None
        manifest = self.archives[model_data_url]
        if manifest is None:
            raise ArtifactRefusedError(f"the artifact {model_data_url} has no manifest.json as its first member")
        return manifest


class InMemoryAliasMirror:
    def __init__(self) -> None:
        self.parameters: dict[str, str] = {}

    def publish(self, alias: Alias) -> None:
        if alias.live_variant:
            self.parameters[alias.embedding_model_id] = alias.live_variant
        else:
            self.parameters.pop(alias.embedding_model_id, None)

    def remove(self, embedding_model_id: str) -> None:
        self.parameters.pop(embedding_model_id, None)

    def published(self, embedding_model_id: str) -> str | None:
        return self.parameters.get(embedding_model_id)


class ManualClock:
    """A clock tests move by hand; each read also ticks a microsecond so times stay ordered."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or utc_now()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self._now += timedelta(microseconds=1)
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


class InMemoryScaling:
    """The Scaling port in memory: which variant has which policy."""

    def __init__(self) -> None:
        self.policies: dict[str, ScalingPolicy] = {}
        self._lock = threading.Lock()

    def policy_of(self, variant: str) -> ScalingPolicy | None:
        with self._lock:
            return self.policies.get(variant)

    def apply(self, variant: str, policy: ScalingPolicy) -> None:
        with self._lock:
            self.policies[variant] = policy

    def remove(self, variant: str) -> None:
        with self._lock:
            self.policies.pop(variant, None)


@dataclass
class MemoryAlarm:
    """One alarm in memory: what it watches (esdeploy's own carry the request), its state and tags."""

    name: str
    state: AlarmState = AlarmState.INSUFFICIENT_DATA
    reason: str = "Unchecked: Initial alarm creation"
    since: datetime | None = None
    request: dict[str, Any] | None = None


class InMemoryAlarms:
    """The Alarms port in memory. A test (or a stand-in) moves an alarm with `set_state`, as
    CloudWatch would from the endpoint's metrics, and adds the caller's own alarms with `define`."""

    def __init__(self, clock: Any = None) -> None:
        self.alarms: dict[str, MemoryAlarm] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def _now(self) -> datetime:
        return self._clock.now() if self._clock is not None else utc_now()

    def put_variant_alarms(self, alarms: VariantAlarms) -> tuple[str, ...]:
        from chalicelib.adapters.cloudwatch_shapes import variant_alarm_requests

        names = []
        with self._lock:
            for request in variant_alarm_requests(alarms):
                name = request["AlarmName"]
                existing = self.alarms.get(name)
                if existing is None:
                    self.alarms[name] = MemoryAlarm(name, since=self._now(), request=request)
                else:
                    existing.request = request  # an update keeps the state, as PutMetricAlarm does
                names.append(name)
        return tuple(names)

    def read(self, names: tuple[str, ...]) -> dict[str, AlarmReading]:
        with self._lock:
            return {
                name: AlarmReading(name, alarm.state, alarm.reason, alarm.since)
                for name in names
                if (alarm := self.alarms.get(name)) is not None
            }

    def delete_variant_alarms(self, variant: str) -> None:
        with self._lock:
            for name in variant_alarm_names(variant):
                self.alarms.pop(name, None)

    def define(self, name: str) -> None:
        """An alarm of the caller's own (not esdeploy's), in state OK."""
        with self._lock:
            self.alarms.setdefault(name, MemoryAlarm(name, AlarmState.OK, "defined by the test", self._now()))

    def set_state(self, name: str, state: AlarmState, reason: str) -> None:
        """What SetAlarmState does; ResourceNotFound (KeyError here) for an alarm that does not exist."""
        with self._lock:
            alarm = self.alarms[name]
            alarm.state, alarm.reason, alarm.since = state, reason, self._now()
