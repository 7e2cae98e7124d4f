"""Adapters: the Clock port on the machine's clock (UTC)."""
from __future__ import annotations

from datetime import datetime

from chalicelib.domain.models import utc_now


class SystemClock:
    def now(self) -> datetime:
        return utc_now()
