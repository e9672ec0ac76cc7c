"""The ``celeriac`` command line, run in a subprocess against a SQLite file.

Workflows are made in this process by an Engine on the same file: submitted
without a worker they stay stored (IN_PROGRESS, nodes QUEUED); run under
``engine.embedded_worker()`` they finish. The subprocess finds the app in a
module written to the test's directory and put on its PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from celeriac import CeleriacError, Engine, Workflow
from celeriac.storage import migrate
from celeriac.storage.schema import workflows

APP_MODULE = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    from celery import Celery

    from celeriac import Engine

    DATABASE_URL = f"sqlite:///{Path(__file__).with_name('celeriac.db')}"

    BROKER = os.environ.get("CLIAPP_BROKER", "memory://localhost/")
    app = Celery("cliapp", broker=BROKER, set_as_current=False)
    app.conf.broker_transport_options = {"polling_interval": 0.005}


    @app.task(name="cliapp.add", shared=False)
    def add(x, y):
        return x + y


    @app.task(name="cliapp.tsum", shared=False)
    def tsum(values):
        return sum(values)


    @app.task(name="cliapp.sleep", shared=False)
    def sleep(seconds, value=None):
        time.sleep(seconds)
        return value


    @app.task(name="cliapp.wait_for_file", shared=False)
    def wait_for_file(path, value=None):
        deadline = time.monotonic() + 30
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return value


    @app.task(name="cliapp.boom", shared=False)
    def boom(*args):
        raise ValueError("boom")


    # recover() publishes again nodes QUEUED for longer than this (seconds)
    RECOVERY_DELAY = float(os.environ.get("CLIAPP_RECOVERY_DELAY", "60"))
    # as on PostgreSQL, where the schema is not migrated when the engine is built
    AUTO_MIGRATE = os.environ.get("CLIAPP_AUTO_MIGRATE", "1") == "1"
    engine = Engine(
        app, DATABASE_URL, recovery_delay=RECOVERY_DELAY, auto_migrate=AUTO_MIGRATE
    )
    """
)


