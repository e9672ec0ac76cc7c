"""The HTML pages, read as a user would: what they show, what the forms do."""

from __future__ import annotations

import html
import re
import time

import sqlalchemy as sa
from celery import chain, group

from celeriac.engine.compiler import compile_canvas
from celeriac.web.drawing import COLLAPSE_ABOVE
from tests.waiting import wait_for


def boxes(page: str) -> dict[str, str]:
    """The drawn nodes of a workflow page: node id -> state."""
    found = re.findall(
        r'data-state="(\w+)" data-task="[^"]*" data-node="([^"]+)"', page
    )
    return {node: state for state, node in found}


def test_list_page_filters_by_state_and_keeps_the_filter_in_links(
    engine, tasks, client
):
    running = engine.submit(tasks.add.s(1, 1), name="alpha")
    cancelled = engine.submit(tasks.add.s(2, 2), name="beta")
    engine.cancel(cancelled.id)
    page = client.get("/?state=CANCELLED").text
    assert cancelled.id[:8] in page
    assert running.id[:8] not in page
    assert '<option value="CANCELLED" selected>' in page
    assert 'sse-connect="/events/list?state=CANCELLED"' in page
    everything = client.get("/").text
    assert running.id[:8] in everything
    assert cancelled.id[:8] in everything
    assert re.search(r'data-count="CANCELLED">1<', everything)


def test_list_page_pages_by_cursor(engine, tasks, client):
    made = [engine.submit(tasks.add.s(i, i), name="many") for i in range(3)]
    first = client.get("/?name=many&limit=2").text
    (link,) = re.findall(r'href="(/\?[^"]+)" rel="next"', first)
    second = client.get(link.replace("&amp;", "&")).text
    assert made[0].id[:8] in second
    assert made[2].id[:8] not in second
    assert "name=many" in link


def test_workflow_page_draws_each_node_in_its_state(engine, tasks, client, worker):
    workflow = engine.submit(
        chain(tasks.add.s(1, 1), group(tasks.add.s(1), tasks.boom.s()))
    )
    wait_for(lambda: workflow.state == "FAILED")
    page = client.get(f"/workflows/{workflow.id}").text
    drawn = boxes(page)
    nodes = {n.id: n.state for n in workflow.nodes()}
    assert {node: drawn[node] for node in nodes} == nodes
    assert sorted(nodes.values()) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert "Retry from failure</button>" in page
    assert "Pause</button>" not in page
    assert "ValueError: boom [2]" in page


def test_node_panel_shows_attempts_traceback_and_errbacks(
    engine, tasks, client, worker
):
    failing = tasks.boom.s().on_error(tasks.on_error.s())
    workflow = engine.submit(failing)
    wait_for(lambda: workflow.state == "FAILED")
    node = workflow.nodes()[0]
    panel = client.get(
        f"/workflows/{workflow.id}/nodes/{node.id}", headers={"HX-Request": "true"}
    ).text
    assert "<html" not in panel  # a fragment, for the page's side panel
    assert "t.boom" in panel
    assert "ValueError: boom []" in panel
    assert "Traceback (most recent call last)" in panel
    assert "Errbacks" in panel
    assert "t.on_error" in panel
    whole = client.get(f"/workflows/{workflow.id}/nodes/{node.id}").text
    assert whole.startswith("<!doctype html>")
    assert client.get(f"/workflows/{workflow.id}/nodes/nope").status_code == 404


def test_node_panel_shows_arguments_and_result_cut_with_their_size(
    engine, tasks, client, worker
):
    long = "\N{LATIN SMALL LETTER E WITH ACUTE}" * 6000  # 12,002 bytes as JSON
    workflow = engine.submit(
        group(tasks.identity.s(long), tasks.collect.s(7, "seven", colour="green"))
    )
    wait_for(lambda: workflow.state == "COMPLETED")
    echo, collect = workflow.nodes()

    def panel(node_id: str) -> str:
        answer = client.get(f"/workflows/{workflow.id}/nodes/{node_id}")
        return html.unescape(answer.text)

    small = panel(collect.id)
    assert "<dt>Task</dt><dd>t.collect</dd>" in small
    assert '<pre class="value">[7, "seven"]</pre>' in small
    assert '<pre class="value">{"colour": "green"}</pre>' in small
    assert '<pre class="value">[[7, "seven"], {"colour": "green"}]</pre>' in small
    assert "truncated" not in small
    cut = panel(echo.id)
    shown = re.findall(r'<pre class="value">([^<]*)</pre>', cut)
    assert shown == ['["' + long[:1998], "{}", '"' + long[:1999]]
    assert cut.count("12.0 kB, truncated") == 2  # the args and the result


