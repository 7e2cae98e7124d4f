"""Test fake: an in-memory, scriptable Hosting port with call counters and a resource view."""
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

from chalicelib.adapters.sagemaker_shapes import (
    MANAGED_BY,
    TAG_MANAGED_BY,
    TAG_MODEL_ID,
    TAG_TASK_ID,
    platform_status,
    variant_tags,
)
from chalicelib.domain.errors import EndpointRefusedError, InvocationError, InvocationTimeoutError, RetryableError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantInfo, VariantSpec, VariantStatus

MODEL = "model"
ENDPOINT_CONFIG = "endpoint_config"
ENDPOINT = "endpoint"
ALL_PARTS: tuple[str, ...] = (MODEL, ENDPOINT_CONFIG, ENDPOINT)
METHODS: tuple[str, ...] = ("create_variant", "describe", "invoke", "delete_variant", "list_variants")
DEFAULT_DIMENSION = 384
DEFAULT_FAILURE_REASON = "fake: the endpoint failed to start"


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
    WRONG_MODEL = "wrong_model"  # good vectors, but "model" names another model
    WRONG_COUNT = "wrong_count"  # one embedding fewer than there were inputs
    INVOCATION_ERROR = "invocation_error"  # raises InvocationError (the container said 4xx/5xx)
    NO_ANSWER = "no_answer"  # hangs: InvocationTimeoutError when the caller set a timeout
    RETRYABLE_ERROR = "retryable_error"  # raises RetryableError (throttled, timed out)


# A custom answer: called with (variant name, payload); returns the answer or raises.
AnswerFunction = Callable[[str, dict[str, Any]], dict[str, Any]]
AnswerStep = Answer | AnswerFunction


@dataclass(frozen=True)
class FakeResource:
    """One platform resource, as a leak check sees it."""

    kind: str  # "model" | "endpoint_config" | "endpoint"
    name: str
    tags: dict[str, str]


@dataclass
class _Variant:
    spec: VariantSpec
    parts: set[str]
    tags: dict[str, str]
    last_state: EndpointState | None = None
    deleting_left: int = 0
    # Instances serving now: the spec's count until `scale` (autoscaling, by hand) says otherwise.
    instances: int | None = None


@dataclass
class _Fault:
    method: str
    error: BaseException
    remaining: int | None  # None: every call
    name: str | None
    after: str | None


