"""Servers, databases and worker processes for the benchmarks.

The servers come from ``tests/servers.py`` exactly as the tests get them:
``CELERIAC_TEST_DATABASE_URL`` / ``CELERIAC_TEST_REDIS_URL`` if set, else a
throwaway PostgreSQL and Redis started from the installed binaries on free
loopback ports. The worker processes are ``tests/workers.py``'s.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import sqlalchemy as sa
from _pytest.outcomes import OutcomeException

from benchmarks.app import Bench, build
from celeriac.storage import connect
from celeriac.storage.migrate import upgrade
from tests.servers import (
    LocalServer,
    Server,
    create_database,
    drop_database,
    local_postgres,
    local_redis,
    postgres_container,
    provide,
    redis_container,
)
from tests.workers import Workers

ROOT = Path(__file__).resolve().parents[1]


class Unavailable(Exception):
    """A server the benchmark needs could not be had."""


@dataclass
class System:
    """One way of running canvases: an app here, its worker processes there."""

    name: str
    bench: Bench
    workers: Workers
    env: dict[str, str]
    sql_key: str | None = None
    names: list[str] = field(default_factory=list)

    @property
    def native(self) -> bool:
        """Whether Celery itself drives the canvases."""
        return self.bench.engine is None

    def start(self, count: int = 1) -> list[str]:
        """Start ``count`` more worker processes; their names once they answer."""
        started = self.workers.start(count)
        self.names.extend(started)
        return started

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` and its pool processes."""
        self.workers.kill(name)
        self.names.remove(name)

    def stop(self) -> None:
        """Warm shutdown of every worker of this system."""
        self.workers.stop()
        self.names.clear()


class Harness:
    """The run's servers, databases and systems; ``close()`` releases them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.run_id = uuid.uuid4().hex[:8]
        self._stack = ExitStack()
        self._databases: list[str] = []
        self._systems: list[System] = []
        self.postgres: Server
        self.redis: Server
        self.broker_url = ""
        self.results_url = ""
        self.durable = False

    # -- servers ------------------------------------------------------------

    def start_servers(
        self, durable: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        """PostgreSQL and Redis, as the tests get them.

        A throwaway PostgreSQL runs with autovacuum (the tests turn it off,
        since it would get in the way of cloning their template database),
        with ``durable`` also with ``fsync`` and full-page writes on, and
        with ``settings`` (server settings by name) on top.
        """

        def postgres() -> LocalServer:
            server = local_postgres()
            options = {"autovacuum": "on"}
            if durable:
                options.update(fsync="on", full_page_writes="on")
            options.update(settings or {})
            for key, value in options.items():  # later options win
                server.command += ["-c", f"{key}={value}"]
            return server

        self.durable = durable
        self.postgres = self._server(
            "postgres", "CELERIAC_TEST_DATABASE_URL", postgres_container, postgres
        )
        self.redis = self._server(
            "redis", "CELERIAC_TEST_REDIS_URL", redis_container, local_redis
        )
        self.broker_url = self.redis.url
        # Celery's Redis result backend: the same server, the next database
        parts = urlsplit(self.redis.url)
        number = int(parts.path.strip("/") or 0) + 1
        self.results_url = urlunsplit(parts._replace(path=f"/{number}"))

    def _server(self, name: str, variable: str, container: Any, local: Any) -> Server:
        servers: Iterator[Server] = provide(name, variable, container, local)
        try:
            server = next(servers)
        except OutcomeException as exc:  # tests.servers skips or fails a test
            raise Unavailable(str(exc.msg or exc)) from None
        self._stack.callback(servers.close)  # type: ignore[attr-defined]
        return server

    def redis_client(self) -> redis.Redis:
        """A client of the broker's Redis database."""
        client = redis.Redis.from_url(self.broker_url)
        self._stack.callback(client.close)
        return client

    # -- databases ------------------------------------------------------------

    def database(self, purpose: str, migrate: bool = True) -> str:
        """A new PostgreSQL database for this run (celeriac's schema if ``migrate``)."""
        name = f"bench_{purpose}_{self.run_id}"
        url = create_database(self.postgres, name)
        self._databases.append(name)
        if migrate:
            db = connect(url)
            try:
                upgrade(db)
            finally:
                db.dispose()
        return url

    def drop(self, url: str) -> None:
        """Drop a database made by ``database()``."""
        name = str(sa.make_url(url).database)
        drop_database(self.postgres, name)
        self._databases.remove(name)

    def postgres_version(self) -> str:
        """The server's ``server_version``."""
        db = sa.create_engine(self.postgres.url, poolclass=sa.pool.NullPool)
        try:
            with db.connect() as conn:
                return str(conn.exec_driver_sql("SHOW server_version").scalar())
        finally:
            db.dispose()

    def redis_version(self) -> str:
        """The Redis server's version."""
        return str(self.redis_client().info("server").get("redis_version", "?"))

    # -- systems ----------------------------------------------------------------

    def system(
        self,
        name: str,
        mode: str,
        result_backend: str | None = None,
        database_url: str | None = None,
        engine_options: dict[str, Any] | None = None,
        count_sql: bool = False,
        profile: Path | None = None,
        prefix: str | None = None,
        publish_times: bool = False,
    ) -> System:
        """An app of ``mode`` on its own queue, and the env of its workers.

        ``publish_times``: the workers record when they publish each message.
        """
        queue = f"bench-{name}-{self.run_id}"
        bench = build(
            mode, self.broker_url, queue, result_backend, database_url, engine_options
        )
        sql_key = f"bench:sql:{queue}" if count_sql else None
        env = self.child_env()
        env.update(
            BENCH_MODE=mode,
            BENCH_BROKER_URL=self.broker_url,
            BENCH_QUEUE=queue,
            BENCH_ENGINE_OPTIONS=json.dumps(engine_options or {}),
        )
        if result_backend:
            env["BENCH_RESULT_BACKEND"] = result_backend
        if database_url:
            env["CELERIAC_DATABASE_URL"] = database_url
        if sql_key:
            env["BENCH_COUNT_SQL"] = sql_key
        if publish_times:
            env["BENCH_PUBLISH_TIMES"] = "1"
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            env["BENCH_PROFILE"] = str(profile)
        workers = Workers(
            bench.app,
            env,
            self.logs,
            module="benchmarks.worker",
            prefix=prefix or f"{name}_",
            concurrency=2,
            loglevel="WARNING",
        )
        system = System(name, bench, workers, env, sql_key)
        self._systems.append(system)
        return system

    def child_env(self) -> dict[str, str]:
        """The environment of a child process: ours, without celeriac's settings."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BENCH_", "CELERIAC_"))
        }
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env["PYTHONPATH"] = path
        return env

    def close(self) -> None:
        """Stop every worker, drop every database, stop the servers."""
        for system in self._systems:
            try:
                system.stop()
            finally:
                system.bench.close()
        for name in list(self._databases):
            drop_database(self.postgres, name)
        self._stack.close()
