"""The console in a real browser: Debian's chromium, driven by Playwright.

Chromium is launched from its Debian package (``executable_path``); nothing
is downloaded. Without it the tests skip, and fail when ``CI`` is set.
Screenshots go to ``docs/images/`` when ``CELERIAC_SCREENSHOTS`` is set (for
docs/web.md), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from axe_playwright_python.sync_playwright import Axe
from celery import chain, group

from tests.servers import unavailable
from tests.tasks import make_app

DOCS_IMAGES = Path(__file__).parents[2] / "docs" / "images"
#: Seconds a live change may take to show (the stream polls every 0.05 s).
LIVE = 15_000


@pytest.fixture
def app():
    """The test tasks, and one that fails on its first call only."""
    app = make_app()
    calls: list[int] = []
    lock = threading.Lock()

    @app.task(name="t.fails_once", shared=False)
    def fails_once(value: int) -> int:
        with lock:
            calls.append(value)
            first = len(calls) == 1
        if first:
            raise RuntimeError("the first call fails")
        return value

    return app


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        unavailable("chromium is not installed (bash scripts/system-packages)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE)
    yield page
    context.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    return DOCS_IMAGES if os.environ.get("CELERIAC_SCREENSHOTS") else tmp_path


def serious(page) -> list[str]:
    """axe-core's serious and critical violations on the page, by rule."""
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def fill_of(page, node_id: str) -> str:
    return page.locator(f'g[data-node="{node_id}"]').get_attribute("data-state")


def test_filter_open_pause_resume_live(engine, tasks, worker, live_url, page, shots):
    # the first step runs long enough to be paused while it runs, even on a
    # loaded machine (4 s were once gone before the click reached the server)
    steps = chain(
        tasks.sleep.si(8, 1),
        group(tasks.sleep.si(0.3, 2), tasks.sleep.si(0.3, 3)),
        tasks.sleep.si(0.2, 4),
    )
    running = engine.submit(steps, name="nightly-report")
    done = engine.submit(tasks.add.s(1, 2), name="quick")
    stopped = engine.submit(tasks.sleep.si(5), name="stopped")
    engine.cancel(stopped.id)

    page.goto(f"{live_url}/")
    page.locator("select[name=state]").select_option("CANCELLED")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/?state=CANCELLED**")
    assert page.locator("tbody tr").count() == 1
    assert page.locator(f'a[href="/workflows/{stopped.id}"]').count() == 1
    assert done.state == "COMPLETED"

    page.goto(f"{live_url}/?state=IN_PROGRESS")
    assert page.locator(f'a[href="/workflows/{done.id}"]').count() == 0
    page.screenshot(path=str(shots / "web-list.png"))
    assert serious(page) == []
    page.locator(f'a[href="/workflows/{running.id}"]').click()
    page.wait_for_url(f"**/workflows/{running.id}")

    first = running.nodes()[0]
    page.wait_for_function(
        f"document.querySelector('g[data-node=\"{first.id}\"]')"
        ".dataset.state === 'RUNNING'"
    )
    page.screenshot(path=str(shots / "web-workflow.png"))
    assert serious(page) == []
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Pause").click()
    state = page.locator("#workflow-state")
    playwright_api.expect(state).to_have_text("REQUESTING_PAUSE", timeout=LIVE)
    playwright_api.expect(page.locator(".banner")).to_contain_text(
        "node(s) still running"
    )
    playwright_api.expect(state).to_have_text("PAUSED", timeout=LIVE)
    assert fill_of(page, first.id) == "SUCCEEDED"
    assert page.evaluate("window.notReloaded") is True

    page.get_by_role("button", name="Resume").click()
    playwright_api.expect(state).to_have_text("COMPLETED", timeout=LIVE)
    assert page.evaluate("window.notReloaded") is True
    nodes = running.nodes()
    page.wait_for_function(
        f"document.querySelector('g[data-node=\"{nodes[-1].id}\"]')"
        ".dataset.state === 'SUCCEEDED'"
    )
    assert {fill_of(page, n.id) for n in nodes} == {"SUCCEEDED"}


def test_retry_a_failed_workflow_from_its_page(
    engine, app, worker, live_url, page, shots
):
    workflow = engine.submit(app.tasks["t.fails_once"].s(7), name="flaky")
    with pytest.raises(Exception, match="the first call fails"):
        workflow.get(timeout=15)
    page.goto(f"{live_url}/workflows/{workflow.id}")
    node = workflow.nodes()[0]
    assert fill_of(page, node.id) == "FAILED"
    page.get_by_role("button", name="Retry from failure").click()
    playwright_api.expect(page.locator("#workflow-state")).to_have_text(
        "COMPLETED", timeout=LIVE
    )
    assert workflow.get(timeout=5) == 7
    # the node's row of the timeline opens its panel: arguments, attempts
    bars = page.locator(f'g[data-row="{node.id}"] g.bar')
    playwright_api.expect(bars).to_have_count(2)
    assert bars.first.get_attribute("data-state") == "FAILED"
    page.locator(f'g[data-row="{node.id}"]').click()
    panel = page.locator("#node-panel")
    playwright_api.expect(panel).to_contain_text("RuntimeError: the first call fails")
    assert panel.locator("table.attempts tbody tr").count() == 2
    values = panel.locator("pre.value")
    assert values.all_inner_texts() == ["[7]", "{}", "7"]
    page.screenshot(path=str(shots / "web-node.png"))
    assert serious(page) == []


def test_bulk_cancel_by_filter(engine, tasks, live_url, page):
    doomed = [engine.submit(tasks.add.s(i, i), name="doomed") for i in range(3)]
    kept = engine.submit(tasks.add.s(0, 0), name="kept")
    page.goto(f"{live_url}/?name=doomed")
    page.locator("select[name=action]").select_option("cancel")
    page.get_by_label("every workflow matching the filter").check()
    page.get_by_role("button", name="Count first").click()
    playwright_api.expect(page.locator("#eligible")).to_have_text("3")
    assert [w.state for w in doomed] == ["IN_PROGRESS"] * 3
    page.get_by_role("button", name="Yes, cancel them").click()
    playwright_api.expect(page.locator("#changed")).to_have_text("3")
    assert [w.state for w in doomed] == ["CANCELLED"] * 3
    assert kept.state == "IN_PROGRESS"