@dataclass
class _Scripts:
    """Named scripts win; variants without one each consume their own copy of the default."""

    default: list[Any]
    named: dict[str, list[Any]] = field(default_factory=dict)
    copies: dict[str, list[Any]] = field(default_factory=dict)

    def set(self, name: str | None, steps: Sequence[Any]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        if name is None:
            self.default = list(steps)
            self.copies.clear()
        else:
            self.named[name] = list(steps)

    def _queue(self, name: str) -> list[Any]:
        if name in self.named:
            return self.named[name]
        return self.copies.setdefault(name, list(self.default))

    def peek(self, name: str) -> Any:
        return self._queue(name)[0]

    def next(self, name: str) -> Any:
        queue = self._queue(name)
        # The last step sticks, so [CREATING, IN_SERVICE] stays in service once it got there.
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def forget_copy(self, name: str) -> None:
        self.copies.pop(name, None)


class FakeHosting:
    """The Hosting port in memory. Script it, inject faults, then assert on calls and resources.

    Defaults: an endpoint is IN_SERVICE at its first describe and answers GOOD with
    `dimension` elements; delete removes everything at once.
    """

    def __init__(
        self,
        *,
        dimension: int = DEFAULT_DIMENSION,
        states: Sequence[EndpointState] = (EndpointState.IN_SERVICE,),
        deleting_describes: int = 0,
        managed_by: str = MANAGED_BY,
    ) -> None:
        self.dimension = dimension
        self.deleting_describes = deleting_describes
        self.managed_by = managed_by
        self.calls: Counter[str] = Counter()
        self.call_log: list[tuple[str, str | None]] = []
        self.part_creations: Counter[str] = Counter()
        self.part_deletions: Counter[str] = Counter()
        self.invoke_timeouts: list[float | None] = []
        self._variants: dict[str, _Variant] = {}
        self._states = _Scripts(default=list(states))
        self._answers = _Scripts(default=[Answer.GOOD])
        self._reasons: dict[str | None, str] = {}
        self._dimensions: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # -- scripting --------------------------------------------------------------------------

    def script(
        self,
        name: str | None,
        *,
        states: Sequence[EndpointState] | None = None,
        reason: str | None = None,
        answers: Sequence[AnswerStep] | None = None,
        dimension: int | None = None,
    ) -> None:
        """Script one variant (`name`) or every variant without its own script (None).

        `states`: what successive describes report, one step each; the last one sticks.
        `reason`: the failure reason reported with FAILED. `answers`: how successive invokes
        answer, same rule. `dimension`: the size of this variant's GOOD vectors (a name only).
        A variant may be scripted before it exists. Setting a default restarts every
        unscripted variant on the new default.
        """
        with self._lock:
            if states is not None:
                self._states.set(name, states)
            if reason is not None:
                self._reasons[name] = reason
            if answers is not None:
                self._answers.set(name, answers)
            if dimension is not None:
                if name is None:
                    self.dimension = dimension
                else:
                    self._dimensions[name] = dimension

    def set_state(self, name: str, state: EndpointState, reason: str | None = None) -> None:
        """From now on `name` reports `state`. MISSING removes its endpoint (the rest stays),
        as when someone deletes it by hand."""
        with self._lock:
            variant = self._variants.get(name)
            if state is EndpointState.MISSING:
                if variant is not None:
                    variant.parts.discard(ENDPOINT)
                    variant.last_state = None
                    self._drop_if_empty(name)
                return
            self.script(name, states=[state], reason=reason)
            if variant is not None:
                variant.last_state = state

    def fail(
        self,
        method: str,
        error: BaseException,
        *,
        times: int | None = 1,
        name: str | None = None,
        after: str | None = None,
    ) -> None:
        """Make the next `times` calls of `method` (on `name`, or on any) raise `error`.

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

    def seed(
        self,
        spec: VariantSpec,
        *,
        parts: Iterable[str] = ALL_PARTS,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Plant resources as if made earlier (leftovers, foreign endpoints); not counted."""
        chosen = set(parts)
        if not chosen <= set(ALL_PARTS):
            raise ValueError(f"parts must be among {ALL_PARTS}")
        with self._lock:
            variant = self._variants.get(spec.name)
            if variant is None:
                chosen_tags = self._tags(spec) if tags is None else dict(tags)
                variant = _Variant(spec=spec, parts=set(), tags=chosen_tags)
                self._variants[spec.name] = variant
            variant.parts |= chosen

    def reset_counters(self) -> None:
        with self._lock:
            self.calls.clear()
            self.call_log.clear()
            self.part_creations.clear()
            self.part_deletions.clear()

    # -- inspection -------------------------------------------------------------------------

    def resources(self) -> list[FakeResource]:
        """Every model, endpoint config and endpoint that exists now (Deleting ones included)."""
        with self._lock:
            return [
                FakeResource(kind=kind, name=name, tags=dict(variant.tags))
                for name, variant in sorted(self._variants.items())
                for kind in ALL_PARTS
                if kind in variant.parts
            ]

    def owned_resources(self) -> list[FakeResource]:
        """The resources tagged as ours: what must be empty when no model is deployed."""
        return [r for r in self.resources() if r.tags.get(TAG_MANAGED_BY) == self.managed_by]

    def endpoint_names(self) -> list[str]:
        return [r.name for r in self.resources() if r.kind == ENDPOINT]

    def scale(self, name: str, instances: int) -> None:
        """The variant now runs `instances` instances (as autoscaling would make it)."""
        with self._lock:
            self._variants[name].instances = instances

    def spec(self, name: str) -> VariantSpec | None:
        """The spec a variant was created (or seeded) with."""
        with self._lock:
            variant = self._variants.get(name)
            return variant.spec if variant else None

    def count(self, method: str, name: str | None = None) -> int:
        """Calls of `method`, optionally only those about `name` (list_variants: the prefix)."""
        with self._lock:
            return sum(1 for m, n in self.call_log if m == method and (name is None or n == name))

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
            variant = self._variants.get(spec.name)
            if variant is None:
                variant = _Variant(spec=spec, parts=set(), tags=self._tags(spec))
                self._variants[spec.name] = variant
            for part in parts:
                if part not in variant.parts:
                    variant.parts.add(part)
                    self.part_creations[part] += 1
            if fault is not None:
                raise fault.error

    def describe(self, name: str) -> VariantStatus:
        with self._lock:
            self._record("describe", name)
            self._raise_fault("describe", name)
            variant = self._variants.get(name)
            if variant is None or ENDPOINT not in variant.parts:
                return VariantStatus(name=name, state=EndpointState.MISSING)
            if variant.deleting_left > 0:
                variant.deleting_left -= 1
                if variant.deleting_left == 0:
                    variant.parts.discard(ENDPOINT)
                    self._drop_if_empty(name)
                return VariantStatus(
                    name=name, state=EndpointState.DELETING, platform_status=platform_status(EndpointState.DELETING)
                )
            state: EndpointState = self._states.next(name)
            variant.last_state = state
            if state is EndpointState.MISSING:
                return VariantStatus(name=name, state=state)
            reason = None
            if state is EndpointState.FAILED:
                reason = self._reasons.get(name) or self._reasons.get(None) or DEFAULT_FAILURE_REASON
            return VariantStatus(
                name=name,
                state=state,
                failure_reason=reason,
                platform_status=platform_status(state),
                instance_count=variant.instances or variant.spec.initial_instance_count,
            )

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with self._lock:
            self._record("invoke", name)
            self.invoke_timeouts.append(timeout_seconds)
            self._raise_fault("invoke", name)
            variant = self._variants.get(name)
            if variant is None or ENDPOINT not in variant.parts or variant.deleting_left > 0:
                raise InvocationError(f"endpoint `{name}` refused the request: it does not exist")
            state = variant.last_state or self._states.peek(name)
            if state is not EndpointState.IN_SERVICE:
                raise InvocationError(
                    f"endpoint `{name}` refused the request: it is {state.value}, not in service"
                )
            step: AnswerStep = self._answers.next(name)
            dimension = self._dimensions.get(name, self.dimension)
            model_id = variant.spec.embedding_model_id
        if not isinstance(step, Answer):
            return step(name, payload)
        if step is Answer.NO_ANSWER:
            if timeout_seconds is None:
                raise AssertionError(f"invoke of `{name}` without a timeout would hang on this endpoint")
            raise InvocationTimeoutError(name, timeout_seconds)
        texts = _texts(name, payload)
        return _answer(step, name, texts, model_id, dimension)

    def delete_variant(self, name: str) -> None:
        with self._lock:
            self._record("delete_variant", name)
            self._raise_fault("delete_variant", name)
            variant = self._variants.get(name)
            if variant is None:
                return
            for part in (ENDPOINT_CONFIG, MODEL):
                if part in variant.parts:
                    variant.parts.discard(part)
                    self.part_deletions[part] += 1
            if ENDPOINT in variant.parts and variant.deleting_left == 0:
                self.part_deletions[ENDPOINT] += 1
                if self.deleting_describes > 0:
                    variant.deleting_left = self.deleting_describes
                else:
                    variant.parts.discard(ENDPOINT)
            self._states.forget_copy(name)
            self._answers.forget_copy(name)
            self._drop_if_empty(name)

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        with self._lock:
            self._record("list_variants", name_prefix)
            self._raise_fault("list_variants", name_prefix)
            return [
                VariantInfo(
                    name=name,
                    embedding_model_id=variant.tags.get(TAG_MODEL_ID),
                    task_id=variant.tags.get(TAG_TASK_ID),
                    has_endpoint=ENDPOINT in variant.parts,
                    has_endpoint_config=ENDPOINT_CONFIG in variant.parts,
                    has_model=MODEL in variant.parts,
                )
                for name, variant in sorted(self._variants.items())
                if name.startswith(name_prefix) and variant.parts
            ]

    # -- internals --------------------------------------------------------------------------

    def _tags(self, spec: VariantSpec) -> dict[str, str]:
        return variant_tags(spec, self.managed_by)

    def _record(self, method: str, name: str | None) -> None:
        self.calls[method] += 1
        self.call_log.append((method, name))

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

    def _drop_if_empty(self, name: str) -> None:
        variant = self._variants.get(name)
        if variant is not None and not variant.parts:
            del self._variants[name]


def _texts(name: str, payload: dict[str, Any]) -> list[str]:
    """The serving handler's request rules, answered as it would (a 400 inside a ModelError)."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise EndpointRefusedError(name, 400, 'missing "inputs"')
    inputs = payload["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts:
        raise EndpointRefusedError(name, 400, '"inputs" must be a non-empty list')
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EndpointRefusedError(name, 400, f"inputs[{index}] is not a string")
    return texts


def _answer(step: Answer, name: str, texts: list[str], model_id: str, dimension: int) -> dict[str, Any]:
    if step is Answer.INVOCATION_ERROR:
        raise InvocationError(f"the model in endpoint `{name}` failed the request (fake ModelError)")
    if step is Answer.RETRYABLE_ERROR:
        raise RetryableError(f"endpoint `{name}` is busy (fake ThrottlingException)")
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
    model = f"{model_id}-other" if step is Answer.WRONG_MODEL else model_id
    return {"embeddings": vectors, "model": model, "dimension": size}
