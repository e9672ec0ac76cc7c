"""The ``celeriac`` command line.

Read commands (``list``, ``show``, ``watch``, ``graph``) and ``db upgrade``
need only the database URL. Commands that publish messages (``resume``,
``retry``, ``recover``, and ``cancel --terminate``, which revokes through the
broker) need the Celery app: ``--app module:attribute``.

Exit codes: 0 on success, 1 when celeriac refuses (the reason is one line on
stderr), 2 on bad usage.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from celery import Celery
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from celeriac import CeleriacError, Engine, Node, Workflow, WorkflowState
from celeriac.demo import run_demo
from celeriac.engine.dot import to_dot, to_mermaid
from celeriac.settings import APP_VARIABLE, DATABASE_URL_VARIABLE, database_url
from celeriac.storage import migrate

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``watch`` stops: the workflow finished, or it is paused.
_STOPS = frozenset(
    {
        WorkflowState.COMPLETED,
        WorkflowState.FAILED,
        WorkflowState.CANCELLED,
        WorkflowState.PAUSED,
    }
)
_STATE_STYLES = {
    "IN_PROGRESS": "cyan",
    "REQUESTING_PAUSE": "yellow",
    "PAUSED": "yellow",
    "COMPLETED": "green",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "SKIPPED": "dim",
    "PENDING": "dim",
}

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # piped output: wide rows beat wrapped ones


class _Config:
    """The group's options; builds the engine once, when a command needs it."""

    def __init__(self, app: str | None, url: str | None) -> None:
        self.app = app
        self.url = url
        self._engine: Engine | None = None

    @property
    def database_url(self) -> str:
        return database_url(self.url)

    def engine(self, need_app: str | None = None, migrated: bool = True) -> Engine:
        """The app's engine, or one on a bare app when ``need_app`` is not set.

        ``need_app`` names what needs the app, for the usage error;
        ``migrated`` refuses a database without celeriac's schema.
        """
        if self._engine is None:
            if self.app:
                self._engine = _load_engine(self.app, self.url)
            elif need_app:
                raise click.UsageError(f"{need_app} needs the Celery app: pass --app")
            else:
                self._engine = _bare_engine(self.database_url, migrated)
        if migrated:
            _check_schema(self._engine)
        return self._engine


class _Group(click.Group):
    """Turns a refusal by celeriac into exit code 1 and one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CeleriacError as exc:
            raise click.ClickException(str(exc)) from exc


def _load_engine(spec: str, url: str | None) -> Engine:
    """The engine for ``--app module:attribute`` (attribute: ``app`` if omitted)."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `celery -A` does
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="'--app'"
        ) from exc
    target = getattr(module, attribute or "app", None)
    if isinstance(target, Engine):
        return target
    if not isinstance(target, Celery):
        raise click.BadParameter(
            f"{spec!r} is neither a Celery app nor a celeriac Engine",
            param_hint="'--app'",
        )
    for value in vars(module).values():
        if isinstance(value, Engine) and value.app is target:
            return value
    return Engine(target, url)


def _bare_engine(url: str, migrated: bool) -> Engine:
    """An engine on an app with no tasks: enough to read and to change states.

    Its broker is in memory, so it cannot reach workers: nothing it would
    publish or revoke leaves this process.
    """
    if migrated and url.startswith("sqlite") and not _sqlite_file_exists(url):
        raise click.ClickException(f"no database at {url}; run `celeriac db upgrade`")
    app = Celery("celeriac-cli", broker="memory://localhost/", set_as_current=False)
    return Engine(app, url, auto_migrate=False)


def _sqlite_file_exists(url: str) -> bool:
    path = sa.engine.make_url(url).database
    return not path or path == ":memory:" or Path(path).exists()


def _check_schema(engine: Engine) -> None:
    if migrate.current(engine.db) is None:
        raise click.ClickException(
            f"the database {_safe_url(engine.database_url)} has no celeriac schema; "
            "run `celeriac db upgrade`"
        )


def _safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
    )(fn)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _styled(state: str) -> str:
    style = _STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


# -- the group ----------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="celeriac")
@click.option(
    "--app",
    envvar=APP_VARIABLE,
    metavar="MODULE[:ATTR]",
    help="The module that builds the Engine, and the Celery app or Engine in it "
    f"(default attribute: app; ${APP_VARIABLE}).",
)
@click.option(
    "--database-url",
    envvar=DATABASE_URL_VARIABLE,
    metavar="URL",
    help=f"SQLAlchemy URL of celeriac's database (${DATABASE_URL_VARIABLE}; "
    "default: sqlite:///celeriac.db). Ignored when the app module builds "
    "its own Engine.",
)
@click.pass_context
def main(ctx: click.Context, app: str | None, database_url: str | None) -> None:
    """Celeriac: persistent, pausable Celery workflows."""
    ctx.obj = _Config(app, database_url)


