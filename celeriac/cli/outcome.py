"""What an action tells its user: the workflow's state, and what the broker got.

An action that had messages to send and could send none (the broker is
down) exits :data:`BROKER_DOWN` after saying so: the change is committed,
and a recovery pass sends what it could not.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from celeriac.cli.render import console, echo_json, styled
from celeriac.records import Delivery

#: The exit code of an action whose messages none reached the broker.
BROKER_DOWN = 3


def published_text(delivery: Delivery, verb: str = "published") -> str:
    """``3 node(s) published, 2 stay QUEUED for the broker``, and refusals."""
    text = f"{delivery.sent} node(s) {verb}"
    if delivery.unsent:
        text += f", {delivery.unsent} stay QUEUED for the broker"
    if delivery.refused:
        text += f", {delivery.refused} refused by Celery (failed)"
    return text


def revoked_text(delivery: Delivery) -> str:
    """``2 task(s) revoked`` (queued or running), or how many could not be."""
    if delivery.unsent:
        return f"{delivery.unsent} task(s) not revoked"
    return f"{delivery.sent} task(s) revoked"


def report(
    document: dict[str, Any], line: str, delivery: Delivery, as_json: bool
) -> None:
    """Print the action's outcome (``document`` as JSON, or ``line``).

    Exits :data:`BROKER_DOWN` with one line on stderr when nothing that had
    to go through the broker went.
    """
    if as_json:
        echo_json({**document, **dataclasses.asdict(delivery)})
    else:
        console.print(line)
    if delivery.broker_down:
        click.echo(
            f"Error: the broker could not be reached: {delivery.unsent} message(s) "
            "not sent; `celeriac --app … recover` sends the QUEUED nodes once it is "
            "back",
            err=True,
        )
        sys.exit(BROKER_DOWN)


def state_line(workflow_id: str, state: str, detail: str = "") -> str:
    """``workflow ID: STATE`` and, if any, ``; detail``."""
    return f"workflow {workflow_id}: {styled(state)}" + (
        f"; {detail}" if detail else ""
    )
