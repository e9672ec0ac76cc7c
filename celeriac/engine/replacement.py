"""A task replacing itself (``Task.replace``): its canvas compiled into the DAG.

Celery hands ``on_replace`` the replacement ready to send: a group turned
into a chord with ``celery.accumulate``, frozen with the replaced task's id,
its callbacks and errbacks linked. Under celeriac the node's message carries
none of Celery's wiring (its callbacks, errbacks and successors are nodes and
edges), so the canvas is the user's; it is compiled as a submit's is, and
its tasks are guarded by the errbacks that guard the replaced node, as
Celery links the request's errbacks to the replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from celeriac.engine.arguments import check_storable
from celeriac.engine.canvas_calls import Call
from celeriac.engine.canvas_signatures import as_signature
from celeriac.engine.canvas_walk import CanvasWalker
from celeriac.engine.graph_builder import GraphBuilder
from celeriac.records import NewReplacement

#: The default of the engine option ``max_replacement_nodes``.
MAX_REPLACEMENT_NODES = 100_000


def compile_replacement(
    app: Celery,
    canvas: Any,
    replaced: str,
    label: str | None,
    errbacks: Sequence[str],
    max_nodes: int = MAX_REPLACEMENT_NODES,
) -> NewReplacement:
    """The nodes and edges of ``canvas``, replacing node ``replaced``.

    ``errbacks``: the ERRBACK nodes guarding the replaced node; they guard
    every task of the replacement. A part frozen with the replaced node's id
    gets a fresh id (that id stays the replaced node's).

    Raises:
        UnknownTask: the canvas names a task the app does not know.
        InvalidCanvas: the canvas cannot be stored.
        ReplacementTooLarge: it has more than ``max_nodes`` nodes.
    """
    sig = as_signature(app, canvas)
    check_storable(sig, (), None, None)
    graph = GraphBuilder(app, fresh_for=replaced, max_nodes=max_nodes)
    result = CanvasWalker(graph).add(sig, None, Call(), list(errbacks), label)
    leaves = [leaf for leaf in graph.leaves() if leaf != result]
    graph.fix_waiting()
    return NewReplacement(
        nodes=graph.nodes,
        edges=graph.edges,
        result_node_id=result,
        leaves=leaves,
        frozen_ids=tuple(graph.frozen_ids),
    )
