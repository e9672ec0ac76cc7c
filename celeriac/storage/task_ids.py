"""Task ids a canvas chose itself: frozen ids must not be stored twice."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from celeriac.errors import InvalidCanvas
from celeriac.storage.batches import chunks
from celeriac.storage.schema import nodes


def refuse_taken(conn: sa.Connection, ids: Sequence[str]) -> None:
    """Raise InvalidCanvas if a stored node already has one of ``ids``.

    A signature frozen before submit (``sig.freeze()``) runs under its
    frozen id, which becomes its node's id: submitting it a second time
    would give two nodes one id.
    """
    for chunk in chunks(ids):
        taken = conn.execute(
            sa.select(nodes.c.id, nodes.c.workflow_id)
            .where(nodes.c.id.in_(sa.bindparam("b_ids", expanding=True)))
            .limit(1),
            {"b_ids": list(chunk)},
        ).first()
        if taken is not None:
            raise InvalidCanvas(
                f"task id {taken.id} is already a node of workflow "
                f"{taken.workflow_id}: a frozen signature can be submitted once"
            )
