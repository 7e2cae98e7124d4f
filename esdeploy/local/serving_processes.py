"""Local stack: which process serves a variant on this machine, per serving, and the environment it starts with.

A `handler` variant runs esdeploy.local.endpoint (the archive's own code/inference.py); a `tei` variant runs the
TEI stand-in (esdeploy.local.tei_standin) with the environment SageMaker gives TEI's container
(serving_wire.container_environment). Both print the same start-up lines, which the local hosting reads.
"""
from __future__ import annotations

import os
from pathlib import Path

from chalicelib.adapters.serving_wire import container_environment
from chalicelib.domain.serving import Dtype, Processor, Serving, processor_of
from chalicelib.ports import VariantSpec
from esdeploy.local import endpoint, tei_standin

MODULES = {Serving.HANDLER: endpoint.__name__, Serving.TEI: tei_standin.__name__}


def serving_process(spec: VariantSpec | None, artifact: Path, python: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the process that serves `spec` (None: a handler variant) from
    `artifact` on a free port. Both processes take the same options (`--workdir`, `--parent-pid` too)."""
    serving = spec.serving if spec is not None else Serving.HANDLER
    command = [python, "-u", "-m", MODULES[serving], "--artifact", str(artifact), "--port", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if spec is None:
        return command, env
    if spec.serving is Serving.TEI:
        env.update(container_environment(Serving.TEI, spec.dtype))
        if spec.dtype is None and processor_of(spec.instance_type) is Processor.GPU:
            # TEI's CUDA image runs float16 unless told otherwise; the stand-in runs the CPU model in it too.
            env["DTYPE"] = Dtype.FLOAT16.value
    elif spec.dtype is not None:
        env.update(container_environment(Serving.HANDLER, spec.dtype))
    return command, env
