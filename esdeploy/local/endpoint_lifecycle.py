"""Local stack: an endpoint's life as SageMaker reports it, the one set of rules the local hosting and the test fake
(tests/fakes/fake_hosting.py) keep their variants by.

A variant is three parts (model, endpoint config, endpoint), all of one name; creating it makes what is missing and
finds the rest (a redelivered or crashed create). Its endpoint is Creating until its creation time is up and its
outcome is known (the fake scripts the outcome, the local hosting learns it from the serving process), then
InService or Failed, and a failure is final; an update in progress (Updating) reads as Creating. DeleteEndpoint is
refused while the endpoint is Creating or Updating, with SageMaker's own "Cannot update in-progress endpoint", and
nothing of the variant goes. DescribeEndpoint says how many instances serve: the spec's count until autoscaling says
otherwise. SageMakerHosting reads all of this from SageMaker; tests/contract/test_hosting_contract.py runs the same
cases on the three.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib.adapters.aws_errors import in_progress_error, sagemaker_refusal
from chalicelib.adapters.sagemaker_shapes import endpoint_arn, platform_status
from chalicelib.domain.errors import InvocationError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import Clock, VariantInfo, VariantSpec, VariantStatus

MODEL = "model"
ENDPOINT_CONFIG = "endpoint_config"
ENDPOINT = "endpoint"
ALL_PARTS: tuple[str, ...] = (MODEL, ENDPOINT_CONFIG, ENDPOINT)
UPDATING = "Updating"  # SageMaker's status of an endpoint being updated: Creating, as far as a deploy is concerned


@dataclass
class Lifecycle:
    """One variant: which parts exist, and what its endpoint is at any moment."""

    spec: VariantSpec
    parts: set[str] = field(default_factory=set)
    ready_at: datetime | None = None  # the endpoint is Creating at least until then
    outcome: EndpointState | None = None  # how its creation ended (None: not known yet)
    reason: str | None = None  # why it failed
    forced: EndpointState | None = None  # what it is now, whatever its creation said (Updating, broken later)
    forced_reason: str | None = None
    instances: int | None = None  # instances serving now, when autoscaling changed the spec's count

    def state(self, now: datetime) -> tuple[EndpointState, str | None]:
        """What the endpoint is at `now`, and why when it failed."""
        if ENDPOINT not in self.parts:
            return EndpointState.MISSING, None
        if self.forced is not None:
            return self.forced, self.forced_reason if self.forced is EndpointState.FAILED else None
        if self.outcome is None or (self.ready_at is not None and now < self.ready_at):
            return EndpointState.CREATING, None
        return self.outcome, self.reason

    def status(self, now: datetime) -> VariantStatus:
        """DescribeEndpoint, in the port's words."""
        name = self.spec.name
        if ENDPOINT not in self.parts:
            return VariantStatus(name=name, state=EndpointState.MISSING)
        state, reason = self.state(now)
        return VariantStatus(
            name=name,
            state=state,
            failure_reason=reason,
            platform_status=UPDATING if self.forced is EndpointState.CREATING else platform_status(state),
            instance_count=self.instances or self.spec.initial_instance_count,
        )

    def info(self) -> VariantInfo:
        return VariantInfo(
            name=self.spec.name,
            embedding_model_id=self.spec.embedding_model_id,
            task_id=self.spec.task_id,
            has_endpoint=ENDPOINT in self.parts,
            has_endpoint_config=ENDPOINT_CONFIG in self.parts,
            has_model=MODEL in self.parts,
        )


