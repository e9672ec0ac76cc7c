"""The Engine: binds celeriac to a Celery app and a database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from celery import Celery

from celeriac.engine.hooks import WorkerHooks, engine_of, refuse_bound
from celeriac.engine.liveness import Liveness
from celeriac.engine.quiet import quiet_missing_backend
from celeriac.engine.reading import Reading
from celeriac.engine.recovery import RecoveryLoop
from celeriac.engine.replacement import MAX_REPLACEMENT_NODES
from celeriac.engine.submission import Submission
from celeriac.engine.upkeep import Upkeep
from celeriac.errors import AppInUse
from celeriac.settings import ByteCount, Count, Interval, Seconds, checked_options
from celeriac.settings import database_url as resolve_database_url
from celeriac.states import OnFailure
from celeriac.storage import Store, connect, migrate
from celeriac.storage.database import RETRY_SECONDS, checkpoint
from celeriac.storage.finishes import Finishes
from celeriac.storage.values import MAX_RESULT_BYTES


class Engine(Submission, Upkeep, Reading):
    """A persistent workflow engine for one Celery app.

    Args:
        app: The Celery app whose tasks the workflows run.
        database_url: SQLAlchemy URL; defaults to ``$CELERIAC_DATABASE_URL``,
            then ``sqlite:///celeriac.db``.

    The keyword-only options are described once, in docs/api.md (Engine
    options); each is checked against its annotation when the engine is
    built (``TypeError`` or ``ValueError`` naming it), and an unknown one is
    a ``TypeError`` naming it.

    Building the engine in the module a worker imports is all a worker needs:
    the hooks that record each node's outcome are installed on ``app``. One
    live engine per app: another raises ``AppInUse`` until this one is closed.

    Its methods come from one mixin per job: ``submission`` (submit),
    ``control`` (pause, resume, cancel, retry), ``reading`` (workflow, the
    listings), ``upkeep`` (recover, purge), ``outcomes`` (what the worker
    hooks record) and ``publishing``.
    """

    @checked_options
    def __init__(
        self,
        app: Celery,
        database_url: str | None = None,
        *,
        auto_migrate: bool | None = None,
        recovery_delay: Seconds = 60.0,
        recovery_interval: Interval = 30.0,
        heartbeat_interval: Interval = 5.0,
        worker_timeout: Interval = 30.0,
        retry_seconds: Seconds = RETRY_SECONDS,
        max_result_bytes: ByteCount = MAX_RESULT_BYTES,
        max_replacement_nodes: Count = MAX_REPLACEMENT_NODES,
        on_failure: Literal["continue", "stop"] = "continue",
        inline_successor_seconds: Seconds = 1.0,
    ) -> None:
        self.app = app
        self.database_url = resolve_database_url(database_url)
        refuse_bound(app)  # before anything is opened
        self._db = connect(self.database_url, retry_seconds=retry_seconds)
        self._store = Store(self._db)
        self._finishes = Finishes(self._db)
        self.on_failure = OnFailure.named(on_failure)
        self.max_result_bytes = max_result_bytes
        self.max_replacement_nodes = max_replacement_nodes
        self.recovery_delay = recovery_delay
        self.inline_successor_seconds = inline_successor_seconds
        if auto_migrate is None:
            auto_migrate = self._db.dialect.name == "sqlite"
        if auto_migrate:
            self.migrate()
        self._liveness = Liveness(self._store, heartbeat_interval, worker_timeout)
        self._recovery = RecoveryLoop(self, recovery_interval)
        self._hooks = WorkerHooks(self)
        try:
            self._hooks.install()
        except AppInUse:  # another engine was bound meanwhile
            self._db.dispose()
            raise
        quiet_missing_backend()
        self._unreadable = set()

    @staticmethod
    def bound_to(app: Celery) -> Engine | None:
        """The live (not closed) engine built on ``app``, if any."""
        return engine_of(app)

    @property
    def shown_url(self) -> str:
        """The database URL, its password hidden."""
        return self._db.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Undo what the engine installed; stop its threads, close connections.

        Its signal receivers and task gates no longer act for ``app``: another
        engine may be built on it.
        """
        self._hooks.uninstall()
        self._recovery.stop()
        self._liveness.stop()
        self._finishes.close()
        checkpoint(self._db)
        self._db.dispose()

    def migrate(self) -> None:
        """Bring the database schema to the newest revision (Alembic)."""
        migrate.upgrade(self._db)

    def schema_revision(self) -> str | None:
        """The database's schema revision (Alembic's), None when it has none."""
        return migrate.current(self._db)

    @contextmanager
    def embedded_worker(self, concurrency: int = 2, **options: Any) -> Iterator[Any]:
        """Run a real Celery worker in this process (threads) while inside."""
        from celeriac.engine.worker import embedded_worker

        with embedded_worker(self.app, concurrency, **options) as worker:
            # Celery's test worker does not send worker_ready: start recovery here
            self._recovery.start()
            self._hooks.stopping = False
            try:
                yield worker
            finally:
                self._hooks.stopping = True  # a warm shutdown starts nothing new
                self._recovery.stop()
