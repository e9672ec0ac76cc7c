"""The web console's pure parts: reading filters, drawing graphs, who may bind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from celeriac import Cluster, Clustered, Outline, OutlineNode, WorkflowCursor
from celeriac.web import queries
from celeriac.web.actions import sources
from celeriac.web.auth import Credentials, check_bind, is_loopback
from celeriac.web.drawing import draw


def test_filters_read_from_the_query_string():
    where = queries.workflow_filter(
        {
            "state": "FAILED",
            "name": "n",
            "since": "2026-12-01",
            "failed": "1",
            "id": "ab",
        }
    )
    assert where.state == "FAILED"
    assert where.created_after == datetime(2026, 12, 1, tzinfo=UTC)
    assert where.failed_node
    assert where.id_prefix == "ab"
    assert queries.workflow_filter({}) == queries.WorkflowFilter()


def test_a_cursor_comes_back_as_it_was_written():
    at = datetime(2026, 12, 5, 9, 30, 1, 123456, tzinfo=UTC)
    text = queries.cursor_text(at, "wf-1|x")
    assert queries.cursor({"after": text}) == WorkflowCursor(at, "wf-1|x")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.7", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_off_loopback_needs_credentials():
    check_bind("127.0.0.1", Credentials())
    check_bind("0.0.0.0", Credentials(token="t"))
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind("0.0.0.0", Credentials())
    with pytest.raises(ValueError, match="set both"):
        Credentials.from_environment({"CELERIAC_WEB_USER": "ops"})


def test_actions_start_from_the_states_of_the_transition_table():
    assert sources("pause") == {"IN_PROGRESS"}
    assert sources("retry") == {"FAILED"}
    assert sources("cancel") == {"IN_PROGRESS", "REQUESTING_PAUSE", "PAUSED"}


def test_a_small_graph_is_drawn_node_by_node_in_depth_rows():
    nodes = [
        OutlineNode("a", "t.a", "TASK", "SUCCEEDED", None),
        OutlineNode("b", "t.b", "TASK", "RUNNING", None),
        OutlineNode("c", "t.b", "TASK", "FAILED", None),
        OutlineNode("j", None, "JOIN", "PENDING", None),
    ]
    edges = [("a", "b"), ("a", "c"), ("b", "j"), ("c", "j")]
    drawing = draw(Outline(nodes, edges))
    by_node = {box.node_id: box for box in drawing.boxes}
    assert {n: b.state for n, b in by_node.items()} == {
        "a": "SUCCEEDED",
        "b": "RUNNING",
        "c": "FAILED",
        "j": "PENDING",
    }
    assert by_node["a"].y < by_node["b"].y == by_node["c"].y < by_node["j"].y
    assert by_node["j"].task == "join"
    assert len(drawing.lines) == 4
    assert not drawing.collapsed


def test_clusters_are_drawn_as_counted_boxes_with_their_edges():
    clusters = [
        Cluster(None, "t.first", "TASK", "SUCCEEDED", 1),
        Cluster("n0", "t.add", "TASK", "SUCCEEDED", 60_000),
        Cluster("n0", "t.add", "TASK", "RUNNING", 40_000),
    ]
    parents = {"n0": (None, "t.first", "TASK")}
    drawing = draw(Clustered(clusters, parents, True, 100_001))
    first, group = drawing.boxes
    assert (group.size, group.state) == (100_000, "RUNNING")
    assert group.summary == "60000 SUCCEEDED, 40000 RUNNING"
    assert first.y < group.y
    assert len(drawing.lines) == 1
    assert drawing.collapsed
