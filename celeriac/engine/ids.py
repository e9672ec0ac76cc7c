"""Short workflow ids: the first characters of an id stand for the whole."""

from __future__ import annotations

from celeriac.errors import AmbiguousWorkflowId, WorkflowNotFound
from celeriac.records import SHORT_ID_LENGTH
from celeriac.storage import Store

#: How many candidates an ambiguous short id's error names.
CANDIDATES_NAMED = 5


def complete_id(store: Store, prefix: str) -> str:
    """The one stored workflow id that starts with ``prefix``.

    Raises ``WorkflowNotFound`` when no id starts with it (or it is shorter
    than :data:`SHORT_ID_LENGTH`), ``AmbiguousWorkflowId`` when several do.
    """
    if len(prefix) < SHORT_ID_LENGTH:
        raise WorkflowNotFound(prefix)
    found = store.workflow_ids_starting(prefix, CANDIDATES_NAMED + 1)
    if not found:
        raise WorkflowNotFound(prefix)
    if len(found) > 1:
        raise AmbiguousWorkflowId(prefix, found[:CANDIDATES_NAMED])
    return found[0]
