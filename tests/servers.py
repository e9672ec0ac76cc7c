"""Real PostgreSQL and Redis servers for the tests, and per-test isolation.

Each server comes from the first of:

1. its variable, ``CELERIAC_TEST_DATABASE_URL`` or ``CELERIAC_TEST_REDIS_URL``;
2. a container, when a Docker engine answers (testcontainers, imported lazily);
3. a throwaway process started from the installed binaries, on a free loopback
   port, in a temporary directory that also holds its log.

A server that cannot be had skips the tests that need it, except when ``CI``
is set: there they fail, so that a CI run never passes by skipping.

Isolation: each test gets a PostgreSQL database cloned from a template that is
migrated once per session, and a flushed Redis database. Only throwaway
servers can be stopped and started by a test (``restart()``); a test that
tries it on another server skips, or fails under CI. The teardown of each
test starts them again if a test left them stopped.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from celeriac.settings import normalize_url
from celeriac.storage import connect
from celeriac.storage.migrate import upgrade
from tests.node_events import check_node_events

#: Seconds a server gets to answer after its process started.
START_TIMEOUT = 60.0
#: Lines of a server's log quoted when it fails to start.
LOG_TAIL = 40


class ServerError(Exception):
    """A server binary is installed but the server did not come up."""


def unavailable(reason: str) -> NoReturn:
    """Skip the test that needs a server, or fail it under CI."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# -- server handles ---------------------------------------------------------


class Server:
    """A server the tests share, reached at ``url``; not ours to control."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.url}>"

    def stop(self, immediate: bool = False) -> None:
        """Stop the server (``immediate``: as if it crashed)."""
        # A test that needs an outage cannot run on a server given by URL; under
        # CI that must fail, or a run would pass without its fault tests.
        unavailable(f"{self.name} was not started by the tests: cannot stop it")

    def start(self) -> None:
        """Start the server again after ``stop()``."""
        unavailable(f"{self.name} was not started by the tests: cannot start it")

    def restart(self, immediate: bool = False) -> None:
        """Stop and start the server; its data survives."""
        self.stop(immediate)
        self.start()

    def ensure_running(self) -> None:
        """Start the server if a test left it stopped."""

    def close(self) -> None:
        """Release the server at the end of the session."""


class ContainerServer(Server):
    """A server in a Docker container, removed at the end of the session."""

    def __init__(self, name: str, url: str, container: Any) -> None:
        super().__init__(name, url)
        self.container = container

    def close(self) -> None:
        self.container.stop()


class LocalServer(Server):
    """A server process of our own, logging to a file in its directory."""

    def __init__(
        self,
        name: str,
        url: str,
        command: list[str],
        directory: Path,
        ready: Callable[[], bool],
        stop_signals: tuple[signal.Signals, signal.Signals],
        user: str | None = None,
    ) -> None:
        super().__init__(name, url)
        self.command = command
        self.directory = directory
        self.log_path = directory / f"{name}.log"
        self.ready = ready
        #: (graceful, immediate) shutdown signals
        self.stop_signals = stop_signals
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            process = self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                # Our own session: a Ctrl-C reaches pytest, whose teardown
                # then stops the server in order.
                start_new_session=True,
                **run_as(self.user),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if process.poll() is not None:
                self.process = None
                failure = f"exited with code {process.returncode}"
                raise ServerError(self._failure(failure))
            if time.monotonic() > deadline:
                self.stop(immediate=True)
                raise ServerError(self._failure(f"did not answer in {START_TIMEOUT} s"))
            time.sleep(0.05)

    def stop(self, immediate: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(self.stop_signals[1 if immediate else 0])
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _failure(self, what: str) -> str:
        return (
            f"{self.name} ({' '.join(self.command)}) {what}\n{log_tail(self.log_path)}"
        )


def run_as(user: str | None) -> dict[str, Any]:
    """``subprocess`` options that run a child as ``user`` (None: as we are)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def log_tail(path: Path) -> str:
    """The last lines of a server's log, to quote in an error."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(lines[-LOG_TAIL:])


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_directory(prefix: str, owner: str | None) -> Path:
    """A fresh directory under the system temp dir, owned by ``owner``.

    Not pytest's ``tmp_path``: its parents are private to our user, and the
    PostgreSQL server runs as another one when we are root.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        shutil.chown(directory, owner, pwd.getpwnam(owner).pw_gid)
    return directory


