"""Test fake: an in-memory Hosting port, as strict as SageMaker where the scenarios depend on it.

An endpoint lives by the local hosting's rules (esdeploy/local/endpoint_lifecycle.py, one module for both):
Creating for `creation_seconds` on the fake's clock (GPU endpoints take 5-20 minutes), then the outcome scripted
when it was created; while it is Creating (or set to Updating), a delete is refused with SageMaker's own "Cannot
update in-progress endpoint" error. What the fake adds is scripting: scripts and faults for every variant or one by
name, answers, leftovers planted as a crashed task leaves them. Its own checks are in
tests/fakes/test_fake_hosting.py; tests/contract holds what it, LocalHosting and SageMakerHosting must all keep.
"""
from __future__ import annotations

import hashlib
import math
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.adapters.system_clock import SystemClock
from chalicelib.domain.errors import EndpointRefusedError, InvocationError, InvocationTimeoutError
from chalicelib.domain.invoke_rules import InvokeInputError, read_inputs
from chalicelib.domain.models import EndpointState
from chalicelib.domain.serving import Serving
from chalicelib.ports import Clock, VariantInfo, VariantSpec, VariantStatus
from esdeploy.local.endpoint_lifecycle import ALL_PARTS, ENDPOINT, ENDPOINT_CONFIG, MODEL, Endpoints

METHODS: tuple[str, ...] = ("create_variant", "describe", "invoke", "delete_variant", "list_variants")
DEFAULT_DIMENSION = 384
DEFAULT_FAILURE_REASON = "fake: the endpoint failed to start"
# Where the fake's endpoints live, for the ARNs in SageMaker's error texts (moto's defaults).
REGION = "us-east-1"
ACCOUNT = "123456789012"


