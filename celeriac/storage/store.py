"""Store: every read and write celeriac makes, each a named domain method.

Each public method is one transaction. Writes that must respect the
workflow's state read the workflow row ``FOR SHARE`` (node outcomes, claims),
so that state changes, which take it ``FOR UPDATE``, wait for them and are
waited for: after ``pause()`` commits, no transaction dispatches a node.
SQLite has no row locks; there every write transaction is ``BEGIN IMMEDIATE``,
which serializes writers.
"""

from __future__ import annotations

from celeriac.storage.claiming import ClaimStore
from celeriac.storage.control import ControlStore
from celeriac.storage.outcomes import OutcomeStore
from celeriac.storage.reads import ReadStore
from celeriac.storage.replacing import ReplaceStore
from celeriac.storage.submitting import SubmitStore
from celeriac.storage.upkeep import UpkeepStore


class Store(
    SubmitStore,
    ClaimStore,
    OutcomeStore,
    ReplaceStore,
    ControlStore,
    UpkeepStore,
    ReadStore,
):
    """All of celeriac's persistence, behind named methods.

    A thin facade: each part lives in the module named after what it does
    (``submitting``, ``claiming``, ``outcomes``, ``control``, ``upkeep``,
    ``reads``), on the transactions of ``transactions.StoreBase``.
    """
