"""Finish notices: wake the callers of ``Workflow.get()`` when a workflow ends.

``get()`` reads the workflow's state, then waits for a notice or for its
polling delay. A notice comes from this process (the engine announces the
state changes it makes itself: the embedded worker) and, on PostgreSQL, from
any process: the transaction that finishes a workflow sends ``NOTIFY``, which
the server delivers at commit to a listening connection here. Polling stays
the fallback, so a lost notice costs at most one polling delay.
"""

from __future__ import annotations

import logging
import os
import threading

import sqlalchemy as sa

from celeriac.storage.database import CONNECT_TIMEOUT

logger = logging.getLogger("celeriac.storage")

#: The PostgreSQL channel the notices go to; the payload is the workflow id.
CHANNEL = "celeriac_finished"
#: How often the listener looks up from the server to see if it must stop.
_POLL_SECONDS = 1.0


def notify_finished(conn: sa.Connection, workflow_id: str) -> None:
    """Inside a transaction: announce, when it commits, that a workflow ended."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, workflow_id)))


class Finishes:
    """A count of workflow ends seen by this process, and a way to wait for more."""

    def __init__(self, db: sa.Engine) -> None:
        self._db = db
        self._changed = threading.Condition()
        self._count = 0
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._listener_pid = 0

    def announce(self) -> None:
        """A workflow ended: wake every waiter."""
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def mark(self) -> int:
        """The count now: take it before reading a state, then ``wait`` on it."""
        return self._count

    def wait(self, mark: int, timeout: float) -> None:
        """Return once a workflow ended after ``mark``, or after ``timeout`` s."""
        self._listen()
        with self._changed:
            self._changed.wait_for(lambda: self._count != mark, timeout)

    def close(self) -> None:
        """Stop listening, after the listener's current wait."""
        self._stop.set()
        listener = self._listener
        if listener is not None and self._listener_pid == os.getpid():
            listener.join()

    def _listen(self) -> None:
        """Start the PostgreSQL listener, once per process."""
        if self._db.dialect.name != "postgresql" or self._stop.is_set():
            return
        with self._changed:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._listener = threading.Thread(
                target=self._run, name="celeriac-finishes", daemon=True
            )
            self._listener.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_once()
            except Exception as exc:  # the server went away: polling covers it
                logger.debug("finish notices interrupted: %s", exc)
                self._stop.wait(_POLL_SECONDS)

    def _listen_once(self) -> None:
        """One connection: LISTEN, then announce every notice until told to stop."""
        import psycopg  # the postgres extra; only PostgreSQL engines get here

        args, params = self._db.dialect.create_connect_args(self._db.url)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        with psycopg.connect(*args, autocommit=True, **params) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=_POLL_SECONDS):
                    self.announce()
