"""Local stack: the misbehave switch — make a running local endpoint answer 5XX and/or slowly (local only).

A person, a test or `make demo-rollback` turns it on for an endpoint that already passed its smoke
test, to see the bake's alarms roll a bad version back. It never exists on AWS: the switch is a
route of the embedded AWS server (`POST {AWS_ENDPOINT_URL}/_esdeploy/endpoints/NAME/misbehave`,
body `{"errors": 0.5, "latency_ms": 300}`), which the local hosting passes to the endpoint process.

    python -m esdeploy.local.misbehave ENDPOINT --errors 1.0 --latency-ms 0   # AWS_ENDPOINT_URL from `esdeploy local`
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# The embedded AWS server's route for it, and the endpoint process's own.
ROUTE_PREFIX = "/_esdeploy/endpoints/"
ROUTE_SUFFIX = "/misbehave"
ENDPOINT_ROUTE = "/esdeploy/misbehave"
MAX_LATENCY_MS = 600_000


class MisbehaviourError(ValueError):
    """A misbehave request that cannot be applied as asked; the message says which field and why."""


@dataclass(frozen=True)
class Misbehaviour:
    """`errors`: the fraction of invocations answered 500 (0..1); `latency_ms`: added to every invocation."""

    errors: float = 0.0
    latency_ms: int = 0

    @classmethod
    def parse(cls, body: object) -> Misbehaviour:
        if not isinstance(body, Mapping):
            raise MisbehaviourError('send a JSON object: {"errors": 0..1, "latency_ms": 0..600000}')
        unknown = sorted(set(body) - {"errors", "latency_ms"})
        if unknown:
            raise MisbehaviourError(f"unknown field(s) {', '.join(unknown)}: only errors and latency_ms")
        errors = body.get("errors", 0.0)
        latency = body.get("latency_ms", 0)
        if isinstance(errors, bool) or not isinstance(errors, int | float) or not 0.0 <= errors <= 1.0:
            raise MisbehaviourError(f"errors must be a number from 0 to 1 (the fraction answered 500), not {errors!r}")
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= MAX_LATENCY_MS:
            raise MisbehaviourError(f"latency_ms must be a whole number from 0 to {MAX_LATENCY_MS}, not {latency!r}")
        return cls(float(errors), latency)

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.errors, "latency_ms": self.latency_ms}

    @property
    def active(self) -> bool:
        return self.errors > 0 or self.latency_ms > 0

    def fails_now(self, draw: float | None = None) -> bool:
        """Whether this invocation is answered 500 (`draw` in [0, 1), random unless given)."""
        return (random.random() if draw is None else draw) < self.errors


def route(endpoint_name: str) -> str:
    return f"{ROUTE_PREFIX}{quote(endpoint_name, safe='')}{ROUTE_SUFFIX}"


def set_misbehaviour(aws_endpoint: str, endpoint_name: str, misbehaviour: Misbehaviour, timeout: float = 30) -> Any:
    """Ask the local stack whose embedded AWS is at `aws_endpoint`; its answer, or MisbehaviourError."""
    import requests

    try:
        answer = requests.post(
            aws_endpoint.rstrip("/") + route(endpoint_name), json=misbehaviour.as_dict(), timeout=timeout
        )
    except requests.RequestException as exc:
        raise MisbehaviourError(f"the local stack at {aws_endpoint} did not answer: {exc}") from None
    try:
        body = answer.json()
    except ValueError:
        body = {"detail": answer.text[:300]}
    if answer.status_code != 200:
        raise MisbehaviourError(f"{answer.status_code}: {body.get('detail', body)}")
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m esdeploy.local.misbehave",
        description="Make a running local endpoint of `esdeploy local` answer 500 and/or slowly "
        "(local only: to see the bake's alarms roll a bad version back). --errors 0 --latency-ms 0 heals it.",
    )
    parser.add_argument("endpoint", help="the endpoint (variant) name, e.g. from `esdeploy models`")
    parser.add_argument("--errors", type=float, default=1.0, help="fraction of invocations answered 500 (default 1.0)")
    parser.add_argument("--latency-ms", type=int, default=0, help="milliseconds added to every invocation")
    parser.add_argument(
        "--aws-endpoint", default=os.environ.get("AWS_ENDPOINT_URL"),
        help="the embedded AWS of `esdeploy local` (default: $AWS_ENDPOINT_URL, which it tells you to export)",
    )
    args = parser.parse_args(argv)
    if not args.aws_endpoint:
        parser.error("no --aws-endpoint and no AWS_ENDPOINT_URL: paste the export lines `esdeploy local` printed")
    try:
        wanted = Misbehaviour.parse({"errors": args.errors, "latency_ms": args.latency_ms})
        answer = set_misbehaviour(args.aws_endpoint, args.endpoint, wanted)
    except MisbehaviourError as error:
        print(f"misbehave: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