def fake_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector for `text`: what a good fake endpoint answers for it."""
    if dimension < 1:
        raise ValueError(f"dimension must be at least 1, not {dimension}")
    digest = hashlib.shake_256(text.encode("utf-8")).digest(4 * dimension)
    raw = [value / 2**31 - 1.0 for value in struct.unpack(f"<{dimension}I", digest)]
    norm = math.sqrt(sum(x * x for x in raw))
    if norm == 0.0:  # astronomically unlikely; keep the unit-norm promise anyway
        return [1.0] + [0.0] * (dimension - 1)
    return [x / norm for x in raw]


class Answer(StrEnum):
    """How the fake endpoint answers one invocation."""

    GOOD = "good"  # fake_embedding per input, the variant's model id and dimension
    WRONG_DIMENSION = "wrong_dimension"  # unit vectors one element longer than the dimension
    NOT_UNIT_NORM = "not_unit_norm"  # good vectors times 2
    NAN = "nan"  # good vectors with NaN as their first element
    WRONG_VECTORS = "wrong_vectors"  # unit vectors pointing the opposite way (cosine -1)
    WRONG_COUNT = "wrong_count"  # one embedding fewer than there were inputs
    INVOCATION_ERROR = "invocation_error"  # raises InvocationError (the container said 4xx/5xx)
    NO_ANSWER = "no_answer"  # hangs: InvocationTimeoutError when the caller set a timeout


# A custom answer: called with (variant name, payload); returns the answer or raises.
AnswerFunction = Callable[[str, dict[str, Any]], dict[str, Any]]
AnswerStep = Answer | AnswerFunction


@dataclass(frozen=True)
class FakeResource:
    """One platform resource, as a leak check sees it."""

    kind: str  # "model" | "endpoint_config" | "endpoint"
    name: str


@dataclass
class _Fault:
    method: str
    error: BaseException
    remaining: int | None  # None: every call
    name: str | None  # None: any variant
    after: str | None


@dataclass
class _Answers:
    """Named scripts win; every other variant consumes its own copy of the default, restarted
    when the default changes."""

    steps: list[AnswerStep]
    named: dict[str, list[AnswerStep]] = field(default_factory=dict)
    copies: dict[str, list[AnswerStep]] = field(default_factory=dict)

    def set(self, name: str | None, steps: Sequence[AnswerStep]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        if name is not None:
            self.named[name] = list(steps)
            return
        self.steps = list(steps)
        self.copies.clear()

    def next(self, name: str) -> AnswerStep:
        queue = self.named[name] if name in self.named else self.copies.setdefault(name, list(self.steps))
        # The last step sticks, so [INVOCATION_ERROR, GOOD] stays good once it got there.
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def forget_copy(self, name: str) -> None:
        self.copies.pop(name, None)


class FakeHosting:
    """The Hosting port in memory. Script it, inject faults, then assert on calls and resources.

    Defaults: an endpoint takes `creation_seconds` (0: InService at once) on `clock`, then is
    IN_SERVICE and answers GOOD with `dimension` elements; a delete removes everything at once.
    """

    def __init__(
        self, *, dimension: int = DEFAULT_DIMENSION, clock: Clock | None = None, creation_seconds: float = 0
    ) -> None:
        self.dimension = dimension
        self._endpoints = Endpoints(clock or SystemClock(), region=REGION, account=ACCOUNT)
        self.creation_seconds = creation_seconds
        self._call_log: list[tuple[str, str | None]] = []
        self.invoke_timeouts: list[float | None] = []  # the bound each invocation was given
        # What the next endpoint created (of one name, or of any: None) is scripted to do.
        self._creation: dict[str, float] = {}
        self._outcome: dict[str | None, EndpointState] = {None: EndpointState.IN_SERVICE}
        self._reason: dict[str | None, str] = {None: DEFAULT_FAILURE_REASON}
        self._answers = _Answers(steps=[Answer.GOOD])
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    @property
    def clock(self) -> Clock:
        """The clock endpoints take their creation time on (a world sets its own)."""
        return self._endpoints.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._endpoints.clock = clock

    @property
    def part_creations(self) -> Counter[str]:
        """Create requests per part (planted leftovers not counted)."""
        return self._endpoints.part_creations

    # -- scripting --------------------------------------------------------------------------

    def script(
        self,
        name: str | None = None,
        *,
        creation_seconds: float | None = None,
        outcome: EndpointState | None = None,
        reason: str | None = None,
        answers: Sequence[AnswerStep] | None = None,
    ) -> None:
        """Script the variant `name` (it may not exist yet), or every variant without a script of its own.

        `creation_seconds`: how long an endpoint stays Creating (from its CreateEndpoint).
        `outcome`: what it then settles to, IN_SERVICE (default) or FAILED with `reason`; an
        endpoint keeps what was scripted when it was created (a live blue stays live).
        `answers`: how successive invokes answer (an Answer, or a function of the name and the
        payload); the last one sticks. Endpoints start on new answers at once.
        """
        if outcome not in (None, EndpointState.IN_SERVICE, EndpointState.FAILED):
            raise ValueError("an endpoint settles to IN_SERVICE or FAILED")
        with self._lock:
            if creation_seconds is not None:
                if name is None:
                    self.creation_seconds = creation_seconds
                else:
                    self._creation[name] = creation_seconds
            if outcome is not None:
                self._outcome[name] = outcome
            if reason is not None:
                self._reason[name] = reason
            if answers is not None:
                self._answers.set(name, answers)

    def set_state(self, name: str, state: EndpointState, *, reason: str | None = None) -> None:
        """From now on `name` is `state`, whatever its creation said: IN_SERVICE, CREATING (an
        update in progress: SageMaker's Updating, deletes refused) or FAILED with `reason` (an
        endpoint that broke after it came up)."""
        if state not in (EndpointState.IN_SERVICE, EndpointState.CREATING, EndpointState.FAILED):
            raise ValueError("set_state takes IN_SERVICE, CREATING (Updating) or FAILED")
        with self._lock:
            self._endpoints.force(name, state, reason or DEFAULT_FAILURE_REASON)

    def fail(
        self,
        method: str,
        error: BaseException,
        *,
        times: int | None = 1,
        name: str | None = None,
        after: str | None = None,
    ) -> None:
        """Make the next `times` calls of `method` (on the variant `name`, or on any) raise `error`.

        times=None fails every call until `clear_faults()`. For create_variant,
        `after="model"` or `after="endpoint_config"` creates the parts up to and including
        that one before raising: a half-made variant, as a crashed Lambda leaves it.
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {METHODS}")
        if after is not None and (method != "create_variant" or after not in (MODEL, ENDPOINT_CONFIG)):
            raise ValueError("after= is for create_variant: 'model' or 'endpoint_config'")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._faults.append(_Fault(method, error, times, name, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def seed(self, spec: VariantSpec, *, parts: Iterable[str] = ALL_PARTS, creating_for: float = 0) -> None:
        """Plant our resources as if made earlier (a crashed task's leftovers); not counted.
        `creating_for`: seconds its endpoint is still Creating from now."""
        with self._lock:
            self._endpoints.plant(spec, parts, creating_for, self._scripted_outcome(spec.name))

    # -- inspection -------------------------------------------------------------------------

    def owned_resources(self) -> list[FakeResource]:
        """Every model, endpoint config and endpoint that exists now (all ours: the fake holds no
        one else's): what must be empty when no model is deployed."""
        with self._lock:
            return [
                FakeResource(kind=kind, name=variant.spec.name)
                for variant in self._endpoints.all()
                for kind in ALL_PARTS
                if kind in variant.parts
            ]

    def endpoint_names(self) -> list[str]:
        return [r.name for r in self.owned_resources() if r.kind == ENDPOINT]

    def scale(self, name: str, instances: int) -> None:
        """The variant now runs `instances` instances (as autoscaling would make it)."""
        self._endpoints.scale(name, instances)

    def spec(self, name: str) -> VariantSpec | None:
        """The spec a variant was created (or seeded) with."""
        variant = self._endpoints.get(name)
        return variant.spec if variant else None

    def count(self, method: str, name: str | None = None) -> int:
        """Calls of `method`, optionally only those about `name` (list_variants: the prefix)."""
        with self._lock:
            return sum(1 for m, n in self._call_log if m == method and (name is None or n == name))

    # -- the port ---------------------------------------------------------------------------

    def create_variant(self, spec: VariantSpec) -> None:
        with self._lock:
            self._record("create_variant", spec.name)
            fault = self._take_fault("create_variant", spec.name)
            if fault is not None and fault.after is None:
                raise fault.error
            parts = list(ALL_PARTS)
            if fault is not None:
                parts = parts[: parts.index(fault.after or MODEL) + 1]
            seconds = self._creation.get(spec.name, self.creation_seconds)
            self._endpoints.create(spec, seconds, self._scripted_outcome(spec.name), parts)
            if fault is not None:
                raise fault.error

    def describe(self, name: str) -> VariantStatus:
        with self._lock:
            self._record("describe", name)
            self._raise_fault("describe", name)
            return self._endpoints.describe(name)

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with self._lock:
            self._record("invoke", name)
            self.invoke_timeouts.append(timeout_seconds)
            self._raise_fault("invoke", name)
            variant = self._endpoints.serving(name)
            step = self._answers.next(name)
            dimension = self.dimension
            model_id = variant.spec.embedding_model_id
        if not isinstance(step, Answer):
            # A scripted answer as the real adapters give one: decoded, saying which serving answered.
            return {"serving": variant.spec.serving.value, **step(name, payload)}
        if step is Answer.NO_ANSWER:
            if timeout_seconds is None:
                raise AssertionError(f"invoke of `{name}` without a timeout would hang on this endpoint")
            raise InvocationTimeoutError(name, timeout_seconds)
        answer = _answer(step, name, _texts(name, payload), model_id, dimension)
        if variant.spec.serving is Serving.TEI:
            answer.pop("model")  # TEI's answer names no model
        return {**answer, "serving": variant.spec.serving.value}

    def delete_variant(self, name: str) -> None:
        with self._lock:
            self._record("delete_variant", name)
            self._raise_fault("delete_variant", name)
            if self._endpoints.delete(name) is not None:
                self._answers.forget_copy(name)

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        with self._lock:
            self._record("list_variants", name_prefix)
            self._raise_fault("list_variants", name_prefix)
            return self._endpoints.list_variants(name_prefix)

    # -- internals --------------------------------------------------------------------------

    def _scripted_outcome(self, name: str) -> tuple[EndpointState, str | None]:
        """What an endpoint created now settles to: its own script, else every variant's."""
        outcome = self._outcome.get(name, self._outcome[None])
        failed = outcome is EndpointState.FAILED
        return outcome, self._reason.get(name, self._reason[None]) if failed else None

    def _record(self, method: str, name: str | None) -> None:
        self._call_log.append((method, name))

    def _take_fault(self, method: str, name: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.name in (None, name):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _raise_fault(self, method: str, name: str) -> None:
        fault = self._take_fault(method, name)
        if fault is not None:
            raise fault.error

def _texts(name: str, payload: dict[str, Any]) -> list[str]:
    """The serving handler's request rules (the invoke rules), answered as it would (a 400 inside a ModelError)."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise EndpointRefusedError(name, 400, 'missing "inputs"')
    try:
        return list(read_inputs(payload["inputs"]))
    except InvokeInputError as error:
        raise EndpointRefusedError(name, 400, str(error)) from None


def _answer(step: Answer, name: str, texts: list[str], model_id: str, dimension: int) -> dict[str, Any]:
    if step is Answer.INVOCATION_ERROR:
        raise InvocationError(f"the model in endpoint `{name}` failed the request (fake ModelError)")
    size = dimension + 1 if step is Answer.WRONG_DIMENSION else dimension
    vectors = [fake_embedding(text, size) for text in texts]
    if step is Answer.NOT_UNIT_NORM:
        vectors = [[2.0 * x for x in v] for v in vectors]
    elif step is Answer.NAN:
        vectors = [[math.nan, *v[1:]] for v in vectors]
    elif step is Answer.WRONG_VECTORS:
        vectors = [[-x for x in v] for v in vectors]
    elif step is Answer.WRONG_COUNT:
        vectors = vectors[:-1]
    return {"embeddings": vectors, "model": model_id, "dimension": size}