def docker_answers() -> bool:
    """Whether a Docker engine answers a ping on ``$DOCKER_HOST`` (or its socket)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    address: str | tuple[str, int]
    if host.startswith("unix://"):
        family, address = socket.AF_UNIX, host.removeprefix("unix://")
    elif host.startswith("tcp://"):
        name, _, port = host.removeprefix("tcp://").partition(":")
        family, address = socket.AF_INET, (name, int(port or 2375))
    else:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in sock.recv(1024)
        except OSError:
            return False


# -- PostgreSQL ---------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest directory that holds both ``initdb`` and ``postgres``."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: Path) -> int:
        found = re.search(r"(\d+)", path.parent.name)
        return int(found.group(1)) if found else 0

    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(installed, key=version, reverse=True))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def admin_engine(url: str) -> sa.Engine:
    """An engine for CREATE/DROP DATABASE: no pool, no transaction."""
    return sa.create_engine(
        normalize_url(url),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )


def postgres_answers(url: str) -> bool:
    """Whether the server at ``url`` accepts a connection."""
    db = admin_engine(url)
    try:
        with db.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        db.dispose()


def local_postgres() -> LocalServer:
    """A throwaway PostgreSQL cluster, run as the ``postgres`` user when root."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        unavailable(
            "PostgreSQL: no initdb/postgres binaries (PATH, /usr/lib/postgresql)"
        )
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            unavailable("PostgreSQL: root must run initdb as the 'postgres' user")
    directory = scratch_directory("celeriac-postgres-", user)
    initdb(bin_dir, directory / "data", user)
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    command = [str(bin_dir / "postgres"), "-D", str(directory / "data")]
    command += ["-p", str(port), *postgres_settings(directory)]
    # SIGINT is a fast shutdown, SIGQUIT an immediate one (crash recovery next).
    stops = (signal.SIGINT, signal.SIGQUIT)
    return LocalServer(
        "postgres", url, command, directory, lambda: postgres_answers(url), stops, user
    )


def initdb(bin_dir: Path, data: Path, user: str | None) -> None:
    """Create a cluster in ``data`` whose superuser ``postgres`` needs no password."""
    log_path = data.parent / "initdb.log"
    command = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres"]
    command += ["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
    with log_path.open("wb") as log:
        try:
            code = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data.parent,
                timeout=START_TIMEOUT,
                **run_as(user),
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        raise ServerError(f"initdb failed ({code})\n{log_tail(log_path)}")


def postgres_settings(directory: Path) -> list[str]:
    """``postgres`` options: loopback only, and quick rather than durable."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(directory),
        "max_connections": "200",
        # Safe until the machine crashes, which ends the tests anyway. Not
        # synchronous_commit=off: an immediate stop would lose commits.
        "fsync": "off",
        "full_page_writes": "off",
        # Autovacuum connecting to the template would fail CREATE DATABASE.
        "autovacuum": "off",
    }
    return [
        option for key, value in settings.items() for option in ("-c", f"{key}={value}")
    ]


def postgres_container() -> ContainerServer | None:
    """PostgreSQL in Docker, when testcontainers is installed and Docker answers."""
    if not docker_answers():
        return None
    try:
        from testcontainers.postgres import (  # type: ignore[import-not-found, unused-ignore]
            PostgresContainer,
        )
    except ImportError:
        return None
    container = PostgresContainer("postgres:16-alpine").start()
    url = sa.make_url(container.get_connection_url())
    url = url.set(drivername="postgresql+psycopg")
    return ContainerServer("postgres", url.render_as_string(False), container)


def create_database(server: Server, name: str, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template``); return its URL."""
    statement = f'CREATE DATABASE "{name}"'
    if template is not None:
        statement += f' TEMPLATE "{template}"'
    db = admin_engine(server.url)
    try:
        for attempt in range(20):
            try:
                with db.connect() as conn:
                    conn.exec_driver_sql(statement)
                break
            except sa.exc.OperationalError as exc:
                # "source database is being accessed by other users": a
                # moment after the last connection to the template closed.
                if "being accessed" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)
    finally:
        db.dispose()
    return database_url_for(server, name)


def drop_database(server: Server, name: str) -> None:
    """Drop database ``name``, closing whatever connections are left on it."""
    server.ensure_running()
    db = admin_engine(server.url)
    try:
        with db.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        db.dispose()