class Project(SimpleNamespace):
    """A directory with the app module and its database, and a way to run the CLI."""

    directory: Path
    url: str
    module: ModuleType

    @property
    def engine(self) -> Engine:
        engine: Engine = self.module.engine
        return engine

    def submit(self, canvas: Any, name: str | None = None) -> Workflow:
        return self.engine.submit(canvas, name=name)

    def run_to_end(self, *canvases: Any) -> list[Workflow]:
        """Run workflows on one embedded worker; return them once they finished.

        Each canvas may be a ``(canvas, name)`` pair.
        """
        with self.engine.embedded_worker():
            workflows = [
                self.engine.submit(item[0], name=item[1])
                if isinstance(item, tuple)
                else self.submit(item)
                for item in canvases
            ]
            for workflow in workflows:
                with contextlib.suppress(CeleriacError):  # some tests want FAILED
                    workflow.get(timeout=30)
        return workflows

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.directory), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        env.update(extra)
        return env

    def cli(
        self,
        *args: str,
        app: bool | str = False,
        url: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``celeriac [--app cliapp:app] [--database-url URL] ARGS``."""
        options = []
        if app:
            options += ["--app", "cliapp:app" if app is True else app]
        if url:
            options += ["--database-url", self.url]
        return subprocess.run(
            [sys.executable, "-m", "celeriac.cli", *options, *args],
            cwd=self.directory,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def make_project(directory: Path) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cliapp.py").write_text(APP_MODULE)
    spec = importlib.util.spec_from_file_location(
        f"cliapp_{uuid.uuid4().hex}", directory / "cliapp.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Project(directory=directory, url=module.DATABASE_URL, module=module)


def canvas(module: ModuleType) -> Any:
    """A chain into a chord: 3 -> 6 -> [16, 26] -> 42."""
    return chain(
        module.add.s(1, 2),
        module.add.s(3),
        chord(group(module.add.s(10), module.add.s(20)), module.tsum.s()),
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 1 and a one-line reason on stderr."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2 and one line on stderr: what was wrong, where help is."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--help" in lines[0]
    for word in words:
        assert word in lines[0]


def celeriac(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``celeriac ARGS`` in a subprocess, without the caller's CELERIAC_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def listed_ids(*args: str, url: str) -> list[str]:
    """The ids ``celeriac list --json ARGS`` prints, in its order."""
    result = celeriac("--database-url", url, "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the table in ``out``, each cell without rich's padding."""
    return [
        [cell[1:].rstrip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.startswith("│")
    ]


@pytest.fixture
def project(tmp_path):
    made = make_project(tmp_path / "project")
    yield made
    made.engine._db.dispose()


@pytest.fixture(scope="module")
def stocked(tmp_path_factory):
    """One database with a COMPLETED, a FAILED and a stored (unrun) workflow."""
    made = make_project(tmp_path_factory.mktemp("stocked"))
    module = made.module
    made.completed, made.failed = made.run_to_end(
        (canvas(module), "nightly"),
        (chain(module.add.s(1, 1), module.boom.s()), "broken"),
    )
    made.stored = made.submit(chain(module.add.s(1, 1), module.add.s(2)), "nightly")
    assert made.completed.state == "COMPLETED"
    assert made.failed.state == "FAILED"
    yield made
    made.engine._db.dispose()


# -- usage ------------------------------------------------------------------------


def test_help_lists_every_command(project):
    result = project.cli("--help", url=False)
    assert result.returncode == 0
    for command in (
        "db",
        "list",
        "show",
        "pause",
        "resume",
        "cancel",
        "retry",
        "recover",
        "watch",
        "graph",
        "demo",
    ):
        assert f"  {command} " in result.stdout


def test_unknown_command_is_bad_usage(project):
    assert_usage_error(project.cli("frobnicate"), "No such command")


def test_missing_argument_is_bad_usage(project):
    assert_usage_error(project.cli("show"), "Missing argument 'ID'")


@pytest.mark.parametrize(
    "args",
    [
        ("list", "--state", "SLEEPING"),
        ("list", "--limit", "0"),
        ("graph", "some-id", "--format", "png"),
        ("watch", "some-id", "--interval", "0"),
    ],
)
def test_bad_option_values_are_bad_usage(project, args):
    assert_usage_error(project.cli(*args), "Invalid value")


@pytest.mark.parametrize("option", ["--since", "--older-than"])
@pytest.mark.parametrize("age", ["2x", "30", "-5m", "1.5h", "2H", "0m", "h", "2 h"])
def test_a_bad_duration_is_bad_usage(project, option, age):
    result = project.cli("list", option, age)
    assert_usage_error(result, f"Invalid value for '{option}'", repr(age))


#: Nothing listens on port 1; the password must never be printed.
UNREACHABLE = "postgresql+psycopg://celeriac:s3cret-pw@127.0.0.1:1/x"
COMMANDS_ON_A_DATABASE = [
    ("list",),
    ("list", "--json"),
    ("show", "some-id"),
    ("show", "some-id", "--json"),
    ("graph", "some-id"),
    ("watch", "some-id"),
    ("pause", "some-id"),
    ("cancel", "some-id"),
    ("db", "upgrade"),
    ("demo",),
]


@pytest.mark.parametrize("args", COMMANDS_ON_A_DATABASE)
def test_an_unreachable_database_is_one_line_and_quick(tmp_path, args):
    started = time.monotonic()
    result = celeriac("--database-url", UNREACHABLE, *args, cwd=tmp_path)
    assert_refused(
        result,
        "cannot connect to the database at "
        "postgresql+psycopg://celeriac:***@127.0.0.1:1/x: Connection refused",
    )
    # the store's retries would take a minute; the command line tries once
    assert time.monotonic() - started < 20
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_an_unreachable_database_from_the_environment(tmp_path):
    result = celeriac("list", cwd=tmp_path, env={"CELERIAC_DATABASE_URL": UNREACHABLE})
    assert_refused(result, "cannot connect", "celeriac:***@127.0.0.1:1/x")
    assert "s3cret-pw" not in result.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", ["not a database URL"]),
        ("nosuchdb://x", ["nosuchdb://x", "no database dialect 'nosuchdb'"]),
        ("postgresql://u:s3cret-pw@db:port/x", ["not a database URL"]),
        ("sqlite+nodriver:///x.db", ["no database dialect 'sqlite+nodriver'"]),
    ],
)
@pytest.mark.parametrize(
    "args", [("list",), ("show", "x"), ("db", "upgrade"), ("demo",)]
)
def test_a_malformed_database_url_is_bad_usage(tmp_path, url, words, args):
    result = celeriac("--database-url", url, *args, cwd=tmp_path)
    assert_usage_error(result, "Invalid value for '--database-url'", *words)
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # no database file made on the way


def test_a_malformed_database_url_from_the_environment_names_the_variable(tmp_path):
    result = celeriac("list", cwd=tmp_path, env={"CELERIAC_DATABASE_URL": "nope"})
    assert_usage_error(result, "Invalid value for $CELERIAC_DATABASE_URL")


def test_a_database_url_without_its_driver_installed_is_bad_usage(tmp_path):
    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("mysqlclient is installed here")
    result = celeriac("--database-url", "mysql://u:s3cret-pw@db/x", "list")
    assert_usage_error(result, "mysql://u:***@db/x", "driver for 'mysql'")
    assert "s3cret-pw" not in result.stderr


def test_a_database_failing_mid_command_is_one_line(tmp_path):
    # the schema's revision is recorded, its tables are gone: the first
    # query fails for good (not a transient error), after the checks passed
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    db = sa.create_engine(url)
    with db.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num TEXT)"))
        conn.execute(
            sa.text("INSERT INTO alembic_version VALUES (:head)"),
            {"head": migrate.head()},
        )
    db.dispose()
    result = celeriac("--database-url", url, "list")
    assert_refused(
        result,
        f"the database at {url} failed",
        "no such table: celeriac_workflows",
    )


