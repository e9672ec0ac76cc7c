"""What a drawing of a workflow reads: its outline, or its nodes counted.

``Outline`` and ``Clustered`` are public (API.md).
"""

from __future__ import annotations

from typing import NamedTuple


class OutlineNode(NamedTuple):
    """One node as a drawing shows it."""

    id: str
    task: str | None
    kind: str
    state: str
    label: str | None


class Outline(NamedTuple):
    """The nodes in canvas order, and the edges between them (parent, child)."""

    nodes: list[OutlineNode]
    edges: list[tuple[str, str]]


class Cluster(NamedTuple):
    """Nodes of one task that share their first parent, in one state, counted."""

    #: the first parent of each (None: roots)
    parent_id: str | None
    task: str | None
    kind: str
    state: str
    nodes: int


class Clustered(NamedTuple):
    """A large workflow's nodes, counted by first parent, task, kind and state."""

    clusters: list[Cluster]
    #: each first parent's own cluster (parent, task, kind): the edges
    parents: dict[str, tuple[str | None, str | None, str]]
    #: False: too many clusters, counted by task alone (no edges)
    structured: bool
    #: how many nodes they stand for
    total: int
