"""``celeriac purge``: delete finished workflows past their retention."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import click

from celeriac.cli.config import Config
from celeriac.cli.durations import Duration
from celeriac.cli.options import name_option
from celeriac.cli.render import console, echo_json, json_option
from celeriac.states import FINISHED_WORKFLOW_STATES


@click.command()
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
    type=click.Choice(
        [str(state) for state in FINISHED_WORKFLOW_STATES], case_sensitive=False
    ),
    multiple=True,
    help="Only workflows in this state (repeat for several; default: all three).",
)
@name_option
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
