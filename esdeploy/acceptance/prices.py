"""Operator tool layer: published on-demand prices of SageMaker real-time inference instances, for the plan's estimate.

Source: AWS's price list for SageMaker, US East (N. Virginia), on-demand real-time inference
("Hosting") usage, https://aws.amazon.com/sagemaker-ai/pricing/ (machine-readable:
https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/us-east-1/index.json).
Read on 2026-12-07 through published copies of that price list, not fetched from AWS by this
tool: an estimate, never a bill. Other regions cost more or less (typically within a third);
the plan says which region the prices are for. Memory: the instance type's published size.
"""
from __future__ import annotations

from dataclasses import dataclass

PRICES_REGION = "us-east-1"
PRICES_AS_OF = "2026-12-07"
PRICES_SOURCE = "https://aws.amazon.com/sagemaker-ai/pricing/ (real-time inference, on-demand, US East (N. Virginia))"
# The CPU serving image runs the model server with one torch worker per vCPU: below 8 GiB the
# HF PyTorch image and MiniLM fit, but with little room. The default takes 8 GiB or more.
MIN_DEFAULT_MEMORY_GIB = 8


@dataclass(frozen=True)
class InstancePrice:
    instance_type: str
    usd_per_hour: float
    memory_gib: int
    gpu: bool


PRICES: tuple[InstancePrice, ...] = (
    InstancePrice("ml.t2.medium", 0.056, 4, gpu=False),
    InstancePrice("ml.c5.large", 0.102, 4, gpu=False),
    InstancePrice("ml.m5.large", 0.115, 8, gpu=False),
    InstancePrice("ml.c5.xlarge", 0.204, 8, gpu=False),
    InstancePrice("ml.m5.xlarge", 0.23, 16, gpu=False),
    InstancePrice("ml.g4dn.xlarge", 0.736, 16, gpu=True),
    InstancePrice("ml.g6.xlarge", 1.127, 16, gpu=True),
    InstancePrice("ml.g5.xlarge", 1.408, 16, gpu=True),
    InstancePrice("ml.g5.2xlarge", 1.515, 32, gpu=True),
)


class UnknownInstanceTypeError(ValueError):
    """No published price is known here for the instance type, so no estimate can be printed."""


def price_of(instance_type: str) -> InstancePrice:
    for price in PRICES:
        if price.instance_type == instance_type:
            return price
    known = ", ".join(p.instance_type for p in PRICES)
    raise UnknownInstanceTypeError(
        f"no published price is known for {instance_type!r}, so the run cannot say what it costs: choose one of "
        f"{known} (esdeploy/acceptance/prices.py)"
    )


def cheapest_cpu_type(min_memory_gib: int = MIN_DEFAULT_MEMORY_GIB) -> InstancePrice:
    """The default: the cheapest CPU type (the serving image's CPU flavour) with at least `min_memory_gib`."""
    return min((p for p in PRICES if not p.gpu and p.memory_gib >= min_memory_gib), key=lambda p: p.usd_per_hour)