def test_unimportable_app_is_bad_usage(project):
    result = project.cli("resume", "some-id", app="no_such_module:app")
    assert_usage_error(result, "cannot import 'no_such_module'")


def test_app_attribute_that_is_not_an_app_is_bad_usage(project):
    result = project.cli("resume", "some-id", app="cliapp:DATABASE_URL")
    assert_usage_error(result, "neither a Celery app nor a celeriac Engine")


# -- db upgrade -------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    head = migrate.head()
    first = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "--database-url", url, "db", "upgrade"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")},
    )
    assert first.returncode == 0, first.stderr
    assert f"schema upgraded empty -> {head}" in first.stdout
    again = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "db", "upgrade"],
        capture_output=True,
        text=True,
        env={**os.environ, "CELERIAC_DATABASE_URL": url},
    )
    assert again.returncode == 0, again.stderr
    assert f"schema already at revision {head}" in again.stdout


def test_db_upgrade_defaults_to_celeriac_db_in_the_current_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    result = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "db", "upgrade"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "celeriac.db").exists()


def test_db_upgrade_through_an_app_whose_engine_does_not_migrate(tmp_path):
    (tmp_path / "cliapp.py").write_text(APP_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    env.update(PYTHONPATH=str(tmp_path), CLIAPP_AUTO_MIGRATE="0")

    def celeriac(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "celeriac.cli", "--app", "cliapp", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    assert_refused(celeriac("list"), "has no celeriac schema", "celeriac db upgrade")
    result = celeriac("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"celeriac.db: schema upgraded empty -> {migrate.head()}" in result.stdout
    assert celeriac("list").returncode == 0


def test_db_upgrade_with_an_extra_argument_is_bad_usage(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = celeriac("--database-url", url, "db", "upgrade", "head")
    assert_usage_error(result, "unexpected extra argument", "celeriac db upgrade")
    assert not (tmp_path / "fresh.db").exists()


def test_db_upgrade_of_a_file_it_cannot_create_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'no-such-directory' / 'celeriac.db'}"
    result = celeriac("--database-url", url, "db", "upgrade")
    assert_refused(result, f"cannot connect to the database at {url}")


@pytest.mark.postgres
def test_db_upgrade_and_list_on_postgresql(empty_postgres_url):
    url = empty_postgres_url
    assert_refused(celeriac("--database-url", url, "list"), "has no celeriac schema")
    result = celeriac("--database-url", url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"schema upgraded empty -> {migrate.head()}" in result.stdout
    result = celeriac("--database-url", url, "list", "--since", "1d")
    assert result.returncode == 0, result.stderr
    assert "no workflows" in result.stdout


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_refused(empty_postgres_url):
    missing = sa.make_url(empty_postgres_url).set(database="celeriac_no_such_db")
    url = missing.render_as_string(hide_password=False)
    for args in (("list",), ("db", "upgrade")):
        result = celeriac("--database-url", url, *args)
        assert_refused(
            result,
            f"cannot connect to the database at {missing}: "
            'database "celeriac_no_such_db" does not exist',
        )


def test_read_commands_refuse_a_database_without_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "--database-url", url, "list"],
        capture_output=True,
        text=True,
    )
    assert_refused(result, "celeriac db upgrade")
    assert not (tmp_path / "missing.db").exists()


# -- list -------------------------------------------------------------------------


def test_list_on_an_empty_database(project):
    assert project.cli("db", "upgrade").returncode == 0
    # the project's engine migrated the file already: nothing was stored yet
    result = project.cli("list")
    assert result.returncode == 0
    assert "no workflows" in result.stdout
    assert json.loads(project.cli("list", "--json").stdout) == []


def test_list_shows_workflows_newest_first(stocked):
    result = stocked.cli("list")
    assert result.returncode == 0, result.stderr
    ids = [stocked.stored.id, stocked.failed.id, stocked.completed.id]
    positions = [result.stdout.index(workflow_id) for workflow_id in ids]
    assert positions == sorted(positions)
    assert "COMPLETED" in result.stdout
    assert "nightly" in result.stdout


def test_list_json_shape(stocked):
    result = stocked.cli("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == [
        stocked.stored.id,
        stocked.failed.id,
        stocked.completed.id,
    ]
    assert set(rows[0]) >= {"id", "name", "state", "created_at", "finished_at"}
    by_id = {row["id"]: row for row in rows}
    assert by_id[stocked.completed.id]["state"] == "COMPLETED"
    assert by_id[stocked.completed.id]["result"] == 42
    assert by_id[stocked.failed.id]["exc_type"] == "ValueError"
    assert by_id[stocked.stored.id]["finished_at"] is None


def test_list_filters_by_state_name_and_limit(stocked):
    ids = functools.partial(listed_ids, url=stocked.url)

    assert ids("--state", "failed") == [stocked.failed.id]
    assert ids("--state", "COMPLETED") == [stocked.completed.id]
    assert ids("--name", "nightly") == [stocked.stored.id, stocked.completed.id]
    assert ids("--name", "nightly", "--state", "IN_PROGRESS") == [stocked.stored.id]
    assert ids("--limit", "1") == [stocked.stored.id]
    assert ids("--name", "nobody") == []


def backdate(db: sa.Engine, workflow: Workflow, age: timedelta) -> None:
    """Make ``workflow`` as old as ``age``, in the database the CLI reads."""
    with db.begin() as conn:
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow.id)
            .values(created_at=datetime.now(UTC) - age)
        )


