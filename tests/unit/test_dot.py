"""The DOT and Mermaid writers, on hand-made Node records."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

import pytest

from celeriac import Node
from celeriac.cli.dot import STATE_COLOURS, to_dot, to_mermaid


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
    """a -> (b, c) -> join j -> d, with an errback e guarding b, in canvas order."""
    return [
        node("a", "proj.first"),
        node("b", "proj.part", "FAILED", parents=["a"]),
        node("c", "proj.part", "SUCCEEDED", parents=["a"]),
        node("j", None, "PENDING", parents=["b", "c"], kind="JOIN"),
        node("d", "proj.total", "SKIPPED", parents=["j"]),
        node("e", "proj.on_error", "QUEUED", parents=["b"], kind="ERRBACK"),
    ]


@pytest.fixture
def task_nodes(chord_nodes):
    """The chord's nodes as ``Workflow.nodes()`` lists them: without the join."""
    return [record for record in chord_nodes if record.kind != "JOIN"]


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
        assert attributes["label"] == (record.task or "")
        assert attributes["fillcolor"] == STATE_COLOURS[record.state]


def test_dot_draws_an_edge_from_every_parent(chord_nodes):
    edges = dot_edges(to_dot(chord_nodes))
    assert edges == [
        ("a", "b"),
        ("a", "c"),
        ("b", "j"),
        ("c", "j"),
        ("j", "d"),
        ("b", "e"),
    ]


def test_dot_draws_a_join_as_a_point_between_its_parents_and_children(chord_nodes):
    text = to_dot(chord_nodes)
    attributes = dot_attributes(text, "j")
    assert attributes["shape"] == "point"
    assert attributes["label"] == ""
    assert attributes["fillcolor"] == STATE_COLOURS["PENDING"]
    edges = dot_edges(text)
    assert [parent for parent, child in edges if child == "j"] == ["b", "c"]
    assert [child for parent, child in edges if parent == "j"] == ["d"]
    assert text.count('"j" [') == 1


def test_dot_draws_a_parent_missing_from_the_list_as_a_join_point(task_nodes):
    text = to_dot(task_nodes)
    attributes = dot_attributes(text, "j")
    assert attributes["shape"] == "point"
    assert attributes["label"] == ""
    assert ("j", "d") in dot_edges(text)
    assert [edge for edge in dot_edges(text) if edge[1] == "j"] == []


def test_dot_draws_errback_edges_dashed(chord_nodes):
    line = next(
        line for line in to_dot(chord_nodes).splitlines() if '"b" -> "e"' in line
    )
    assert "style=dashed" in line
    plain = next(
        line for line in to_dot(chord_nodes).splitlines() if '"a" -> "b"' in line
    )
    assert "style" not in plain


def test_dot_draws_an_end_node_small(chord_nodes):
    text = to_dot([*chord_nodes, node("z", None, "PENDING", ["d"], kind="END")])
    assert dot_attributes(text, "z")["shape"] == "doublecircle"
    assert dot_attributes(text, "z")["label"] == ""
    assert ("d", "z") in dot_edges(text)


def test_dot_escapes_quotes_and_backslashes():
    text = to_dot([node('we"ird\\', 'say "hi"')], 'my "flow"')
    assert 'digraph "my \\"flow\\"" {' in text
    assert 'label="say \\"hi\\""' in text
    assert '"we\\"ird\\\\" [' in text


def test_dot_of_no_nodes_is_an_empty_graph():
    assert to_dot([]).splitlines()[0] == 'digraph "workflow" {'


def graphviz(text: str, output: str) -> str:
    """``text`` as Graphviz lays it out, in its ``-T`` ``output`` format."""
    rendered = subprocess.run(
        ["dot", f"-T{output}"], input=text, capture_output=True, text=True, check=True
    )
    return rendered.stdout


needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz is not installed"
)


@needs_graphviz
def test_graphviz_reads_the_dot_output(chord_nodes):
    nodes = [*chord_nodes, node('q"x', 'odd "name"', "SKIPPED", parents=["d"])]
    svg = graphviz(to_dot(nodes, "a graph"), "svg")
    assert "<svg" in svg
    assert "proj.total" in svg


@needs_graphviz
def test_graphviz_lays_out_the_arrows_into_and_out_of_a_join(chord_nodes):
    # -Tplain: "node NAME X Y W H LABEL STYLE SHAPE COLOR FILL" and
    # "edge TAIL HEAD N X1 Y1 ... STYLE COLOR" lines, as Graphviz read them
    plain = [
        line.split() for line in graphviz(to_dot(chord_nodes), "plain").splitlines()
    ]
    nodes = {words[1]: words for words in plain if words[0] == "node"}
    edges = [(words[1], words[2]) for words in plain if words[0] == "edge"]
    assert nodes["j"][8] == "point"
    assert nodes["j"][10] == STATE_COLOURS["PENDING"]
    assert ("b", "j") in edges
    assert ("c", "j") in edges
    assert ("j", "d") in edges
    assert float(nodes["j"][3]) < float(nodes["b"][3])  # y grows upwards
    assert float(nodes["d"][3]) < float(nodes["j"][3])


def test_mermaid_numbers_the_nodes_and_classes_them_by_state(chord_nodes):
    text = to_mermaid(chord_nodes)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  n0["proj.first"]:::succeeded' in lines
    assert '  n1["proj.part"]:::failed' in lines
    assert "  n3((join)):::pending" in lines
    assert '  n4["proj.total"]:::skipped' in lines
    for state, colour in STATE_COLOURS.items():
        assert f"  classDef {state.lower()} fill:{colour},stroke:#555555" in lines


def test_mermaid_edges_with_dotted_errback_links(chord_nodes):
    lines = to_mermaid(chord_nodes).splitlines()
    edges = [line for line in lines if "->" in line]
    assert edges == [
        "  n0 --> n1",
        "  n0 --> n2",
        "  n1 --> n3",  # into the join
        "  n2 --> n3",
        "  n3 --> n4",  # out of it
        "  n1 -.-> n5",
    ]


def test_mermaid_draws_a_parent_missing_from_the_list_as_a_join(task_nodes):
    lines = to_mermaid(task_nodes).splitlines()
    assert "  n5((join))" in lines
    assert "  n5 --> n3" in lines
    assert not [line for line in lines if line.endswith("--> n5")]


def test_mermaid_escapes_quotes_in_labels():
    text = to_mermaid([node("a", 'say "hi" #1')])
    assert '  n0["say #quot;hi#quot; #35;1"]:::succeeded' in text.splitlines()
