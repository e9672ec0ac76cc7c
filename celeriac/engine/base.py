"""What every part of the Engine shares: its collaborators and its settings.

The Engine is composed of mixins, one per job (``control``, ``outcomes``,
``publishing``, ``upkeep``, ``submission``, ``reading``); this base declares
the attributes ``Engine.__init__`` sets, and the one operation the lowest
parts call before a higher one defines it: publishing nodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from celeriac.records import Delivery, Dispatch

if TYPE_CHECKING:
    import sqlalchemy as sa
    from celery import Celery

    from celeriac.engine.errbacks import ErrbackArguments
    from celeriac.engine.liveness import Liveness
    from celeriac.engine.recovery import RecoveryLoop
    from celeriac.states import OnFailure
    from celeriac.storage import Store
    from celeriac.storage.finishes import Finishes


class EngineBase(ABC):
    """The engine's state, as ``Engine.__init__`` sets it."""

    app: Celery
    database_url: str
    on_failure: OnFailure
    max_result_bytes: int
    #: the most nodes one ``Task.replace`` may add to a workflow
    max_replacement_nodes: int
    #: a QUEUED node not started for this many seconds is published again
    recovery_delay: float
    #: how long a worker runs successors itself after a message (``handoff``)
    inline_successor_seconds: float
    _db: sa.Engine
    _store: Store
    _finishes: Finishes
    _liveness: Liveness
    _recovery: RecoveryLoop

    @abstractmethod
    def _publish(
        self, dispatch: list[Dispatch], arguments: ErrbackArguments | None = None
    ) -> Delivery:
        """Publish nodes; errbacks taking a request run here (``arguments``)."""
