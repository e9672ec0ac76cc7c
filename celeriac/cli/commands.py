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
import json
import logging
import sys
import time
from datetime import timedelta
from typing import Any

import click
from click.core import ParameterSource
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from celeriac import Delivery, Engine, Node, Workflow, WorkflowState
from celeriac.cli.config import Config, Group
from celeriac.cli.connection import safe_url
from celeriac.cli.durations import Duration, ago
from celeriac.cli.outcome import (
    published_text,
    report,
    revoked_text,
    state_line,
)
from celeriac.cli.render import (
    LISTED_KINDS,
    console,
    echo_json,
    join_json,
    json_option,
    node_json,
    short_id,
    shorten,
    styled,
    when,
    workflow_table,
)
from celeriac.cli.tree import node_tree
from celeriac.cli.web import web
from celeriac.demo import run_demo
from celeriac.engine.dot import to_dot, to_mermaid
from celeriac.records import WorkflowRecord
from celeriac.settings import APP_VARIABLE, DATABASE_URL_VARIABLE
from celeriac.states import NodeKind
from celeriac.storage import migrate
from celeriac.storage.retention import FINISHED

#: Lines of nodes ``show`` draws unless told otherwise.
SHOWN_NODES = 100
#: Characters of a workflow's result ``show`` prints.
RESULT_CHARS = 300
#: Where ``watch`` stops: the workflow finished, or it is paused.
_STOPS = frozenset(
    {
        WorkflowState.COMPLETED,
        WorkflowState.FAILED,
        WorkflowState.CANCELLED,
        WorkflowState.PAUSED,
    }
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    # the outcome is one line on stdout or stderr: the engine's log lines
    # (a publish retrying, say) would only repeat it, and Python's last-resort
    # handler prints them to stderr when the app configured no logging
    logging.getLogger("celeriac").addHandler(logging.NullHandler())
    from_environment = (
        ctx.get_parameter_source("database_url") == ParameterSource.ENVIRONMENT
    )
    hint = f"${DATABASE_URL_VARIABLE}" if from_environment else "'--database-url'"
    ctx.obj = Config(app, database_url, hint)


@main.group("db")
def db_group() -> None:
    """Manage celeriac's database schema."""


@db_group.command("upgrade")
@json_option
@click.pass_obj
def db_upgrade(config: Config, as_json: bool) -> None:
    """Bring the schema to the newest revision (Alembic)."""
    engine = config.engine(migrated=False)
    url = escape(safe_url(engine.database_url))
    before = migrate.current(engine.db)
    migrate.upgrade(engine.db)
    after = migrate.current(engine.db)
    if as_json:
        database = safe_url(engine.database_url)
        echo_json({"database": database, "from": before, "to": after})
    elif before == after:
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
@click.option("--key", help="Only the workflow submitted with this key.")
@click.option(
    "--since",
    type=Duration(),
    metavar="DURATION",
    help="Only workflows created in the last DURATION: a number and a unit "
    "s, m, h, d or w (90s, 30m, 2h, 7d, 1w, 1h30m).",
)
@click.option(
    "--older-than",
    type=Duration(),
    metavar="DURATION",
    help="Only workflows created more than DURATION ago (units as for --since).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="At most this many workflows.",
)
@json_option
@click.pass_obj
def list_command(
    config: Config,
    state: str | None,
    name: str | None,
    key: str | None,
    since: timedelta | None,
    older_than: timedelta | None,
    limit: int,
    as_json: bool,
) -> None:
    """List workflows, newest first.

    Below 120 columns the table shows short ids (8 characters), which every
    command takes back.
    """
    records = config.engine().store.list_workflows(
        state=state,
        name=name,
        key=key,
        limit=limit + 1,  # one more, to know whether any were left out
        created_after=None if since is None else ago(since),
        created_before=None if older_than is None else ago(older_than),
    )
    more, records = len(records) > limit, records[:limit]
    if as_json:
        echo_json([dataclasses.asdict(record) for record in records])
        return
    if not records:
        console.print("no workflows")
        return
    table = workflow_table()
    for record in records:
        table.add_row(
            short_id(record.id),
            escape(named(record)),
            styled(record.state),
            when(record.created_at),
            when(record.finished_at),
        )
    console.print(table)
    if more:
        console.print(
            f"the newest {limit} shown; more match: --limit {limit * 2} for more"
        )


def named(record: WorkflowRecord) -> str:
    """A workflow's name in ``list``, with the key it was submitted with."""
    if record.key is None:
        return record.name or ""
    return f"{record.name or ''} (key {record.key})".lstrip()


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=SHOWN_NODES,
    show_default=True,
    help="At most this many lines of nodes (--json lists them all).",
)
@json_option
@click.pass_obj
def show(config: Config, workflow_id: str, limit: int, as_json: bool) -> None:
    """Show a workflow and its nodes: states, attempts, durations.

    ID may be the first 8 or more characters of the workflow's id.
    """
    engine = config.engine()
    workflow_id = engine.workflow(workflow_id).id
    record = engine.store.get_workflow(workflow_id)
    nodes = dag_nodes(engine, workflow_id)
    progress = engine.workflow(workflow_id).progress()
    if as_json:
        document = dataclasses.asdict(record)
        document["progress"] = {
            **dataclasses.asdict(progress),
            "fraction": progress.fraction,
        }
        document["nodes"] = [node_json(n) for n in nodes if n.kind in LISTED_KINDS]
        document["joins"] = [join_json(n) for n in nodes if n.kind == NodeKind.JOIN]
        echo_json(document)
        return
    console.print(f"[bold]workflow[/] {record.id}  {styled(record.state)}")
    if record.name:
        console.print(f"name      {escape(record.name)}")
    if record.key is not None:
        console.print(f"key       {escape(record.key)}")
    console.print(f"created   {when(record.created_at)}")
    console.print(f"finished  {when(record.finished_at)}")
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
        result = repr(record.result)
        cut = " (cut: --json prints it whole)" if len(result) > RESULT_CHARS else ""
        console.print(f"result    {shorten(result, RESULT_CHARS)}{cut}", markup=False)
    console.print(node_tree(nodes, limit))
    if len(nodes) > limit:
        console.print(
            f"{limit} of {len(nodes)} nodes shown; --limit {len(nodes)} for all"
        )


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=0.25,
    show_default=True,
    help="Seconds between two looks at the database.",
)
@json_option
@click.pass_obj
def watch(config: Config, workflow_id: str, interval: float, as_json: bool) -> None:
    """Follow a workflow's progress until it finishes or is PAUSED.

    Exits 1 if the workflow FAILED or was CANCELLED.
    """
    workflow = config.engine().workflow(workflow_id)
    if as_json:
        state = _watch_json(workflow, interval)
    else:
        state = _watch_bar(workflow, interval)
        console.print(f"workflow {workflow.id}: {styled(state)}")
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
@json_option
@click.pass_obj
def graph(config: Config, workflow_id: str, fmt: str, as_json: bool) -> None:
    """Print the workflow's DAG, nodes coloured by state.

    Render it with Graphviz: celeriac graph ID | dot -Tsvg > workflow.svg
    """
    engine = config.engine()
    workflow = engine.workflow(workflow_id)
    nodes = dag_nodes(engine, workflow.id)
    if as_json:
        echo_json(
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


def dag_nodes(engine: Engine, workflow_id: str) -> list[Node]:
    """The nodes ``show`` and ``graph`` draw: tasks, errbacks and joins.

    The END node is left out: every workflow has one, after its last nodes.
    """
    nodes = engine.store.list_nodes(workflow_id, bookkeeping=True)
    return [node for node in nodes if node.kind != NodeKind.END]


# -- actions --------------------------------------------------------------------


@main.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_obj
def pause(config: Config, workflow_id: str, as_json: bool) -> None:
    """Stop dispatching; the workflow is PAUSED once nothing runs."""
    engine = config.engine()
    workflow = engine.workflow(workflow_id)
    engine.pause(workflow.id)
    state, running = workflow.state, workflow.progress().running
    detail = ""
    if state == WorkflowState.REQUESTING_PAUSE:
        detail = (
            f"waiting for {running} running node(s); "
            f"`celeriac watch {workflow.id}` returns once it is PAUSED"
        )
    document = {"id": workflow.id, "state": state, "running": running}
    report(document, state_line(workflow.id, state, detail), Delivery(), as_json)


def report_publish(
    engine: Engine, workflow_id: str, delivery: Delivery, as_json: bool
) -> None:
    """The workflow's state after an action that published its ready nodes."""
    state = engine.workflow(workflow_id).state
    line = state_line(workflow_id, state, published_text(delivery))
    report({"id": workflow_id, "state": state}, line, delivery, as_json)


@main.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_obj
def resume(config: Config, workflow_id: str, as_json: bool) -> None:
    """Dispatch every ready node of a pausing or paused workflow (needs --app).

    Exits 3 when the broker could not be reached: the workflow is resumed,
    its nodes stay QUEUED until `celeriac --app … recover` publishes them.
    """
    engine = config.engine(need_app="resume")
    workflow_id = engine.workflow(workflow_id).id
    report_publish(engine, workflow_id, engine.resume(workflow_id), as_json)


@main.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also kill the processes running the workflow's tasks (needs --app).",
)
@json_option
@click.pass_obj
def cancel(config: Config, workflow_id: str, terminate: bool, as_json: bool) -> None:
    """Cancel a workflow; its running tasks are revoked.

    Revoking goes through the app's broker: without --app the workflow is
    CANCELLED and no queued node runs, but tasks already running finish.
    With --terminate, exits 3 when the broker could not be reached to
    revoke them (the workflow is CANCELLED all the same).
    """
    engine = config.engine(need_app="cancel --terminate" if terminate else None)
    workflow = engine.workflow(workflow_id)
    delivery = engine.cancel(workflow.id, terminate=terminate)
    if not terminate:  # revoking through the in-memory broker reaches nobody
        delivery = Delivery()
    detail = revoked_text(delivery) if terminate else ""
    line = state_line(workflow.id, workflow.state, detail)
    report({"id": workflow.id, "state": workflow.state}, line, delivery, as_json)