@pytest.fixture
def aged(project):
    """Workflows created now, 5 hours ago and 3 days ago (that one PAUSED)."""
    add = project.module.add
    project.old = project.submit(add.s(1, 1), "report")
    project.old.pause()
    project.hours = project.submit(add.s(1, 2), "report")
    project.new = project.submit(add.s(1, 3), "other")
    backdate(project.engine._db, project.old, timedelta(days=3))
    backdate(project.engine._db, project.hours, timedelta(hours=5))
    return project


def test_list_filters_by_age(aged):
    ids = functools.partial(listed_ids, url=aged.url)

    new, hours, old = aged.new.id, aged.hours.id, aged.old.id
    assert ids() == [new, hours, old]
    assert ids("--since", "1h") == [new]
    assert ids("--since", "4h59m") == [new]
    assert ids("--since", "5h1m") == [new, hours]
    assert ids("--since", "1d") == [new, hours]
    assert ids("--since", "2w") == [new, hours, old]
    assert ids("--since", "90s") == [new]
    assert ids("--since", "100000000w") == [new, hours, old]  # before year 1


def test_list_filters_by_older_than(aged):
    ids = functools.partial(listed_ids, url=aged.url)

    hours, old = aged.hours.id, aged.old.id
    assert ids("--older-than", "1h") == [hours, old]
    assert ids("--older-than", "4h59m") == [hours, old]
    assert ids("--older-than", "5h1m") == [old]
    assert ids("--older-than", "2d") == [old]
    assert ids("--older-than", "1w") == []
    assert ids("--older-than", "100000000w") == []
    assert ids("--older-than", "10m", "--since", "1d") == [hours]
    assert ids("--older-than", "2d", "--since", "4d") == [old]
    assert ids("--older-than", "1d", "--since", "2d") == []


def test_list_age_filter_with_state_name_and_limit(aged):
    ids = functools.partial(listed_ids, url=aged.url)

    assert ids("--since", "1w", "--limit", "2") == [aged.new.id, aged.hours.id]
    assert ids("--since", "1d", "--limit", "1") == [aged.new.id]
    assert ids("--since", "1w", "--state", "PAUSED") == [aged.old.id]
    assert ids("--since", "1d", "--state", "PAUSED") == []
    assert ids("--since", "1d", "--name", "report") == [aged.hours.id]
    assert ids("--older-than", "1h", "--limit", "1") == [aged.hours.id]
    assert ids("--older-than", "1h", "--state", "PAUSED") == [aged.old.id]
    assert ids("--older-than", "1h", "--state", "paused", "--since", "1d") == []
    assert ids("--older-than", "1h", "--name", "report") == [
        aged.hours.id,
        aged.old.id,
    ]
    assert ids("--older-than", "1h", "--name", "other") == []


def test_list_older_than_with_a_limit_reaches_past_newer_workflows(
    engine, tasks, database_url
):
    # two old workflows, which --older-than must find even though --limit is
    # smaller than the number of newer ones
    made = [engine.submit(tasks.add.s(1, n)) for n in range(5)]
    ages = [
        timedelta(days=3),
        timedelta(days=2),
        *(timedelta(minutes=m) for m in (3, 2, 1)),
    ]
    for workflow, age in zip(made, ages, strict=True):
        backdate(engine._db, workflow, age)
    oldest, old, *new = (workflow.id for workflow in made)

    ids = functools.partial(listed_ids, url=database_url)

    assert ids("--limit", "2") == [new[2], new[1]]
    assert ids("--older-than", "1d", "--limit", "1") == [old]
    assert ids("--older-than", "1d", "--limit", "2") == [old, oldest]
    assert ids("--older-than", "2m30s", "--limit", "2") == [new[0], old]
    assert ids("--older-than", "1d", "--since", "2d12h", "--limit", "1") == [old]
    assert ids("--since", "1h", "--limit", "2") == [new[2], new[1]]


