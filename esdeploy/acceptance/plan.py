"""Operator tool layer: what an acceptance run will create, on which instance type, and what it should cost.

The estimate follows the run's own timeline (acceptance/lifecycle.py): how long each endpoint it
makes is up, at the published price of its instance type (acceptance/prices.py), with every
endpoint taking `creation_minutes` to come into service (a CPU endpoint usually takes 5-10).
"""
from __future__ import annotations

from dataclasses import dataclass

from esdeploy.acceptance.prices import PRICES_AS_OF, PRICES_REGION, PRICES_SOURCE, InstancePrice

# After the forced alarm: the rollback, and green's teardown (minutes).
ROLLBACK_MINUTES = 5
# A swap, a teardown after a bake, a delete (minutes).
SETTLE_MINUTES = 2
DEFAULT_CREATION_MINUTES = 10


@dataclass(frozen=True)
class PlannedEndpoint:
    what: str
    minutes: float


@dataclass(frozen=True)
class Plan:
    where: str
    region: str
    api: str
    model_id: str
    artifact: str
    upload_url: str
    price: InstancePrice
    bake_seconds: int
    rollback_window_seconds: int
    observer_name: str
    probe: bool
    emf_wait_seconds: int
    creation_minutes: float = DEFAULT_CREATION_MINUTES
    local: bool = False

    def endpoints(self) -> list[PlannedEndpoint]:
        """Each endpoint the run makes and how long it is up (its creation included)."""
        c, bake = self.creation_minutes, self.bake_seconds / 60
        v2 = c + ROLLBACK_MINUTES
        v3 = c + bake + SETTLE_MINUTES
        v4 = c + SETTLE_MINUTES  # cancelled while Creating: torn down once it has settled
        planned = [
            PlannedEndpoint("v1 (blue): up until v3's bake is over", c + v2 + v3),
            PlannedEndpoint("v2 (green, rolled back by its forced alarm)", v2),
            PlannedEndpoint("v3 (manual promotion, autoscaling 1-1): up until the delete", v3 + v4 + SETTLE_MINUTES),
            PlannedEndpoint("v4 (cancelled while Creating)", v4),
        ]
        if self.probe:
            planned.append(
                PlannedEndpoint("the probe's endpoint for inference components (two components on it)", 2 * c + 5)
            )
        return planned

    @property
    def instance_hours(self) -> float:
        return sum(e.minutes for e in self.endpoints()) / 60

    @property
    def estimated_usd(self) -> float:
        return self.instance_hours * self.price.usd_per_hour

    @property
    def estimated_minutes(self) -> float:
        """The run's length: the lifecycle one step after another, the EMF wait, the probe."""
        c, bake = self.creation_minutes, self.bake_seconds / 60
        lifecycle = c + (c + ROLLBACK_MINUTES) + (c + bake + SETTLE_MINUTES) + (c + SETTLE_MINUTES) + SETTLE_MINUTES
        emf = 0 if self.local else self.emf_wait_seconds / 60
        return lifecycle + emf + (2 * c + 5 if self.probe else 0)

    def lines(self) -> list[str]:
        """The plan as printed before anything is created."""
        price = self.price
        made = [
            "esdeploy acceptance: the plan (nothing has been created yet)",
            f"  where:    {self.where}, region {self.region}; the esdeploy API at {self.api}",
            f"  model:    {self.model_id}, artifact {self.artifact}",
            f"  instance: {price.instance_type} ({price.memory_gib} GiB, {'GPU' if price.gpu else 'CPU'}), "
            f"1 instance per endpoint",
            "  it creates:",
            f"    - S3: the artifact, its manifest and latest.json under {self.upload_url}/{self.model_id}/",
            f"    - through the esdeploy API, 4 deploys of {self.model_id}: 4 SageMaker endpoints (each with its "
            "model and endpoint config), at most 2 up at a time, 2 CloudWatch alarms per swapped variant, and one "
            "Application Auto Scaling target with its policy (1 to 1 instance: it never adds one)",
            f"    - an EventBridge rule and an SQS queue, both named {self.observer_name}, to read the events AWS "
            "sends",
        ]
        if self.probe:
            made.append(
                f"    - the inference-components probe: one endpoint enabled for inference components on "
                f"{price.instance_type}, a SageMaker model, 2 inference components on it"
            )
        made += [
            "  the steps: deploy v1; deploy v2 with a bake of "
            f"{self.rollback_window_seconds} s, force its 5XX alarm and watch the rollback; a manual-promotion deploy "
            f"(v3, autoscaling, bake {self.bake_seconds} s); deploy v4 and delete its endpoint while it is Creating "
            "(then cancel it); delete the model"
            + ("; the inference-components probe" if self.probe else "")
            + "; tear everything down and check that nothing tagged by the run is left",
        ]
        if self.local:
            made.append("  cost: none (esdeploy local; nothing runs on AWS)")
        else:
            made.append(
                f"  cost: about ${self.estimated_usd:.2f} ({self.instance_hours:.1f} instance-hours at "
                f"${price.usd_per_hour}/h, the published on-demand price in {PRICES_REGION} as of {PRICES_AS_OF}, "
                f"{PRICES_SOURCE}; {self.region} may differ) if each endpoint takes {self.creation_minutes:g} min to "
                f"come up; CloudWatch alarms, S3, SQS and Lambda add cents. It takes about "
                f"{self.estimated_minutes:.0f} min."
            )
            made.append(
                f"  a run stopped by kill -9 or a lost machine leaves its endpoints billing at "
                f"${price.usd_per_hour}/h each: `esdeploy acceptance --tear-down-only --yes` removes them"
            )
        made.append("  everything is torn down on any exit (Ctrl-C included), then checked gone")
        return made
