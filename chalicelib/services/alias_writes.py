"""Services: changing an alias — read it, decide, write conditionally; on a conflict, read and decide again."""
from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.domain.errors import AliasConflictError, RetryableError
from chalicelib.domain.models import Alias
from chalicelib.ports import Aliases

logger = logging.getLogger(__name__)

# Writers of one alias are few (a swap, the bake-end teardown dropping `previous`, a delete's
# unaliasing, a rollback), so a handful of tries always settles; past that, SQS redelivers.
ALIAS_ATTEMPTS = 5
_UNREAD = Alias.none("")  # `read` not given (None is a read: no alias stored)


def change_alias(
    aliases: Aliases,
    embedding_model_id: str,
    transition: Callable[[Alias], Alias | None],
    read: Alias | None = _UNREAD,
) -> Alias | None:
    """Write what `transition(current alias)` returns (one of Alias's transition methods; a model
    with none stored reads as `Alias.none`), or nothing when it returns None; returns the alias as
    it stands afterwards (None: none stored). The one way the alias changes. A conflicting write by
    another writer of the alias is not a sign that someone else owns this step (only a conflict on
    the task row is), so it is read again and decided again, never swallowed. `read`: the alias as the
    caller read it a moment ago, for the first try (a stale one only costs a conflict and a read)."""
    for attempt in range(1, ALIAS_ATTEMPTS + 1):
        stored = aliases.get(embedding_model_id) if attempt > 1 or read is _UNREAD else read
        current = stored or Alias.none(embedding_model_id)
        wanted = transition(current)
        if wanted is None:
            return stored
        try:
            return aliases.swap(wanted, expected_version=current.version)
        except AliasConflictError as conflict:
            logger.info(
                "the alias changed under us; reading it again",
                extra={"embedding_model_id": embedding_model_id, "attempt": attempt, "error": str(conflict)},
            )
    raise RetryableError(
        f"the alias of {embedding_model_id} changed {ALIAS_ATTEMPTS} times while we wrote it; trying again later"
    )
