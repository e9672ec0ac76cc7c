"""PostgreSQL's notifications of changed workflows, heard as a console hears them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

from celeriac.web.changes import CHANNEL, TAKE_LEASE

#: Seconds a test waits for a notification or a page's event.
SOON = 15.0

EVENTS = sa.table(
    "celeriac_events",
    sa.column("workflow_id"),
    sa.column("to_state"),
    sa.column("at"),
)


def event(workflow_id: str) -> dict[str, object]:
    """A workflow's event row, as a state change writes it."""
    return {"workflow_id": workflow_id, "to_state": "IN_PROGRESS", "at": sa.func.now()}


def write_event(db: sa.Engine, workflow_id: str) -> None:
    """Commit one event of ``workflow_id``."""
    with db.begin() as conn:
        conn.execute(EVENTS.insert().values([event(workflow_id)]))


@contextmanager
def notifications(
    url: str, lease_seconds: float | None = 60.0
) -> Iterator[Callable[[str], list[str]]]:
    """The payloads on the channel, read up to and with a given one.

    Listening as a console does, with a lease of ``lease_seconds`` from now
    (negative: one that lapsed; None: without a lease).
    """
    libpq = sa.make_url(url).set(drivername="postgresql")
    with psycopg.connect(
        libpq.render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        lease = {"id": f"test-{uuid.uuid4().hex}", "seconds": lease_seconds}
        if lease_seconds is not None:
            conn.execute(TAKE_LEASE, lease)

        def until(last: str) -> list[str]:
            got = []
            for notice in conn.notifies(timeout=SOON):
                got.append(notice.payload)
                if notice.payload == last:
                    return got
            raise AssertionError(f"no notification {last!r} in {SOON} s: {got}")

        try:
            yield until
        finally:
            if lease_seconds is not None:
                conn.execute("DELETE FROM celeriac_listeners WHERE id = %(id)s", lease)
