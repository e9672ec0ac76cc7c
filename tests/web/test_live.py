"""Live pages: PostgreSQL's notifications wake the streams; SQLite polls."""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.routing import Mount

from celeriac.storage import connect
from celeriac.web import changes, create_app
from celeriac.web.auth import Credentials
from celeriac.web.changes import CONNECTION, Changes
from tests.notifications import EVENTS, SOON, event, notifications, write_event
from tests.waiting import wait_for
from tests.web.conftest import serving

#: Both poll intervals on PostgreSQL: an update that comes sooner than this
#: was woken by a notification.
LONG_POLL = 60.0
# a test waits ``SOON`` seconds for an event: well under ``LONG_POLL``


@pytest.fixture
def web_app(engine):
    """Polls every 0.05 s on SQLite; on PostgreSQL only every minute."""
    postgres = engine.database_url.startswith("postgres")
    return create_app(
        engine,
        credentials=Credentials(),
        poll_interval=LONG_POLL if postgres else 0.05,
        safety_poll_interval=LONG_POLL,
    )


class Stream:
    """An open event stream, read in a thread: its events as they come."""

    def __init__(self, url: str) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        threading.Thread(target=self._read, args=(url,), daemon=True).start()

    def _read(self, url: str) -> None:
        event, data = "", []
        try:
            with httpx.stream("GET", url, timeout=None) as answer:
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data.append(line.removeprefix("data: "))
                    elif not line and event:
                        self.events.put((event, "\n".join(data)))
                        event, data = "", []
        except httpx.HTTPError:
            pass  # the server stopped at the test's end

    def next(self, event: str, shows: Callable[[str], bool]) -> str:
        """The first ``event`` whose data ``shows``, within ``SOON`` seconds."""
        while True:
            name, data = self.events.get(timeout=SOON)
            if name == event and shows(data):
                return data


def state_of(workflow_id: str, state: str) -> Callable[[str], bool]:
    """Whether a fragment shows the workflow in ``state``."""
    return lambda html: workflow_id[:8] in html and state in html


def test_a_committed_change_reaches_the_open_streams(engine, tasks, live_url):
    workflow = engine.submit(tasks.add.s(1, 1))
    page = Stream(f"{live_url}/events/workflows/{workflow.id}")
    page.next("summary", lambda html: "IN_PROGRESS" in html)
    listing = Stream(f"{live_url}/events/list")
    listing.next("rows", state_of(workflow.id, "IN_PROGRESS"))
    engine.cancel(workflow.id)
    page.next("summary", lambda html: "CANCELLED" in html)
    listing.next("rows", state_of(workflow.id, "CANCELLED"))
    other = engine.submit(tasks.add.s(2, 2))
    listing.next("rows", state_of(other.id, "IN_PROGRESS"))


def test_a_later_list_page_is_live_too(engine, tasks, live_url):
    made = [engine.submit(tasks.add.s(i, i), name="many") for i in range(3)]
    first = httpx.get(f"{live_url}/?name=many&limit=2").text
    (link,) = re.findall(r'href="(/\?[^"]+)" rel="next"', first)
    second = httpx.get(live_url + link.replace("&amp;", "&")).text
    (events,) = re.findall(r'sse-connect="([^"]+)"', second)
    assert "after=" in events
    rows = Stream(live_url + events.replace("&amp;", "&"))
    shown = rows.next("rows", state_of(made[0].id, "IN_PROGRESS"))
    assert made[2].id[:8] not in shown
    engine.cancel(made[0].id)
    rows.next("rows", state_of(made[0].id, "CANCELLED"))


def listeners(url: str) -> list[int]:
    """The backends of the listening connection of a console on ``url``."""
    db = connect(url)
    try:
        with db.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = "
                    "current_database() AND application_name = :name"
                ),
                {"name": CONNECTION["application_name"]},
            )
            return list(found.scalars())
    finally:
        db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_listener_that_comes_back_after_its_connection_is_killed(
    engine, tasks, live_url, postgres_url
):
    workflow = engine.submit(tasks.add.s(1, 1))
    page = Stream(f"{live_url}/events/workflows/{workflow.id}")
    page.next("summary", lambda html: "IN_PROGRESS" in html)
    Stream(f"{live_url}/events/list").next("rows", lambda html: True)
    (killed,) = wait_for(lambda: listeners(postgres_url), what="the listener")
    db = connect(postgres_url)
    try:
        with db.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
    finally:
        db.dispose()
    again = wait_for(
        lambda: [pid for pid in listeners(postgres_url) if pid != killed],
        what="the listener to listen again",
    )
    assert len(again) == 1
    engine.pause(workflow.id)
    page.next("summary", lambda html: "PAUSED" in html)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_mounted_console_listens_from_its_first_stream(engine, tasks):
    console = create_app(
        engine,
        credentials=Credentials(),
        poll_interval=LONG_POLL,
        safety_poll_interval=LONG_POLL,
    )
    service = Starlette(routes=[Mount("/celeriac", app=console)])
    workflow = engine.submit(tasks.add.s(1, 1))
    with serving(service, console) as url:
        page = Stream(f"{url}/celeriac/events/workflows/{workflow.id}")
        page.next("summary", lambda html: "IN_PROGRESS" in html)
        engine.cancel(workflow.id)
        page.next("summary", lambda html: "CANCELLED" in html)


