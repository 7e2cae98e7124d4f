"""Domain layer: when the next look comes — poll backoff, hops, windows, stall and retry rules, in one place."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# SQS refuses a DelaySeconds above this: a longer wait is a chain of hops.
SQS_MAX_DELAY_SECONDS = 900

# A deploy message that arrived before the write of the step that sent it (an esdeploy from before issue 22
# sent, then wrote) comes back this many times, `early_message_delay_seconds` apart; then SQS's redelivery
# and the DLQ take over.
MAX_EARLY_RESENDS = 12

# A teardown the platform refuses for now (an endpoint still Creating) comes back after this many
# seconds times its attempt, this many times: several hours, longer than any creation.
TEARDOWN_RETRY_SECONDS = 60
MAX_TEARDOWN_ATTEMPTS = 90


@dataclass(frozen=True)
class Timing:
    """The stage's timing settings (ESDEPLOY_*_SECONDS, chalicelib/config.py) and every rule made of them."""

    poll_initial_seconds: int
    poll_max_seconds: int
    bake_check_seconds: int
    deploy_deadline_seconds: int
    default_promotion_timeout_seconds: int
    early_message_delay_seconds: int
    intake_retry_seconds: int

    def poll_delay(self, polls: int) -> int:
        """Seconds before the next look at a creating endpoint: from the first delay, x1.5 per poll, capped."""
        delay = self.poll_initial_seconds * (1.5 ** max(polls - 1, 0))
        return int(min(delay, self.poll_max_seconds))

    @property
    def stall_seconds(self) -> int:
        """An active task not written for this long has lost its message (the sweeper re-sends it):
        twice the longest poll delay, plus two minutes for a worker's retries."""
        return 2 * self.poll_max_seconds + 120

    def deploy_deadline(self, now: datetime) -> datetime:
        """A deploy not live by then ends failed (set at the preflight, again at a promote)."""
        return now + timedelta(seconds=self.deploy_deadline_seconds)

    def promotion_window(self, promotion_timeout_seconds: int | None) -> int:
        """How long a candidate waits for its promote: the deploy's own, else the stage's default
        (tasks stored before the window was kept per deploy)."""
        return promotion_timeout_seconds or self.default_promotion_timeout_seconds

    def promotion_hop(self, now: datetime, promote_by: datetime) -> int:
        """The next look at a candidate: the window's end, in hops no longer than the longest poll, so
        the sweeper (which re-kicks a task quiet for a stall window) sees it alive. One second past
        the end: the window is over only once `now > promote_by`."""
        return hop(now, promote_by, self.poll_max_seconds or 1, margin=1)

    def bake_hop(self, now: datetime, bake_ends_at: datetime) -> int:
        """The next look at the alarms: ESDEPLOY_BAKE_CHECK_SECONDS, never past the bake's end."""
        return hop(now, bake_ends_at, self.bake_check_seconds)

    def early_resend(self, attempt: int) -> int | None:
        """The delay of the `attempt`-th re-send of a message that ran ahead of its task; None when
        it came back often enough (SQS's redelivery takes over)."""
        return None if attempt >= MAX_EARLY_RESENDS else self.early_message_delay_seconds

    def intake_retry(self, now: datetime, deadline: datetime) -> int:
        """When a request for a busy model looks again: ESDEPLOY_INTAKE_RETRY_SECONDS, never past its deadline."""
        return min(self.intake_retry_seconds, math.ceil((deadline - now).total_seconds()))


def hop(now: datetime, until: datetime, longest: int, margin: int = 0) -> int:
    """Seconds to the next written look on the way to `until` (plus `margin`): at least 1, at most
    `longest` and SQS's longest delay."""
    left = math.ceil((until - now).total_seconds()) + margin
    return max(1, min(left, longest, SQS_MAX_DELAY_SECONDS))


def teardown_retry(attempt: int) -> int | None:
    """The delay of a teardown's `attempt`-th deferral (it grows with each); None past the last one."""
    if attempt > MAX_TEARDOWN_ATTEMPTS:
        return None
    return min(TEARDOWN_RETRY_SECONDS * attempt, SQS_MAX_DELAY_SECONDS)


def seconds_until(now: datetime, when: datetime) -> int:
    """Whole seconds from `now` to `when` (0 once it passed), within SQS's longest delay."""
    return max(0, min(math.ceil((when - now).total_seconds()), SQS_MAX_DELAY_SECONDS))
