"""The local stack's hosting bounds a caller's invocation the way SageMaker's adapter does."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from chalicelib.domain.errors import InvocationTimeoutError
from chalicelib.ports import VariantSpec
from esdeploy.local.hosting import LocalHosting, LocalVariant

NAME = "esdlocal-m1-0000-1111"


def test_an_endpoint_that_does_not_answer_in_time_is_a_timeout_not_a_retry(
    silent_endpoint: str, tmp_path: Path
) -> None:
    hosting = LocalHosting(s3_client=None, workdir=tmp_path)
    spec = VariantSpec(NAME, "m1", "t1", "s3://b/models/m1/x/model.tar.gz", "image", "ml.g5.xlarge", 1)
    port = int(silent_endpoint.rsplit(":", 1)[1])
    # An endpoint process that is up (InService) but hangs on /invocations.
    hosting._variants[NAME] = LocalVariant(hosting.endpoints.plant(spec), tmp_path / NAME, port=port)
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError, match=f"endpoint {NAME} did not answer in 0.5 s"):
        hosting.invoke(NAME, {"inputs": ["x"]}, timeout_seconds=0.5)
    assert time.monotonic() - started < 5
    hosting.close()
