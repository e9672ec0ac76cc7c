"""The workflow state machine, built once from :mod:`celeriac.states`."""

from __future__ import annotations

from collections.abc import Callable

from transitions import Machine

from celeriac.errors import InvalidTransition
from celeriac.states import WORKFLOW_TRANSITIONS, WorkflowState

_machine = Machine(
    model=None,
    states=list(WorkflowState),
    transitions=[
        {key: value for key, value in edge.items() if key != "reason"}
        for edge in WORKFLOW_TRANSITIONS
    ],
    initial=None,
    auto_transitions=False,
)


def next_state(workflow_id: str, state: str, trigger: str) -> str:
    """The state ``trigger`` leads to from ``state``; raises InvalidTransition."""
    found = _machine.get_transitions(trigger=trigger, source=state)
    if not found:
        raise InvalidTransition(workflow_id, state, trigger)
    return str(found[0].dest)


def decider(workflow_id: str) -> Callable[[str, str], str]:
    """``next_state`` bound to one workflow, as the store's ``decide`` callback."""
    return lambda state, trigger: next_state(workflow_id, state, trigger)