def test_list_age_filter_in_the_table(aged):
    result = aged.cli("list", "--since", "1d")
    assert result.returncode == 0, result.stderr
    assert aged.new.id in result.stdout
    assert aged.hours.id in result.stdout
    assert aged.old.id not in result.stdout
    result = aged.cli("list", "--since", "1m", "--name", "report")
    assert result.returncode == 0, result.stderr
    assert "no workflows" in result.stdout
    result = aged.cli("list", "--older-than", "1d")
    assert result.returncode == 0, result.stderr
    assert aged.old.id in result.stdout
    assert "PAUSED" in result.stdout
    assert aged.hours.id not in result.stdout
    assert aged.new.id not in result.stdout


def test_database_url_comes_from_the_environment(stocked):
    result = stocked.cli(
        "list", "--json", url=False, env={"CELERIAC_DATABASE_URL": stocked.url}
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


# -- show -------------------------------------------------------------------------


def test_show_prints_the_workflow_and_its_nodes(stocked):
    result = stocked.cli("show", stocked.completed.id)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert stocked.completed.id in out
    assert "COMPLETED" in out
    assert "nightly" in out
    assert "result    42" in out
    assert "5/5 done" in out
    assert out.count("cliapp.add") == 4
    assert out.count("cliapp.tsum") == 1
    assert out.count("group results") == 1
    assert out.count("SUCCEEDED") == 6  # the 5 tasks and the chord's join
    for column in ("TASK", "STATE", "ATTEMPTS", "DURATION"):
        assert column in out


def test_show_draws_the_nodes_as_a_tree(project):
    module = project.module
    steps = chain(
        module.add.s(1, 1).on_error(module.boom.s()),
        group(module.add.s(10), module.add.s(20)),
        module.tsum.s(),
    )
    workflow = project.submit(steps)
    result = project.cli("show", workflow.id)
    assert result.returncode == 0, result.stderr
    nodes = workflow.nodes()
    join = nodes[-1].parents[0]  # where the group's results are collected
    rows = [
        (number, node, task) for number, node, task, *_ in table_rows(result.stdout)
    ]
    # the join hangs under the group's tasks' parent, the task after it under it
    assert rows == [
        ("1", nodes[0].id[:8], "cliapp.add"),
        ("2", nodes[1].id[:8], "├─ cliapp.boom (on error)"),
        ("3", nodes[2].id[:8], "├─ cliapp.add"),
        ("4", nodes[3].id[:8], "├─ cliapp.add"),
        ("", join[:8], "└─ group results (of #3, #4)"),
        ("5", nodes[4].id[:8], "   └─ cliapp.tsum"),
    ]
    states = [row[3] for row in table_rows(result.stdout)]
    assert states == ["QUEUED", "PENDING", "PENDING", "PENDING", "PENDING", "PENDING"]


def test_show_puts_a_chord_of_chains_under_its_join(project):
    module = project.module
    header = [chain(module.add.s(1, 1), module.add.s(2)), module.add.s(3, 3)]
    workflow = project.submit(chord(header, module.tsum.s()))
    result = project.cli("show", workflow.id)
    assert result.returncode == 0, result.stderr
    rows = [(number, task) for number, _, task, *_ in table_rows(result.stdout)]
    # the header's tasks share no ancestor: the join starts a branch of its own
    assert rows == [
        ("1", "cliapp.add"),
        ("2", "└─ cliapp.add"),
        ("3", "cliapp.add"),
        ("", "group results (of #2, #3)"),
        ("4", "└─ cliapp.tsum"),
    ]


def test_show_numbers_the_nodes_as_json_lists_them_and_hides_the_end(project):
    module = project.module
    steps = chain(
        module.add.s(1, 1),
        chord([module.add.s(1), module.add.s(2)], module.tsum.s()),
        group(module.add.s(1).on_error(module.boom.s()), module.add.s(2)),
    )
    workflow = project.submit(steps)
    result = project.cli("show", workflow.id)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    listed = json.loads(project.cli("show", workflow.id, "--json").stdout)["nodes"]
    numbered = {row[0]: row[1] for row in rows if row[0]}
    assert numbered == {
        str(number): node["id"][:8] for number, node in enumerate(listed, 1)
    }
    every = project.engine._store.list_nodes(workflow.id, bookkeeping=True)
    drawn = {node.id[:8] for node in every if node.kind != "END"}
    assert {row[1] for row in rows} == drawn
    assert len(rows) == len(every) - 1  # each node once, and no END
    assert sum("group results" in row[2] for row in rows) == 2


def test_show_puts_a_node_with_several_parents_beside_them(project):
    module = project.module
    # one errback for the whole group: it hangs from both of the group's tasks
    shared = (
        group(module.add.s(10), module.add.s(20))
        .set(celeriac_errback_once=True)
        .on_error(module.boom.s())
    )
    workflow = project.submit(chain(module.add.s(1, 1), shared))
    result = project.cli("show", workflow.id)
    assert result.returncode == 0, result.stderr
    assert [node.task for node in workflow.nodes()] == [
        "cliapp.add",
        "cliapp.boom",
        "cliapp.add",
        "cliapp.add",
    ]
    rows = [(number, task) for number, _, task, *_ in table_rows(result.stdout)]
    assert rows == [
        ("1", "cliapp.add"),
        ("3", "├─ cliapp.add"),
        ("4", "├─ cliapp.add"),
        ("2", "├─ cliapp.boom (on error of #3, #4)"),
        ("", "└─ group results (of #3, #4)"),  # the workflow's result
    ]


def test_show_of_a_finished_workflow_has_attempts_and_durations(stocked):
    result = stocked.cli("show", stocked.failed.id)
    assert result.returncode == 0, result.stderr
    first, second = table_rows(result.stdout)
    assert first[2:5] == ["cliapp.add", "SUCCEEDED", "1"]
    assert second[2:5] == ["└─ cliapp.boom", "FAILED", "1"]
    for row in (first, second):
        assert row[5].endswith("s")
        assert float(row[5][:-1]) >= 0
    assert second[6] == "ValueError: boom"


def test_show_json_shape(stocked):
    result = stocked.cli("show", stocked.completed.id, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == stocked.completed.id
    assert shown["state"] == "COMPLETED"
    assert shown["result"] == 42
    expected = {"done": 5, "total": 5, "failed": 0, "running": 0, "fraction": 1.0}
    assert shown["progress"].items() >= expected.items()
    assert [node["task"] for node in shown["nodes"]] == [
        "cliapp.add",
        "cliapp.add",
        "cliapp.add",
        "cliapp.add",
        "cliapp.tsum",
    ]
    first = shown["nodes"][0]
    assert set(first) >= {"id", "task", "state", "attempts", "result", "error"}
    assert first["result"] == 3
    assert first["parents"] == []
    assert shown["nodes"][1]["parents"] == [first["id"]]
    # the chord's join, which the body's parents name, in a list of its own
    (join,) = shown["joins"]
    assert join.items() >= {"kind": "JOIN", "state": "SUCCEEDED"}.items()
    header = [node["id"] for node in shown["nodes"][2:4]]
    assert join["parents"] == header
    assert shown["nodes"][4]["parents"] == [join["id"]]
    assert isinstance(first["duration"], float)
    (attempt,) = first["attempts"]
    assert attempt["number"] == 1
    assert attempt["state"] == "SUCCEEDED"
    assert attempt["started_at"] <= attempt["finished_at"]


def test_show_names_the_error_of_a_failed_workflow(stocked):
    result = stocked.cli("show", stocked.failed.id)
    assert result.returncode == 0, result.stderr
    assert "FAILED" in result.stdout
    assert "ValueError: boom" in result.stdout
    shown = json.loads(stocked.cli("show", stocked.failed.id, "--json").stdout)
    assert shown["exc_type"] == "ValueError"
    assert shown["progress"]["failed"] == 1
    assert [node["state"] for node in shown["nodes"]] == ["SUCCEEDED", "FAILED"]


def test_show_of_an_unknown_workflow_is_refused(stocked):
    assert_refused(
        stocked.cli("show", "no-such-id"), "no workflow with id 'no-such-id'"
    )
    assert_refused(stocked.cli("show", "no-such-id", "--json"), "no-such-id")


def test_show_works_through_the_app_module(stocked):
    for app in ("cliapp:app", "cliapp:engine"):
        result = stocked.cli("show", stocked.completed.id, "--json", app=app, url=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "COMPLETED"


# -- graph ------------------------------------------------------------------------


def test_graph_is_graphviz_dot_coloured_by_state(stocked):
    result = stocked.cli("graph", stocked.failed.id)
    assert result.returncode == 0, result.stderr
    dot = result.stdout
    assert dot.startswith('digraph "broken" {')
    assert 'label="cliapp.add", fillcolor="#b7e4c7"' in dot
    assert 'label="cliapp.boom", fillcolor="#f4a3a3"' in dot
    assert dot.count(" -> ") == 1
    if shutil.which("dot"):
        svg = subprocess.run(
            ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
        )
        assert "cliapp.boom" in svg.stdout


def test_graph_draws_a_chord_join_with_arrows_in_and_out(stocked):
    result = stocked.cli("graph", stocked.completed.id)
    assert result.returncode == 0, result.stderr
    dot = result.stdout
    *_, first, second, body = stocked.completed.nodes()  # the chord's tasks
    (join,) = body.parents
    assert f'"{join}" [label="", fillcolor="#b7e4c7"' in dot
    assert 'shape="point"' in dot
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)"', dot, flags=re.MULTILINE)
    assert [parent for parent, child in edges if child == join] == [
        first.id,
        second.id,
    ]
    assert [child for parent, child in edges if parent == join] == [body.id]
    assert len(edges) == 6  # a chain of 2, the 2 header tasks, the join, the body
    assert "doublecircle" not in dot  # no END node


def test_graph_as_mermaid(stocked):
    result = stocked.cli("graph", stocked.completed.id, "--format", "mermaid")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  n0["cliapp.add"]:::succeeded' in lines
    assert "  n0 --> n1" in lines
    # the header tasks n2, n3 into the join n4, and the join into the body
    assert "  n4((join)):::succeeded" in lines
    assert "  n2 --> n4" in lines
    assert "  n3 --> n4" in lines
    assert "  n4 --> n5" in lines


def test_graph_json_shape(stocked):
    result = stocked.cli("graph", stocked.completed.id, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == stocked.completed.id
    assert [n["task"] for n in shown["nodes"]][-1] == "cliapp.tsum"
    ids = [n["id"] for n in shown["nodes"]]
    assert {"parent": ids[0], "child": ids[1]} in shown["edges"]
    assert set(shown["nodes"][0]) == {"id", "task", "kind", "state"}
    # the chord's join is a node too, so every edge joins two listed nodes
    kinds = [n["kind"] for n in shown["nodes"]]
    assert kinds == ["TASK", "TASK", "TASK", "TASK", "JOIN", "TASK"]
    assert {"parent": ids[2], "child": ids[4]} in shown["edges"]
    assert {"parent": ids[3], "child": ids[4]} in shown["edges"]
    assert {"parent": ids[4], "child": ids[5]} in shown["edges"]
    assert {e["parent"] for e in shown["edges"]} | {
        e["child"] for e in shown["edges"]
    } == set(ids)


def test_graph_of_an_unknown_workflow_is_refused(stocked):
    assert_refused(stocked.cli("graph", "no-such-id"), "no-such-id")


# -- watch ------------------------------------------------------------------------


def test_watch_of_a_finished_workflow_returns_at_once(stocked):
    result = stocked.cli("watch", stocked.completed.id)
    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stdout
    assert "5/5" in result.stdout


def test_watch_json_prints_one_line_per_change(stocked):
    result = stocked.cli("watch", stocked.completed.id, "--json")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    expected = {
        "id": stocked.completed.id,
        "state": "COMPLETED",
        "done": 5,
        "total": 5,
        "failed": 0,
        "running": 0,
        "fraction": 1.0,
    }
    assert line.items() >= expected.items()


def test_watch_of_a_failed_workflow_exits_1_with_the_error(stocked):
    result = stocked.cli("watch", stocked.failed.id)
    assert_refused(result, "failed at node", "ValueError: boom")
    assert "FAILED" in result.stdout


def test_watch_follows_a_running_workflow_to_its_end(project, tmp_path):
    module = project.module
    gate = tmp_path / "gate"
    steps = chain(
        module.wait_for_file.s(str(gate), 1), module.add.s(1), module.add.s(2)
    )
    with project.engine.embedded_worker():
        workflow = project.submit(steps)
        command = ["--database-url", project.url, "watch", workflow.id, "--json"]
        watcher = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", *command, "--interval", "0.02"],
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        line = watcher.stdout.readline()  # printed while the gate is shut
        assert line, watcher.communicate(timeout=30)[1]
        first = json.loads(line)
        gate.touch()
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    lines = [first] + [json.loads(line) for line in out.splitlines()]
    assert first["state"] == "IN_PROGRESS"
    assert first["done"] == 0
    assert lines[-1]["state"] == "COMPLETED"
    assert lines[-1]["done"] == lines[-1]["total"] == 3
    dones = [line["done"] for line in lines]
    assert dones == sorted(dones)


def test_watch_stops_when_the_workflow_is_paused(project):
    workflow = project.submit(
        chain(project.module.add.s(1, 1), project.module.add.s(2))
    )
    workflow.pause()
    result = project.cli("watch", workflow.id)
    assert result.returncode == 0, result.stderr
    assert "PAUSED" in result.stdout


# -- pause, resume, cancel, retry, recover ----------------------------------------


def test_pause_pauses_a_workflow_with_nothing_running(project):
    workflow = project.submit(
        chain(project.module.add.s(1, 1), project.module.add.s(2))
    )
    result = project.cli("pause", workflow.id)
    assert result.returncode == 0, result.stderr
    assert f"workflow {workflow.id}: PAUSED" in result.stdout
    assert workflow.state == "PAUSED"


def test_pause_of_a_paused_workflow_is_refused(project):
    workflow = project.submit(project.module.add.s(1, 1))
    workflow.pause()
    result = project.cli("pause", workflow.id)
    assert_refused(result, f"cannot pause workflow {workflow.id}: it is PAUSED")
    assert workflow.state == "PAUSED"


def test_pause_of_an_unknown_workflow_is_refused(project):
    assert_refused(project.cli("pause", "no-such-id"), "no workflow with id")


@pytest.mark.parametrize("args", [(), ("one-id", "another-id"), ("--terminate", "x")])
def test_pause_with_bad_arguments_is_bad_usage(project, args):
    result = project.cli("pause", *args)
    assert_usage_error(result, "celeriac pause --help")


def test_resume_needs_the_app(project):
    workflow = project.submit(project.module.add.s(1, 1))
    workflow.pause()
    assert_usage_error(
        project.cli("resume", workflow.id), "resume needs the Celery app"
    )
    assert workflow.state == "PAUSED"


def test_resume_dispatches_a_paused_workflow_again(project):
    workflow = project.submit(
        chain(project.module.add.s(1, 1), project.module.add.s(2))
    )
    workflow.pause()
    result = project.cli("resume", workflow.id, app=True)
    assert result.returncode == 0, result.stderr
    assert f"workflow {workflow.id}: IN_PROGRESS" in result.stdout
    assert workflow.state == "IN_PROGRESS"
    assert [node.state for node in workflow.nodes()] == ["QUEUED", "PENDING"]


def test_resume_reads_the_app_from_the_environment(project):
    workflow = project.submit(project.module.add.s(1, 1))
    workflow.pause()
    result = project.cli("resume", workflow.id, env={"CELERIAC_APP": "cliapp"})
    assert result.returncode == 0, result.stderr
    assert workflow.state == "IN_PROGRESS"


def test_resume_of_a_running_workflow_is_refused(project):
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("resume", workflow.id, app=True)
    assert_refused(result, "cannot resume", "IN_PROGRESS")


def test_cancel_cancels_and_a_second_cancel_is_refused(project):
    workflow = project.submit(
        chain(project.module.add.s(1, 1), project.module.add.s(2))
    )
    result = project.cli("cancel", workflow.id)
    assert result.returncode == 0, result.stderr
    assert f"workflow {workflow.id}: CANCELLED" in result.stdout
    assert workflow.state == "CANCELLED"
    assert {node.state for node in workflow.nodes()} == {"CANCELLED"}
    assert_refused(project.cli("cancel", workflow.id), "it is CANCELLED")


def test_cancel_terminate_needs_the_app(project):
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("cancel", workflow.id, "--terminate")
    assert_usage_error(result, "cancel --terminate needs the Celery app")
    assert workflow.state == "IN_PROGRESS"


def test_cancel_terminate_through_the_app(project):
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("cancel", workflow.id, "--terminate", app=True)
    assert result.returncode == 0, result.stderr
    assert workflow.state == "CANCELLED"


def test_retry_continues_a_failed_workflow(project):
    module = project.module
    (workflow,) = project.run_to_end(chain(module.add.s(1, 1), module.boom.s()))
    assert workflow.state == "FAILED"
    assert_usage_error(project.cli("retry", workflow.id), "retry needs the Celery app")
    result = project.cli("retry", workflow.id, app=True)
    assert result.returncode == 0, result.stderr
    assert f"workflow {workflow.id}: IN_PROGRESS" in result.stdout
    assert [node.state for node in workflow.nodes()] == ["SUCCEEDED", "QUEUED"]
    assert_refused(project.cli("retry", workflow.id, app=True), "cannot retry")


def test_recover_needs_the_app(project):
    assert_usage_error(project.cli("recover"), "recover needs the Celery app")


def test_recover_on_a_database_without_schema_is_refused(tmp_path):
    (tmp_path / "cliapp.py").write_text(APP_MODULE)
    env = {"PYTHONPATH": str(tmp_path), "CLIAPP_AUTO_MIGRATE": "0"}
    result = celeriac("--app", "cliapp", "recover", cwd=tmp_path, env=env)
    assert_refused(result, "has no celeriac schema", "celeriac db upgrade")


def test_recover_runs_one_pass(project):
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("recover", app=True)
    assert result.returncode == 0, result.stderr
    # the node was queued a moment ago: not stale yet, nothing to publish again
    assert "recovery pass done: 0 node(s) published again" in result.stdout
    assert workflow.state == "IN_PROGRESS"


def test_recover_publishes_a_lost_message_again(project):
    # submitted here without a worker: to the CLI's process, the message is lost
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("recover", app=True, env={"CLIAPP_RECOVERY_DELAY": "0"})
    assert result.returncode == 0, result.stderr
    assert "recovery pass done: 1 node(s) published again" in result.stdout
    assert [node.state for node in workflow.nodes()] == ["QUEUED"]


# -- demo -------------------------------------------------------------------------


def test_demo_needs_no_app(project):
    assert_usage_error(project.cli("demo", app=True), "demo builds its own app")


@pytest.mark.slow
def test_demo_pauses_resumes_and_prints_the_result(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    result = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PAUSED:" in out
    assert "nothing is dispatched while PAUSED" in out
    assert "result: 224" in out
    assert out.count("celeriac.demo.crunch") == 8
    assert "FAILED" not in out
    assert (tmp_path / "celeriac.db").exists()