@pytest.mark.postgres
def test_a_notification_comes_at_commit_once_per_workflow(postgres_url):
    db = connect(postgres_url)
    try:
        with notifications(postgres_url) as until, db.connect() as pending:
            pending.execute(EVENTS.insert().values([event("uncommitted")]))
            with db.begin() as conn:
                conn.execute(EVENTS.insert().values([event("committed")]))
            assert until("committed") == ["committed"]
            pending.rollback()
            with db.begin() as conn:
                conn.execute(EVENTS.insert().values([event("many")] * 3))
                conn.execute(EVENTS.insert().values([event("many"), event("b")]))
            with db.begin() as conn:
                conn.execute(EVENTS.insert().values([event("last")]))
            assert sorted(until("last")) == ["b", "last", "many"]
    finally:
        db.dispose()


@pytest.mark.postgres
def test_nothing_is_notified_while_no_console_holds_a_live_lease(postgres_url):
    db = connect(postgres_url)
    try:
        with notifications(postgres_url, lease_seconds=None) as heard:
            write_event(db, "no lease")
            with notifications(postgres_url, lease_seconds=-1.0):
                write_event(db, "a lapsed lease")
            with notifications(postgres_url):
                write_event(db, "a live lease")
            write_event(db, "its lease dropped")
            write_event(db, "last")
            with notifications(postgres_url):
                write_event(db, "last")
            assert heard("last") == ["a live lease", "last"]
    finally:
        db.dispose()


def leases(url: str) -> list[tuple[str, bool]]:
    """The rows of ``celeriac_listeners``: id, and whether the lease is live."""
    db = connect(url)
    try:
        with db.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, until > now() FROM celeriac_listeners ORDER BY id"
            )
            return [(lease, live) for lease, live in rows]
    finally:
        db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_console_renews_its_lease_and_drops_lapsed_ones(
    engine, tasks, web_app, postgres_url, monkeypatch
):
    monkeypatch.setattr(changes, "LEASE_SECONDS", 1)
    monkeypatch.setattr(changes, "RENEW_SECONDS", 0.2)
    db = connect(postgres_url)
    try:
        with db.begin() as conn:  # a console that stopped without a word
            conn.exec_driver_sql(
                "INSERT INTO celeriac_listeners "
                "VALUES ('stopped', now() - interval '1 s')"
            )
    finally:
        db.dispose()
    workflow = engine.submit(tasks.add.s(1, 1))
    with serving(web_app, web_app) as url:
        page = Stream(f"{url}/events/workflows/{workflow.id}")
        page.next("summary", lambda html: "IN_PROGRESS" in html)
        # three leases' time: without renewals, the notifications would stop
        time.sleep(3 * changes.LEASE_SECONDS)
        engine.pause(workflow.id)
        page.next("summary", lambda html: "PAUSED" in html)
        ((_, live),) = leases(postgres_url)
        assert live


def test_a_stream_wakes_for_its_workflow_and_the_list_for_any():
    async def woken() -> list[str | None]:
        changes = Changes(None)
        with (
            changes.watch("a") as a,
            changes.watch("b") as b,
            changes.watch(None) as every,
        ):
            changes._wake("a")
            watches = {"a": a, "b": b, None: every}
            return [key for key, watch in watches.items() if await watch.wait(0.01)]

    assert asyncio.run(woken()) == ["a", None]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_schema_without_the_trigger_is_polled(engine, tasks, postgres_url):
    db = connect(postgres_url)
    try:
        # as before revision 0012; later revisions stay (the engine writes them)
        with db.begin() as conn:
            conn.exec_driver_sql(
                "DROP TRIGGER celeriac_events_notify ON celeriac_events"
            )
    finally:
        db.dispose()
    console = create_app(
        engine,
        credentials=Credentials(),
        poll_interval=0.05,
        safety_poll_interval=LONG_POLL,
    )
    workflow = engine.submit(tasks.add.s(1, 1))
    with serving(console, console) as url:
        page = Stream(f"{url}/events/workflows/{workflow.id}")
        page.next("summary", lambda html: "IN_PROGRESS" in html)
        engine.cancel(workflow.id)
        page.next("summary", lambda html: "CANCELLED" in html)
