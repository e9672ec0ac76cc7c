"""The actions: ``pause``, ``resume``, ``cancel``, ``retry`` and ``recover``.

All but ``pause`` (and ``cancel`` without ``--terminate``) publish or revoke
through the broker, so they need the Celery app (``--app``). Exit code 3
says the broker could not be reached (see ``celeriac.cli.outcome``).
"""

from __future__ import annotations

import click

from celeriac import Delivery, Engine, WorkflowState
from celeriac.cli.config import Config
from celeriac.cli.outcome import published_text, report, revoked_text, state_line
from celeriac.cli.render import json_option


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