class Endpoints:
    """Every variant of one hosting, by name, on one clock: the bookkeeping half of the Hosting port."""

    def __init__(self, clock: Clock, *, region: str, account: str) -> None:
        self.clock = clock
        self._region = region
        self._account = account
        self._variants: dict[str, Lifecycle] = {}
        self._lock = threading.RLock()
        # Create requests per part, as the platform would count them (a planted part is not counted).
        self.part_creations: Counter[str] = Counter()

    def create(
        self,
        spec: VariantSpec,
        creation_seconds: float,
        outcome: tuple[EndpointState, str | None] | None = None,
        parts: Iterable[str] = ALL_PARTS,
    ) -> tuple[Lifecycle, list[str]]:
        """Make the `parts` of `spec` that are missing, in order; returns the variant and the parts made now. A new
        endpoint is Creating for `creation_seconds`, then `outcome` (None: told later, by `settle`)."""
        with self._lock:
            lifecycle = self._variants.setdefault(spec.name, Lifecycle(spec))
            made = [part for part in parts if part not in lifecycle.parts]
            for part in made:
                lifecycle.parts.add(part)
                self.part_creations[part] += 1
            if ENDPOINT in made:
                self._start(lifecycle, creation_seconds, outcome)
            return lifecycle, made

    def plant(
        self,
        spec: VariantSpec,
        parts: Iterable[str] = ALL_PARTS,
        creating_for: float = 0,
        outcome: tuple[EndpointState, str | None] | None = (EndpointState.IN_SERVICE, None),
    ) -> Lifecycle:
        """Parts made earlier, bypassing the port (a crashed task's leftovers); not counted as creations."""
        chosen = set(parts)
        if not chosen <= set(ALL_PARTS):
            raise ValueError(f"parts must be among {ALL_PARTS}")
        with self._lock:
            lifecycle = self._variants.setdefault(spec.name, Lifecycle(spec))
            new_endpoint = ENDPOINT in chosen - lifecycle.parts
            lifecycle.parts |= chosen
            if new_endpoint:
                self._start(lifecycle, creating_for, outcome)
            return lifecycle

    def get(self, name: str) -> Lifecycle | None:
        with self._lock:
            return self._variants.get(name)

    def all(self) -> list[Lifecycle]:
        with self._lock:
            return [self._variants[name] for name in sorted(self._variants)]

    def settle(self, lifecycle: Lifecycle, state: EndpointState, reason: str | None) -> bool:
        """The endpoint's creation ended (it loaded, it could not, its process ended); a failure is final. False
        when nothing changed: the variant was deleted meanwhile, or had failed already."""
        with self._lock:
            if self._variants.get(lifecycle.spec.name) is not lifecycle or lifecycle.outcome is EndpointState.FAILED:
                return False
            lifecycle.outcome = state
            lifecycle.reason = reason if state is EndpointState.FAILED else None
            return True

    def force(self, name: str, state: EndpointState, reason: str | None = None) -> None:
        """From now on `name` is `state`, whatever its creation said: IN_SERVICE, CREATING (an update in progress:
        Updating, deletes refused) or FAILED with `reason` (an endpoint that broke after it came up)."""
        if state not in (EndpointState.IN_SERVICE, EndpointState.CREATING, EndpointState.FAILED):
            raise ValueError("an endpoint can be made IN_SERVICE, CREATING (Updating) or FAILED")
        with self._lock:
            lifecycle = self._variants.get(name)
            if lifecycle is None:
                raise ValueError(f"no variant {name}")
            lifecycle.forced, lifecycle.forced_reason = state, reason

    def scale(self, name: str, instances: int) -> None:
        """The variant now runs `instances` instances (as autoscaling would make it)."""
        with self._lock:
            self._variants[name].instances = instances

    def state(self, name: str) -> tuple[EndpointState, str | None]:
        with self._lock:
            lifecycle = self._variants.get(name)
            return lifecycle.state(self.clock.now()) if lifecycle else (EndpointState.MISSING, None)

    def describe(self, name: str) -> VariantStatus:
        with self._lock:
            lifecycle = self._variants.get(name)
            if lifecycle is None:
                return VariantStatus(name=name, state=EndpointState.MISSING)
            return lifecycle.status(self.clock.now())

    def serving(self, name: str) -> Lifecycle:
        """The variant whose endpoint is in service now, or InvocationError (InvokeEndpoint's refusal)."""
        with self._lock:
            lifecycle = self._variants.get(name)
            if lifecycle is None or ENDPOINT not in lifecycle.parts:
                raise InvocationError(f"endpoint `{name}` refused the request: it does not exist")
            state, _ = lifecycle.state(self.clock.now())
            if state is not EndpointState.IN_SERVICE:
                raise InvocationError(f"endpoint `{name}` refused the request: it is {state.value}, not in service")
            return lifecycle

    def delete(self, name: str) -> Lifecycle | None:
        """Remove every part of `name` (None: there was nothing); refused while its endpoint is Creating or
        Updating: DeleteEndpoint is refused first, so nothing of the variant goes (as in SageMakerHosting)."""
        with self._lock:
            lifecycle = self._variants.get(name)
            if lifecycle is None:
                return None
            if lifecycle.state(self.clock.now())[0] is EndpointState.CREATING:
                arn = endpoint_arn(name, region=self._region, account=self._account)
                raise sagemaker_refusal(in_progress_error("DeleteEndpoint", arn), f"delete endpoint `{name}`")
            return self._variants.pop(name)

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        with self._lock:
            return [v.info() for v in self.all() if v.spec.name.startswith(name_prefix) and v.parts]

    def clear(self) -> list[Lifecycle]:
        """Forget every variant (the local stack's Ctrl-C); returns them."""
        with self._lock:
            gone = self.all()
            self._variants.clear()
            return gone

    def _start(
        self, lifecycle: Lifecycle, creation_seconds: float, outcome: tuple[EndpointState, str | None] | None
    ) -> None:
        lifecycle.ready_at = self.clock.now() + timedelta(seconds=creation_seconds)
        lifecycle.outcome, lifecycle.reason = outcome if outcome is not None else (None, None)
