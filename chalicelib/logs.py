"""Logging: one structured JSON line per request and per step (Powertools Logger)."""
from __future__ import annotations

import logging

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

logger = Logger(service="esdeploy")

# Every chalicelib.* module logs through the stdlib; its records propagate to the `chalicelib`
# parent, which gets Powertools' JSON handler, so `extra={"task_id": ...}` becomes a field that
# CloudWatch Logs Insights can filter on. The copy reaches only loggers that exist already, so the
# parent is created first: otherwise importing this module before any service would leave it bare.
PARENT = logging.getLogger("chalicelib")
copy_config_to_registered_loggers(source_logger=logger, include={PARENT.name})
