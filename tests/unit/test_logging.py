"""Unit tests: every chalicelib logger writes Powertools JSON, whatever module was imported first."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_service_logger_created_after_the_logging_module_still_writes_json() -> None:
    probe = (
        "import logging, chalicelib.logs\n"
        "logging.getLogger('chalicelib.services.example').warning('hello', extra={'task_id': 't-1'})\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["message"], line["task_id"], line["level"]) == ("hello", "t-1", "WARNING")