def database_url_for(server: Server, name: str) -> str:
    """The URL of database ``name`` on ``server``, for psycopg 3."""
    url = sa.make_url(normalize_url(server.url)).set(database=name)
    return url.render_as_string(hide_password=False)


def unique_name(prefix: str) -> str:
    """A database name no other test or session uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


# -- Redis ----------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    """Whether the Redis server at ``url`` answers PING."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def local_redis() -> LocalServer:
    """A throwaway ``redis-server`` that keeps nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("Redis: no redis-server binary on PATH")
    directory = scratch_directory("celeriac-redis-", None)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    command += ["--dir", str(directory)]
    stops = (signal.SIGTERM, signal.SIGKILL)
    return LocalServer(
        "redis", url, command, directory, lambda: redis_answers(url), stops
    )


def redis_container() -> ContainerServer | None:
    """Redis in Docker, when testcontainers is installed and Docker answers."""
    if not docker_answers():
        return None
    try:
        from testcontainers.redis import (  # type: ignore[import-not-found, unused-ignore]
            RedisContainer,
        )
    except ImportError:
        return None
    container = RedisContainer("redis:7-alpine").start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return ContainerServer("redis", f"redis://{host}:{port}/0", container)


# -- fixtures ---------------------------------------------------------------------


def provide(
    name: str,
    variable: str,
    container: Callable[[], Server | None],
    local: Callable[[], LocalServer],
) -> Iterator[Server]:
    """The body of a session server fixture: find or start it, then release it."""
    client = "psycopg" if name == "postgres" else "redis"
    if importlib.util.find_spec(client) is None:
        unavailable(f"{name}: the Python package {client!r} is not installed")
    from_env = os.environ.get(variable)
    server = Server(name, from_env) if from_env else container()
    if server is None:
        server = start_local(local)
    try:
        yield server
    finally:
        server.close()


def start_local(local: Callable[[], LocalServer]) -> LocalServer:
    """Set up and start a throwaway server; its log stays behind if it fails."""
    try:
        server = local()
        server.start()
    except ServerError as exc:
        failure = str(exc)
    else:
        return server
    unavailable(f"a test server did not start: {failure}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """The session's PostgreSQL server; ``restart()`` when the tests started it."""
    yield from provide(
        "postgres", "CELERIAC_TEST_DATABASE_URL", postgres_container, local_postgres
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    """The session's Redis server; ``stop()``/``start()`` when the tests started it."""
    yield from provide("redis", "CELERIAC_TEST_REDIS_URL", redis_container, local_redis)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: Server) -> Iterator[str]:
    """A database migrated to head once, that each test's database copies."""
    name = unique_name("celeriac_template")
    db = connect(create_database(postgres_server, name))
    try:
        upgrade(db)
    finally:
        db.dispose()
    yield name
    drop_database(postgres_server, name)


@pytest.fixture
def postgres_url(postgres_server: Server, postgres_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema, dropped after the test."""
    name = unique_name("celeriac_test")
    url = create_database(postgres_server, name, template=postgres_template)
    yield url
    try:
        postgres_server.ensure_running()
        check_node_events(url)
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
def empty_postgres_url(postgres_server: Server) -> Iterator[str]:
    """A fresh PostgreSQL database without any table, dropped after the test."""
    name = unique_name("celeriac_empty")
    url = create_database(postgres_server, name)
    yield url
    try:
        postgres_server.ensure_running()
        check_node_events(url)
    finally:
        drop_database(postgres_server, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A database for the test: a SQLite file, then a PostgreSQL database.

    The SQLite file starts empty; the PostgreSQL database is already at the
    newest schema. Migrating is idempotent, so a test migrates either way.
    """
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """A database without any table: a SQLite file, then PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "empty_postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def redis_url(redis_server: Server) -> Iterator[str]:
    """The Redis server's URL, its database flushed before the test."""
    import redis

    redis_server.ensure_running()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    yield redis_server.url
    redis_server.ensure_running()


#: Fixtures that need a server, and the mark a test using them gets.
_SERVER_MARKS = {
    "postgres_server": "postgres",
    "postgres_url": "postgres",
    "empty_postgres_url": "postgres",
    "redis_server": "redis",
    "redis_url": "redis",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use a server, so ``-m "not postgres"`` leaves them out."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        for mark in {_SERVER_MARKS[name] for name in used if name in _SERVER_MARKS}:
            item.add_marker(mark)