@main.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_obj
def retry(config: Config, workflow_id: str, as_json: bool) -> None:
    """Continue a FAILED workflow; succeeded nodes do not run again (needs --app).

    Exits 3 when the broker could not be reached, as resume does.
    """
    engine = config.engine(need_app="retry")
    workflow_id = engine.workflow(workflow_id).id
    report_publish(engine, workflow_id, engine.retry(workflow_id), as_json)


@main.command()
@json_option
@click.pass_obj
def recover(config: Config, as_json: bool) -> None:
    """Run one recovery pass: re-publish what a crash left behind (needs --app).

    Safe to run while workers run, and from several places at once; see
    docs/operations.md for running it on a schedule. Exits 3 when the
    broker could not be reached.
    """
    delivery = config.engine(need_app="recover").recover()
    line = f"recovery pass done: {published_text(delivery, 'published again')}"
    report({}, line, delivery, as_json)


@main.command()
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    metavar="DURATION",
    help="Purge workflows that finished more than DURATION ago "
    "(units as for list --since: 30d, 12h, 2w).",
)
@click.option(
    "--state",
    "states",
    type=click.Choice([str(state) for state in FINISHED], case_sensitive=False),
    multiple=True,
    help="Only workflows in this state (repeat for several; default: all three).",
)
@click.option("--name", help="Only workflows with this name.")
@click.option(
    "--events-older-than",
    type=Duration(),
    metavar="DURATION",
    help="Also delete events older than DURATION, of any workflow "
    "(default: --older-than).",
)
@click.option(
    "--workers-older-than",
    type=Duration(),
    metavar="DURATION",
    help="Also delete the rows of workers silent for DURATION "
    "(default: --older-than, and at least 1d).",
)
@click.option("--dry-run", is_flag=True, help="Delete nothing; count what would go.")
@json_option
@click.pass_obj
def purge(
    config: Config,
    older_than: timedelta,
    states: tuple[str, ...],
    name: str | None,
    events_older_than: timedelta | None,
    workers_older_than: timedelta | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete finished workflows, with their nodes, attempts and events.

    Only COMPLETED, FAILED and CANCELLED workflows are ever deleted, in
    short transactions, so it is safe to run while workers run (see
    docs/operations.md for running it on a schedule).
    """
    try:
        purged = config.engine().purge_counts(
            older_than,
            [state.upper() for state in states] or None,
            name,
            dry_run,
            events_older_than=events_older_than,
            workers_older_than=workers_older_than,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        echo_json({"dry_run": dry_run, **dataclasses.asdict(purged)})
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {purged.workflows} workflow(s) with {purged.nodes} node(s), "
        f"{purged.events} event(s), {purged.workers} worker row(s)"
    )


@main.command()
@click.pass_obj
def demo(config: Config) -> None:
    """Run a demo workflow on an embedded worker: pause, resume, result."""
    if config.app:
        raise click.UsageError("demo builds its own app: do not pass --app")
    sys.exit(run_demo(console, config.reachable_url()))


main.add_command(web)
