"""A task replacing itself (``Task.replace``): its canvas compiled into the DAG.

Celery's ``Task.replace`` wires the replacement to the task's request (its
callbacks, errbacks, the rest of its chain; a group becomes a chord with
``celery.accumulate`` to carry them), freezes it with the task's id and sends
it. A node's message carries none of that wiring: its callbacks, errbacks
and successors are nodes and edges, which stay wired to the replaced node.
So the canvas is compiled as a submit's is, the replaced node waits for its
result (a group's is the list of its members' results, as ``accumulate``
gives), and its tasks are guarded by the errbacks that guard the replaced
node, as Celery links the request's errbacks to the replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.exceptions import ImproperlyConfigured

from celeriac.engine.arguments import check_storable
from celeriac.engine.canvas_calls import Call
from celeriac.engine.canvas_signatures import as_signature, is_empty_chain
from celeriac.engine.canvas_walk import CanvasWalker
from celeriac.engine.graph_builder import GraphBuilder
from celeriac.records import NewEdge, NewReplacement

#: The default of the engine option ``max_replacement_nodes``.
MAX_REPLACEMENT_NODES = 100_000


def compile_replacement(
    app: Celery,
    canvas: Any,
    label: str | None,
    errbacks: Sequence[str],
    max_nodes: int = MAX_REPLACEMENT_NODES,
) -> NewReplacement:
    """The nodes and edges of ``canvas``, replacing a node labelled ``label``.

    ``errbacks``: the ERRBACK nodes guarding the replaced node; they guard
    every task of the replacement.

    Raises:
        ImproperlyConfigured: as in Celery, the canvas is part of a chord,
            or an empty chain.
        UnknownTask: the canvas names a task the app does not know.
        InvalidCanvas: the canvas cannot be stored.
        ReplacementTooLarge: it has more than ``max_nodes`` nodes.
    """
    sig = as_signature(app, canvas)
    if "chord" in sig.options:
        raise ImproperlyConfigured(
            "A signature replacing a task must not be part of a chord"
        )
    if is_empty_chain(sig):
        raise ImproperlyConfigured("Cannot replace with an empty chain")
    check_storable(sig, (), None, None)
    edges: list[NewEdge] = []
    graph = GraphBuilder(app, edges.append, max_nodes)
    result = CanvasWalker(graph).add(sig, None, Call(), list(errbacks), label)
    leaves = [leaf for leaf in graph.leaves() if leaf != result]
    graph.fix_waiting()
    return NewReplacement(
        nodes=graph.nodes,
        edges=edges,
        result_node_id=result,
        leaves=leaves,
        frozen_ids=tuple(graph.frozen_ids),
    )
