"""PostgreSQL's notifications of changed workflows, fanned out to the live streams.

When a transaction that changed a workflow or its nodes commits, PostgreSQL
sends ``NOTIFY celeriac_changes, '<workflow id>'`` (revision 0012), but only
while a console holds a live lease in ``celeriac_listeners`` (revision 0015):
with no console open, nothing is sent. One ``Changes`` per console listens
on one connection, however many pages are open, renews its lease on it, and
wakes the streams watching that workflow and those watching every workflow
(the list). While it cannot listen (SQLite, or the connection is down)
``listening`` is False and the streams poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger("celeriac.web")

#: The channel revision 0012's trigger notifies, a workflow id as payload.
CHANNEL = "celeriac_changes"
#: Seconds before the first try to listen again; doubled, up to the second.
RETRY_DELAYS = (1.0, 30.0)
#: The listening connection's name in ``pg_stat_activity``, and TCP
#: keepalives: a connection that died silently is noticed within a minute.
CONNECTION = {
    "application_name": "celeriac-web",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


#: Seconds a lease lasts, and how often a listening console renews it: a
#: console that died stops the notifications within ``LEASE_SECONDS``.
LEASE_SECONDS = 60
RENEW_SECONDS = 10.0
#: Take or renew a lease (``id``), from the database's clock.
TAKE_LEASE = (
    "INSERT INTO celeriac_listeners (id, until) "
    "VALUES (%(id)s, now() + make_interval(secs => %(seconds)s)) "
    "ON CONFLICT (id) DO UPDATE SET until = excluded.until"
)
#: The leases of consoles that stopped without a word.
DROP_LAPSED_LEASES = "DELETE FROM celeriac_listeners WHERE until < now()"

#: Whether the database sends the notifications (revisions 0012 and 0015).
HAS_TRIGGER = (
    "SELECT 1 FROM pg_trigger WHERE tgname = 'celeriac_events_notify' "
    "AND to_regclass('celeriac_listeners') IS NOT NULL"
)
NO_TRIGGER = (
    "live pages: the database sends no notifications (schema older than "
    "revision 0015: run `celeriac db upgrade`); they poll"
)


class Watch:
    """One stream's wake-up: a change of its workflow (of any, for None)."""

    def __init__(self, workflow_id: str | None) -> None:
        self.workflow_id = workflow_id
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """A change was announced."""
        self._changed.set()

    def clear(self) -> None:
        """The stream looks now: what was announced so far is seen."""
        self._changed.clear()

    async def wait(self, seconds: float) -> bool:
        """Whether a change was announced, waiting at most ``seconds``."""
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            return False
        return True


class Changes:
    """The console's listening connection and the streams it wakes."""

    def __init__(self, conninfo: str | None) -> None:
        self._conninfo = conninfo
        self._watches: dict[str | None, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        #: this console's row in ``celeriac_listeners``
        self._lease = uuid.uuid4().hex
        #: whether a notification would reach the streams now
        self.listening = False

    @classmethod
    def for_url(cls, database_url: str) -> Changes:
        """Listening on a PostgreSQL database; on another, never."""
        url = sa.make_url(database_url)
        if not url.drivername.startswith("postgres"):
            return cls(None)
        libpq = url.set(drivername="postgresql").update_query_dict(
            {name: value for name, value in CONNECTION.items() if name not in url.query}
        )
        return cls(libpq.render_as_string(hide_password=False))

    def start(self) -> None:
        """Listen from the running event loop, unless that is done already."""
        if self._conninfo is None:
            return
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._listen(self._conninfo))

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def watch(self, workflow_id: str | None) -> Iterator[Watch]:
        """A stream's ``Watch`` while it is open; listening starts with the first."""
        self.start()
        watch = Watch(workflow_id)
        self._watches.setdefault(workflow_id, set()).add(watch)
        try:
            yield watch
        finally:
            watching = self._watches[workflow_id]
            watching.discard(watch)
            if not watching:
                del self._watches[workflow_id]

    async def _renew_lease(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Keep the notifications coming for ``LEASE_SECONDS`` from now."""
        await conn.execute(DROP_LAPSED_LEASES)
        await conn.execute(TAKE_LEASE, {"id": self._lease, "seconds": LEASE_SECONDS})

    def _wake(self, workflow_id: str) -> None:
        for key in (workflow_id, None):
            for watch in self._watches.get(key, ()):
                watch.wake()

    def _set_listening(self, listening: bool) -> None:
        """On a change, every stream looks again: at what it may have missed."""
        if listening == self.listening:
            return
        self.listening = listening
        for watching in self._watches.values():
            for watch in watching:
                watch.wake()

    async def _listen(self, conninfo: str) -> None:
        import psycopg

        delay, most = RETRY_DELAYS
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if not await (await conn.execute(HAS_TRIGGER)).fetchone():
                        logger.warning(NO_TRIGGER)
                        return  # the next stream to open looks again
                    await self._renew_lease(conn)
                    self._set_listening(True)
                    logger.info("live pages: listening on %s", CHANNEL)
                    delay = RETRY_DELAYS[0]
                    while True:
                        async for notice in conn.notifies(timeout=RENEW_SECONDS):
                            self._wake(notice.payload)
                        await self._renew_lease(conn)
            except psycopg.Error as exc:
                reason = str(exc).strip().partition("\n")[0]
                logger.warning(
                    "live pages: cannot listen on %s (%s); they poll until "
                    "it is back, next try in %.0f s",
                    CHANNEL,
                    reason,
                    delay,
                )
            finally:
                self._set_listening(False)
            await asyncio.sleep(delay)
            delay = min(2 * delay, most)
