"""Test helper: the tiny model packaged once per run by the installed `esdeploy package`, and uploaded to a stack.

`esdeploy package` is a third of the e2e tests' time (about 17 s of CPU a run: torch, transformers,
sentence-transformers' parity check, the archive loaded again in a fresh process). The tests whose subject is
not packaging share one run per model id: whichever pytest-xdist worker needs it first packages it (a file lock
keeps the others waiting, then reading its output), and each stack gets it through esdeploy's own upload
(`esdeploy.s3upload.upload_artifact`, what `package --upload` calls). The packaging and its upload as a person
types them stay whole in test_local_stack's lifecycle test and in test_local_tei.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
from filelock import FileLock

from esdeploy.s3upload import upload_artifact
from tests.console_script import installed_esdeploy, user_env
from tests.serving.conftest import add_sentence_transformers_files, build_tiny_bert

SHARED_MODEL = "tiny"  # the model id most e2e modules deploy, each on its own stack
SECOND_MODEL = "tiny-2"  # a second model beside it


class PackagedModels:
    """Archives of the tiny model by model id, under a folder every worker of the run shares."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self._root = root
        self._cwd = cwd

    def archive(self, model_id: str) -> Path:
        """The packaged archive for `model_id` (its manifest.json beside it), packaged on first use."""
        folder = self._root / model_id
        archive = folder / "model.tar.gz"
        with FileLock(str(self._root / f"{model_id}.lock")):
            if not archive.exists():
                packaged = subprocess.run(
                    [installed_esdeploy(), "package", str(self._source()), "--model-id", model_id,
                     "--output", str(archive)],
                    cwd=self._cwd, env=user_env(), capture_output=True, text=True, timeout=300,
                )
                assert packaged.returncode == 0, packaged.stdout + packaged.stderr
        return archive

    def upload(self, stack: dict[str, Any], model_id: str) -> str:
        """`model_id` packaged and put into the stack's artifact bucket, as `esdeploy package --upload` puts it."""
        archive = self.archive(model_id)
        manifest = archive.parent / "manifest.json"
        content = json.loads(manifest.read_text(encoding="utf-8"))["content_sha256"]
        s3 = boto3.client(
            "s3", endpoint_url=stack["aws_endpoint"], region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )
        upload_artifact(archive, manifest, stack["artifact_upload_url"], model_id, content, s3_client=s3,
                        metadata={"esdeploy-content-sha256": content})
        return model_id

    def _source(self) -> Path:
        """The tiny sentence-transformers model every archive is packaged from (made once, under the caller's lock)."""
        source = self._root / "source" / "model"
        with FileLock(str(self._root / "source.lock")):
            if not (source / "modules.json").exists():
                add_sentence_transformers_files(build_tiny_bert(source))
        return source
