"""Celery canvas → DAG of nodes and edges. Pure: no database, no broker.

Every Celery task becomes a TASK node that receives its single parent's
result (unless immutable). A group's result, and a chord's join, is a JOIN
node that collects its parents' results in order; it completes in the
database, so no ``chord_unlock`` task polls for it. An END node waits for
every leaf: its completion completes the workflow.

The walk follows what Celery itself does when a canvas is applied
(``celery/canvas.py``): which part gets the call's arguments and options,
how groups flatten, where ``link`` and ``link_error`` end up. The
differential tests (``tests/integration/test_canvas_differential.py``) run
each form both ways and compare.

The work is shared out: ``canvas_walk`` walks each kind of part,
``canvas_steps`` says which parts Celery applies, ``canvas_errbacks`` where
errbacks go, ``canvas_signatures`` and ``canvas_calls`` read and rewire
signatures and their options, and ``graph_builder`` keeps the node and edge
records.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from celery.canvas import group

from celeriac.engine.arguments import check_storable
from celeriac.engine.call_options import sort_call_options
from celeriac.engine.canvas_calls import Call, execution_options
from celeriac.engine.canvas_signatures import as_signature, without_errbacks
from celeriac.engine.canvas_walk import CanvasWalker
from celeriac.engine.graph_builder import GraphBuilder
from celeriac.engine.inputs import check_submission
from celeriac.records import EdgeSink, NewGraph, NewWorkflow


def compile_canvas(
    app: Celery,
    canvas: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> NewWorkflow:
    """Turn ``canvas`` (called as ``canvas(*args, **kwargs)``) into a workflow.

    ``options``: the call options, as ``canvas.apply_async(**options)``.
    The canvas, its arguments and options are checked here; its walk into
    nodes and edges runs when the store calls the workflow's ``walk``,
    which raises what the walk finds wrong (``UnknownTask``,
    ``InvalidCanvas``).
    """
    check_submission(canvas, name, metadata)
    sig = as_signature(app, canvas)
    given = sort_call_options(app, sig, options or {})
    if given.errbacks:
        sig = without_errbacks(sig)  # the call's replace the canvas's own
    canvas_text = check_storable(sig, args, kwargs, metadata)
    call = Call(
        tuple(args),
        dict(kwargs or {}),
        execution_options(given.options),
        given.links,
    )

    def walk(edge_sink: EdgeSink) -> NewGraph:
        graph = GraphBuilder(app, edge_sink)
        result_node = CanvasWalker(graph).add(sig, None, call, given.errbacks, None)
        if isinstance(sig, group):
            result_node = graph.group_result(result_node)
        graph.close()
        return NewGraph(graph.nodes, result_node, tuple(graph.frozen_ids))

    return NewWorkflow(
        id=str(uuid.uuid4()),
        name=name,
        canvas=dict(sig),
        canvas_text=canvas_text,
        args=list(args),
        kwargs=dict(kwargs or {}),
        metadata=metadata,
        walk=walk,
    )
