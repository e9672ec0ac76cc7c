"""A workflow's DAG as text: Graphviz DOT and Mermaid.

Both writers take the ``Node`` records of one workflow, bookkeeping nodes
included (``Store.list_nodes(workflow_id, bookkeeping=True)``), and draw an
edge from each of a node's ``parents``, so a JOIN has arrows from the nodes
whose results it collects and to the nodes it feeds. Task nodes are boxes
labelled by task name and filled by state; errbacks hang off the nodes they
guard by dashed red edges. JOIN nodes are small points filled by state, and
the END node, if given, a small double circle. A parent missing from the
list (``Workflow.nodes()`` holds task and errback nodes only, whose
bookkeeping parents are always joins) is drawn as a stateless JOIN, without
arrows into it.
"""

from __future__ import annotations

from collections.abc import Sequence

from celeriac.records import Node
from celeriac.states import NodeKind, NodeState

#: Fill colour of a node in each state (Graphviz and CSS both read these).
STATE_COLOURS: dict[str, str] = {
    NodeState.PENDING: "#eeeeee",
    NodeState.QUEUED: "#cfe2ff",
    NodeState.RUNNING: "#ffe08a",
    NodeState.RETRYING: "#ffc078",
    NodeState.SUCCEEDED: "#b7e4c7",
    NodeState.FAILED: "#f4a3a3",
    NodeState.CANCELLED: "#c9c9c9",
    NodeState.SKIPPED: "#ffffff",
    NodeState.REPLACED: "#e5dbff",
}
_UNKNOWN_COLOUR = "#ffffff"
_ERROR_EDGE_COLOUR = "#c0392b"
_BOOKKEEPING = (NodeKind.JOIN, NodeKind.END)


def to_dot(nodes: Sequence[Node], name: str | None = None) -> str:
    """The DAG as a Graphviz ``digraph``, nodes labelled by task, filled by state."""
    lines = [
        f"digraph {_dot_quote(name or 'workflow')} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [color="#555555"];',
    ]
    every = _with_missing_joins(nodes)
    for node in every:
        attributes = {
            "label": _label(node),
            "fillcolor": STATE_COLOURS.get(node.state, _UNKNOWN_COLOUR),
            "tooltip": f"{node.id} {node.state}".strip(),
        }
        if node.kind == NodeKind.JOIN:
            attributes.update(shape="point", width="0.15")
        elif node.kind == NodeKind.END:
            attributes.update(shape="doublecircle", width="0.15")
        elif node.state == NodeState.SKIPPED:
            attributes["style"] = "rounded,dashed"
        lines.append(f"  {_dot_quote(node.id)} [{_dot_attributes(attributes)}];")
    for node in every:
        style = (
            f' [style=dashed, color="{_ERROR_EDGE_COLOUR}"]'
            if node.kind == NodeKind.ERRBACK
            else ""
        )
        for parent in node.parents:
            lines.append(f"  {_dot_quote(parent)} -> {_dot_quote(node.id)}{style};")
        if node.replaces is not None and not node.parents:
            replaced = f"{_dot_quote(node.replaces)} -> {_dot_quote(node.id)}"
            lines.append(f'  {replaced} [style=dotted, label="replaced by"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(nodes: Sequence[Node]) -> str:
    """The DAG as a Mermaid ``flowchart``, one class per node state."""
    every = _with_missing_joins(nodes)
    # Mermaid ids must be plain words: number the nodes instead of using uuids.
    ids = {node.id: f"n{index}" for index, node in enumerate(every)}
    lines = ["flowchart TD"]
    for node in every:
        if node.kind in _BOOKKEEPING:
            shape = "((join))" if node.kind == NodeKind.JOIN else "(((end)))"
        else:
            shape = f"[{_mermaid_quote(_label(node))}]"
        style = f":::{node.state.lower()}" if node.state in STATE_COLOURS else ""
        lines.append(f"  {ids[node.id]}{shape}{style}")
    for node in every:
        arrow = "-.->" if node.kind == NodeKind.ERRBACK else "-->"
        for parent in node.parents:
            lines.append(f"  {ids[parent]} {arrow} {ids[node.id]}")
        if node.replaces in ids and not node.parents:
            lines.append(f"  {ids[node.replaces]} -. replaced by .-> {ids[node.id]}")
    for state, colour in STATE_COLOURS.items():
        lines.append(f"  classDef {state.lower()} fill:{colour},stroke:#555555")
    return "\n".join(lines) + "\n"


def _with_missing_joins(nodes: Sequence[Node]) -> list[Node]:
    """``nodes`` plus a stateless JOIN for each parent that is not among them."""
    known = {node.id for node in nodes}
    missing: dict[str, None] = {}
    for node in nodes:
        for parent in node.parents:
            if parent not in known:
                missing.setdefault(parent, None)
    joins = [
        Node(parent, None, "", NodeKind.JOIN, -1, [], None, None) for parent in missing
    ]
    return [*nodes, *joins]


def _label(node: Node) -> str:
    if node.kind in _BOOKKEEPING:
        return ""
    return node.task or node.kind.lower()


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_attributes(attributes: dict[str, str]) -> str:
    return ", ".join(f"{key}={_dot_quote(value)}" for key, value in attributes.items())


def _mermaid_quote(text: str) -> str:
    # Mermaid reads entity codes inside a quoted label; '"' would end the label.
    return '"' + text.replace("#", "#35;").replace('"', "#quot;") + '"'