def test_timeline_draws_a_bar_per_attempt_with_its_tooltip(
    engine, tasks, client, worker
):
    workflow = engine.submit(
        chain(tasks.add.s(1, 1), group(tasks.add.s(1), tasks.boom.s()))
    )
    wait_for(lambda: workflow.state == "FAILED")
    page = client.get(f"/workflows/{workflow.id}").text
    bars = re.findall(
        r'<g class="bar fill-(\w+)" data-state="(\w+)"><title>([^<]*)</title>', page
    )
    nodes = workflow.nodes()
    assert sorted((fill, state) for fill, state, _ in bars) == [
        ("FAILED", "FAILED"),
        ("SUCCEEDED", "SUCCEEDED"),
        ("SUCCEEDED", "SUCCEEDED"),
    ]
    titles = sorted(re.sub(r"[\d.]+ s$", "", title) for _, _, title in bars)
    assert titles == sorted(
        f"{n.task} (node {n.position}), attempt 1: {n.state}, " for n in nodes
    )
    assert len(re.findall(r'<g class="row" data-row="', page)) == 3
    assert re.search(r'<text class="tick" [^>]*>0 s</text>', page)
    assert "The timeline as a table" in page  # the chart's text alternative


def test_pause_form_needs_its_token_and_records_who_asked(engine, tasks, client):
    workflow = engine.submit(tasks.add.s(1, 1))
    page = client.get(f"/workflows/{workflow.id}").text
    (token,) = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))
    answer = client.post(
        f"/workflows/{workflow.id}/pause",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/workflows/{workflow.id}"
    assert workflow.state == "PAUSED"
    refused = client.post(f"/workflows/{workflow.id}/pause", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "cannot pause" in refused.text


def test_bulk_form_counts_then_cancels_the_matching_workflows(engine, tasks, client):
    doomed = [engine.submit(tasks.add.s(i, i), name="doomed") for i in range(2)]
    kept = engine.submit(tasks.add.s(0, 0), name="kept")
    form = {
        "csrf_token": client.cookies["celeriac_csrf"],
        "name": "doomed",
        "action": "cancel",
        "scope": "matching",
    }
    dry = client.post("/bulk", data=form).text
    assert re.search(r'id="eligible">2<', dry)
    assert doomed[0].state == "IN_PROGRESS"
    done = client.post("/bulk", data={**form, "confirm": "1"}).text
    assert re.search(r'id="changed">2<', done)
    assert [w.state for w in doomed] == ["CANCELLED", "CANCELLED"]
    assert kept.state == "IN_PROGRESS"


def test_a_100000_node_workflow_page_is_drawn_collapsed(engine, tasks, client):
    """One group of 100,000 stored by the submit path (nothing published)."""
    canvas = chain(tasks.add.s(1, 1), group(tasks.add.s(i) for i in range(100_000)))
    new = compile_canvas(engine.app, canvas, (), None, "big", None, {})
    engine._store.insert_workflow(new)
    if engine._db.dialect.name == "postgresql":
        # the statistics autovacuum gathers after a large insert (the test
        # servers run without autovacuum): without them the planner takes
        # the just-filled tables for empty ones
        with engine._db.begin() as conn:
            conn.execute(sa.text("ANALYZE celeriac_nodes, celeriac_edges"))
    started = time.perf_counter()
    page = client.get(f"/workflows/{new.id}")
    elapsed = time.perf_counter() - started
    print(f"100,000-node page: {elapsed:.2f} s, {len(page.content)} bytes")
    assert page.status_code == 200
    drawn = re.findall(r'<g class="node fill-(\w+)"', page.text)
    assert 1 < len(drawn) < COLLAPSE_ABOVE
    assert "t.add \N{MULTIPLICATION SIGN}100000" in page.text
    assert len(page.content) < 200_000
