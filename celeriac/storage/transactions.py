"""The transactions every part of the store runs in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from celeriac.storage import event_log


class StoreBase:
    """A database, and the two kinds of transaction the store runs on it."""

    def __init__(self, db: sa.Engine) -> None:
        self.db = db

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.db.begin() as conn:
            event_log.start_events(conn)
            yield conn
            event_log.write_events(conn)

    @contextmanager
    def _autocommit(self) -> Iterator[sa.Connection]:
        """A connection that commits each statement as it runs.

        A transaction of one statement then costs one round trip: no
        ``BEGIN`` and no ``COMMIT`` go to the server on their own.
        """
        with self.db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with (
            self.db.connect().execution_options(celeriac_read_only=True) as conn,
            conn.begin(),
        ):
            yield conn
