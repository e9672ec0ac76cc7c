"""The web console's pure parts: reading filters, drawing graphs, who may bind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celeriac import (
    Attempt,
    Cluster,
    Clustered,
    Node,
    Outline,
    OutlineNode,
    WorkflowCursor,
)
from celeriac.web import queries
from celeriac.web.actions import sources
from celeriac.web.auth import Credentials, check_bind, is_loopback
from celeriac.web.drawing import draw
from celeriac.web.excerpts import byte_size, excerpt
from celeriac.web.timeline import LABEL_WIDTH, PLOT_WIDTH, chart, tick_label, tick_step


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


def _node(position: int, *spans: tuple[str, float, float | None]) -> Node:
    """A node whose attempts ran (state, start, end) seconds after noon."""
    noon = datetime(2026, 12, 5, 12, tzinfo=UTC)
    attempts = [
        Attempt(
            number,
            state,
            "w",
            noon + timedelta(seconds=start),
            None if end is None else noon + timedelta(seconds=end),
            None,
            None,
        )
        for number, (state, start, end) in enumerate(spans, 1)
    ]
    return Node(
        f"n{position}", "t.add", "RUNNING", "TASK", position, attempts, None, None
    )


def test_the_time_chart_places_a_bar_per_attempt_running_ones_to_now():
    nodes = [
        _node(0, ("RETRY", 0, 1), ("SUCCEEDED", 2, 4)),
        _node(1, ("RUNNING", 4, None)),
        _node(2),
    ]
    drawn = chart(nodes, now=datetime(2026, 12, 5, 12, 0, 8, tzinfo=UTC))
    assert drawn.start == datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert [len(row.bars) for row in drawn.rows] == [2, 1, 0]
    retry, succeeded = drawn.rows[0].bars
    running = drawn.rows[1].bars[0]
    assert (retry.x, retry.width) == (LABEL_WIDTH, PLOT_WIDTH / 8)
    assert (running.x, running.width) == (LABEL_WIDTH + PLOT_WIDTH / 2, PLOT_WIDTH / 2)
    assert [retry.colour, succeeded.colour, running.colour] == [
        "RETRYING",
        "SUCCEEDED",
        "RUNNING",
    ]
    assert succeeded.title == "t.add (node 0), attempt 2: SUCCEEDED, 2.00 s"
    assert running.title == "t.add (node 1), attempt 1: RUNNING, 4.00 s so far"
    assert [label for _, label in drawn.ticks] == ["0 s", "2 s", "4 s", "6 s", "8 s"]
    nothing = chart([_node(0)], now=datetime(2026, 12, 5, tzinfo=UTC))
    assert nothing.start is None
    assert nothing.rows[0].bars == []


@pytest.mark.parametrize(
    ("span", "labels"),
    [
        (0.004, ["0 s", "0.001 s", "0.002 s", "0.003 s", "0.004 s"]),
        (0.9, ["0 s", "0.2 s", "0.4 s", "0.6 s", "0.8 s"]),
        (170, ["0 min", "1 min", "2 min"]),
        (5 * 3600 + 1, ["0 h", "2 h", "4 h"]),
        (30 * 86400, ["0 d", "6 d", "12 d", "18 d", "24 d", "30 d"]),
    ],
)
def test_the_time_axis_has_a_few_ticks_in_round_units(span, labels):
    step = tick_step(span)
    ticks = [tick_label(i * step, step) for i in range(int(span / step) + 1)]
    assert ticks == labels


def test_values_are_cut_for_a_page_with_their_whole_size():
    assert excerpt({"a": [1, 2]}).text == '{"a": [1, 2]}'
    assert not excerpt({"a": [1, 2]}).cut
    long = excerpt("\N{EURO SIGN}" * 5000)
    assert long.text == '"' + "\N{EURO SIGN}" * 1999
    assert long.note == "15.0 kB, truncated"
    assert excerpt("\udc80").text == '"\\udc80"'
    assert (
        excerpt(datetime(2026, 12, 5, tzinfo=UTC)).text == '"2026-12-05 00:00:00+00:00"'
    )
    assert [byte_size(n) for n in (999, 12_400, 3_100_000)] == [
        "999 B",
        "12.4 kB",
        "3.1 MB",
    ]