@main.group("db")
def db_group() -> None:
    """Manage celeriac's database schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(config: _Config) -> None:
    """Bring the schema to the newest revision (Alembic)."""
    engine = config.engine(migrated=False)
    url = escape(_safe_url(engine.database_url))
    before = migrate.current(engine.db)
    migrate.upgrade(engine.db)
    after = migrate.current(engine.db)
    if before == after:
        console.print(f"{url}: schema already at revision {after}")
    else:
        console.print(f"{url}: schema upgraded {before or 'empty'} -> {after}")


# -- read commands --------------------------------------------------------------


@main.command("list")
@click.option(
    "--state",
    type=click.Choice([s.value for s in WorkflowState], case_sensitive=False),
    help="Only workflows in this state.",
)
@click.option("--name", help="Only workflows with this name.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="At most this many workflows.",
)
@_json_option
@click.pass_obj
def list_command(
    config: _Config, state: str | None, name: str | None, limit: int, as_json: bool
) -> None:
    """List workflows, newest first."""
    records = config.engine().store.list_workflows(state=state, name=name, limit=limit)
    if as_json:
        _echo_json([dataclasses.asdict(record) for record in records])
        return
    if not records:
        console.print("no workflows")
        return
    table = Table("ID", "NAME", "STATE", "CREATED", "FINISHED", box=None)
    table.columns[0].no_wrap = True
    for record in records:
        table.add_row(
            record.id,
            escape(record.name or ""),
            _styled(record.state),
            _when(record.created_at),
            _when(record.finished_at),
        )
    console.print(table)


@main.command()
@click.argument("workflow_id", metavar="ID")
@_json_option
@click.pass_obj
def show(config: _Config, workflow_id: str, as_json: bool) -> None:
    """Show a workflow and its nodes: states, attempts, durations."""
    engine = config.engine()
    record = engine.store.get_workflow(workflow_id)
    workflow = engine.workflow(workflow_id)
    nodes = workflow.nodes()
    progress = workflow.progress()
    if as_json:
        document = dataclasses.asdict(record)
        document["progress"] = {
            **dataclasses.asdict(progress),
            "fraction": progress.fraction,
        }
        document["nodes"] = [_node_json(node) for node in nodes]
        _echo_json(document)
        return
    console.print(f"[bold]workflow[/] {record.id}  {_styled(record.state)}")
    if record.name:
        console.print(f"name      {escape(record.name)}")
    console.print(f"created   {_when(record.created_at)}")
    console.print(f"finished  {_when(record.finished_at)}")
    console.print(
        f"progress  {progress.done}/{progress.total} done, "
        f"{progress.running} running, {progress.failed} failed"
    )
    if record.exc_type:
        console.print(
            f"error     {record.exc_type}: {record.exc_message} "
            f"(node {record.failed_node_id})",
            markup=False,
        )
    if record.state == WorkflowState.COMPLETED:
        console.print(f"result    {_shorten(repr(record.result))}", markup=False)
    console.print(_node_table(nodes))


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_json(node: Node) -> dict[str, Any]:
    document = dataclasses.asdict(node)
    document["duration"] = _duration(node)
    return document


def _node_table(nodes: list[Node]) -> Table:
    errors = any(node.error for node in nodes)
    table = Table("#", "NODE", "TASK", "STATE", "ATTEMPTS", "DURATION")
    if errors:
        table.add_column("ERROR")
    for index, node in enumerate(nodes, 1):
        row = [
            str(index),
            node.id[:8],
            escape(node.task or node.kind),
            _styled(node.state),
            str(len(node.attempts)),
            _duration_text(node),
        ]
        table.add_row(*row, *([escape(node.error or "")] if errors else []))
    return table


def _duration_text(node: Node) -> str:
    seconds = _duration(node)
    if seconds is not None:
        return f"{seconds:.2f}s"
    elapsed = _elapsed(node) if node.state == "RUNNING" else None
    return f"{elapsed:.1f}s…" if elapsed is not None else "-"


def _duration(node: Node) -> float | None:
    """Seconds from the first attempt's start to the last one's end."""
    if not node.attempts:
        return None
    first, last = node.attempts[0], node.attempts[-1]
    if first.started_at is None or last.finished_at is None:
        return None
    return (last.finished_at - first.started_at).total_seconds()


def _elapsed(node: Node) -> float | None:
    """Seconds a node has been running, for one that has not finished."""
    if not node.attempts or node.attempts[0].started_at is None:
        return None
    return (datetime.now(UTC) - node.attempts[0].started_at).total_seconds()


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=0.25,
    show_default=True,
    help="Seconds between two looks at the database.",
)
@_json_option
@click.pass_obj
def watch(config: _Config, workflow_id: str, interval: float, as_json: bool) -> None:
    """Follow a workflow's progress until it finishes or is PAUSED.

    Exits 1 if the workflow FAILED or was CANCELLED.
    """
    workflow = config.engine().workflow(workflow_id)
    if as_json:
        state = _watch_json(workflow, interval)
    else:
        state = _watch_bar(workflow, interval)
        console.print(f"workflow {workflow.id}: {_styled(state)}")
    if state == WorkflowState.FAILED:
        raise click.ClickException(str(_failure(config.engine(), workflow.id)))
    if state == WorkflowState.CANCELLED:
        raise click.ClickException(f"workflow {workflow.id} was cancelled")


def _watch_bar(workflow: Workflow, interval: float) -> str:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("", total=None, detail="")
        while True:
            state, progress = workflow.state, workflow.progress()
            bar.update(
                task,
                description=f"{state:<16}",
                completed=progress.done,
                total=progress.total,
                detail=f"{progress.running} running, {progress.failed} failed",
            )
            if state in _STOPS:
                return state
            time.sleep(interval)


def _watch_json(workflow: Workflow, interval: float) -> str:
    """One JSON line each time the state or a count changes."""
    last: dict[str, Any] = {}
    while True:
        state, progress = workflow.state, workflow.progress()
        line = {"id": workflow.id, "state": state, **dataclasses.asdict(progress)}
        line["fraction"] = progress.fraction
        if line != last:
            click.echo(json.dumps(line))
            last = line
        if state in _STOPS:
            return state
        time.sleep(interval)


def _failure(engine: Engine, workflow_id: str) -> str:
    record = engine.store.get_workflow(workflow_id)
    return (
        f"workflow {workflow_id} failed at node {record.failed_node_id}: "
        f"{record.exc_type}: {record.exc_message}"
    )


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid"]),
    default="dot",
    show_default=True,
    help="Graphviz DOT or a Mermaid flowchart.",
)
@_json_option
@click.pass_obj
def graph(config: _Config, workflow_id: str, fmt: str, as_json: bool) -> None:
    """Print the workflow's DAG, nodes coloured by state.

    Render it with Graphviz: celeriac graph ID | dot -Tsvg > workflow.svg
    """
    workflow = config.engine().workflow(workflow_id)
    nodes = workflow.nodes()
    if as_json:
        _echo_json(
            {
                "id": workflow.id,
                "nodes": [
                    {"id": n.id, "task": n.task, "kind": n.kind, "state": n.state}
                    for n in nodes
                ],
                "edges": [
                    {"parent": parent, "child": n.id}
                    for n in nodes
                    for parent in n.parents
                ],
            }
        )
    elif fmt == "mermaid":
        click.echo(to_mermaid(nodes), nl=False)
    else:
        click.echo(to_dot(nodes, workflow.name or workflow.id), nl=False)


# -- actions --------------------------------------------------------------------


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.pass_obj
def pause(config: _Config, workflow_id: str) -> None:
    """Stop dispatching; the workflow is PAUSED once nothing runs."""
    engine = config.engine()
    engine.pause(workflow_id)
    workflow = engine.workflow(workflow_id)
    state = workflow.state
    if state == WorkflowState.REQUESTING_PAUSE:
        running = workflow.progress().running
        console.print(
            f"workflow {workflow_id}: {_styled(state)}, waiting for {running} running "
            f"node(s); `celeriac watch {workflow_id}` returns once it is PAUSED"
        )
    else:
        console.print(f"workflow {workflow_id}: {_styled(state)}")


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.pass_obj
def resume(config: _Config, workflow_id: str) -> None:
    """Dispatch every ready node of a pausing or paused workflow."""
    engine = config.engine(need_app="resume")
    engine.resume(workflow_id)
    console.print(
        f"workflow {workflow_id}: {_styled(engine.workflow(workflow_id).state)}"
    )


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also kill the processes running the workflow's tasks (needs --app).",
)
@click.pass_obj
def cancel(config: _Config, workflow_id: str, terminate: bool) -> None:
    """Cancel a workflow; its running tasks are revoked.

    Revoking goes through the app's broker: without --app the workflow is
    CANCELLED and no queued node runs, but tasks already running finish.
    """
    engine = config.engine(need_app="cancel --terminate" if terminate else None)
    engine.cancel(workflow_id, terminate=terminate)
    console.print(
        f"workflow {workflow_id}: {_styled(engine.workflow(workflow_id).state)}"
    )


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.pass_obj
def retry(config: _Config, workflow_id: str) -> None:
    """Continue a FAILED workflow; succeeded nodes do not run again."""
    engine = config.engine(need_app="retry")
    engine.retry(workflow_id)
    console.print(
        f"workflow {workflow_id}: {_styled(engine.workflow(workflow_id).state)}"
    )


@main.command()
@click.pass_obj
def recover(config: _Config) -> None:
    """Run one recovery pass: re-publish what a crash left behind.

    Safe to run while workers run, and from several places at once; see
    docs/operations.md for running it on a schedule.
    """
    published = config.engine(need_app="recover").recover()
    console.print(f"recovery pass done: {published} node(s) published again")


@main.command()
@click.pass_obj
def demo(config: _Config) -> None:
    """Run a demo workflow on an embedded worker: pause, resume, result."""
    if config.app:
        raise click.UsageError("demo builds its own app: do not pass --app")
    sys.exit(run_demo(console, config.database_url))


if __name__ == "__main__":
    main(prog_name="celeriac")
