"""The read commands: ``list``, ``show``, ``watch`` and ``graph``.

They need only the database URL, never the broker.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from celeriac import Workflow, WorkflowState
from celeriac.cli.config import Config
from celeriac.cli.dot import to_dot, to_mermaid
from celeriac.cli.durations import Duration, ago
from celeriac.cli.options import name_option
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
from celeriac.records import WorkflowRecord
from celeriac.states import NodeKind

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


@click.command("list")
@click.option(
    "--state",
    type=click.Choice([s.value for s in WorkflowState], case_sensitive=False),
    help="Only workflows in this state.",
)
@name_option
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
    records = config.engine().list_workflows(
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


@click.command()
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
    workflow = config.engine().workflow(workflow_id)
    record = workflow.record()
    nodes = workflow.graph_nodes()
    progress = workflow.progress()
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


@click.command()
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
        raise click.ClickException(_failure(workflow))
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


def _failure(workflow: Workflow) -> str:
    record = workflow.record()
    return (
        f"workflow {workflow.id} failed at node {record.failed_node_id}: "
        f"{record.exc_type}: {record.exc_message}"
    )


@click.command()
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
    workflow = config.engine().workflow(workflow_id)
    nodes = workflow.graph_nodes()
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
