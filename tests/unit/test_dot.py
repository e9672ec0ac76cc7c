"""The DOT and Mermaid writers, on hand-made Node records."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

import pytest

from celeriac import Node
from celeriac.engine.dot import STATE_COLOURS, to_dot, to_mermaid


def node(
    node_id: str,
    task: str | None,
    state: str = "SUCCEEDED",
    parents: Sequence[str] = (),
    kind: str = "TASK",
) -> Node:
    return Node(
        id=node_id,
        task=task,
        state=state,
        kind=kind,
        position=0,
        attempts=[],
        result=None,
        error=None,
        parents=list(parents),
    )


@pytest.fixture
def chord_nodes():
    """a -> (b, c) -> [join j] -> d, with an errback e guarding b."""
    return [
        node("a", "proj.first"),
        node("b", "proj.part", "FAILED", parents=["a"]),
        node("c", "proj.part", "RUNNING", parents=["a"]),
        node("d", "proj.total", "PENDING", parents=["j"]),
        node("e", "proj.on_error", "QUEUED", parents=["b"], kind="ERRBACK"),
    ]


def dot_edges(text: str) -> list[tuple[str, str]]:
    return re.findall(r'^  "([^"]+)" -> "([^"]+)"', text, flags=re.MULTILINE)


def dot_attributes(text: str, node_id: str) -> dict[str, str]:
    line = next(
        line for line in text.splitlines() if line.startswith(f'  "{node_id}" [')
    )
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))


def test_dot_labels_each_node_by_task_and_fills_it_by_state(chord_nodes):
    text = to_dot(chord_nodes, "nightly")
    assert text.startswith('digraph "nightly" {\n')
    assert text.endswith("}\n")
    for record in chord_nodes:
        attributes = dot_attributes(text, record.id)
        assert attributes["label"] == record.task
        assert attributes["fillcolor"] == STATE_COLOURS[record.state]


def test_dot_draws_an_edge_from_every_parent(chord_nodes):
    edges = dot_edges(to_dot(chord_nodes))
    assert edges == [("a", "b"), ("a", "c"), ("j", "d"), ("b", "e")]


def test_dot_draws_a_parent_missing_from_the_list_as_a_join_point(chord_nodes):
    attributes = dot_attributes(to_dot(chord_nodes), "j")
    assert attributes["shape"] == "point"
    assert attributes["label"] == ""


def test_dot_draws_errback_edges_dashed(chord_nodes):
    line = next(
        line for line in to_dot(chord_nodes).splitlines() if '"b" -> "e"' in line
    )
    assert "style=dashed" in line
    plain = next(
        line for line in to_dot(chord_nodes).splitlines() if '"a" -> "b"' in line
    )
    assert "style" not in plain


def test_dot_draws_join_and_end_nodes_small(chord_nodes):
    nodes = [
        *chord_nodes,
        node("j", None, parents=["b", "c"], kind="JOIN"),
        node("z", None, "PENDING", parents=["d"], kind="END"),
    ]
    text = to_dot(nodes)
    assert dot_attributes(text, "j")["shape"] == "point"
    assert dot_attributes(text, "z")["shape"] == "doublecircle"
    assert text.count('"j" [') == 1  # present, so not drawn again as missing
    assert ("b", "j") in dot_edges(text)


def test_dot_escapes_quotes_and_backslashes():
    text = to_dot([node('we"ird\\', 'say "hi"')], 'my "flow"')
    assert 'digraph "my \\"flow\\"" {' in text
    assert 'label="say \\"hi\\""' in text
    assert '"we\\"ird\\\\" [' in text


def test_dot_of_no_nodes_is_an_empty_graph():
    assert to_dot([]).splitlines()[0] == 'digraph "workflow" {'


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_reads_the_dot_output(chord_nodes):
    nodes = [*chord_nodes, node('q"x', 'odd "name"', "SKIPPED", parents=["d"])]
    rendered = subprocess.run(
        ["dot", "-Tsvg"],
        input=to_dot(nodes, "a graph"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "<svg" in rendered.stdout
    assert "proj.total" in rendered.stdout


def test_mermaid_numbers_the_nodes_and_classes_them_by_state(chord_nodes):
    text = to_mermaid(chord_nodes)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  n0["proj.first"]:::succeeded' in lines
    assert '  n1["proj.part"]:::failed' in lines
    assert '  n3["proj.total"]:::pending' in lines
    assert "  n5((join))" in lines  # the missing parent j
    for state, colour in STATE_COLOURS.items():
        assert f"  classDef {state.lower()} fill:{colour},stroke:#555555" in lines


def test_mermaid_edges_with_dotted_errback_links(chord_nodes):
    lines = to_mermaid(chord_nodes).splitlines()
    assert "  n0 --> n1" in lines
    assert "  n0 --> n2" in lines
    assert "  n5 --> n3" in lines
    assert "  n1 -.-> n4" in lines


def test_mermaid_escapes_quotes_in_labels():
    text = to_mermaid([node("a", 'say "hi" #1')])
    assert '  n0["say #quot;hi#quot; #35;1"]:::succeeded' in text.splitlines()
