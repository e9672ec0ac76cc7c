"""How a part of a canvas is called: its arguments, and the options it is sent with.

Celery's wiring options never reach a message (celeriac replaces that wiring
with edges); the call's options win over a part's own, as in Celery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery.canvas import Signature

#: Options that describe Celery's own wiring of a canvas; celeriac replaces
#: that wiring with edges, so these never reach a node's message.
_WIRING_OPTIONS = frozenset(
    {
        "link",
        "link_error",
        "chord",
        "chain",
        "group_id",
        "group_index",
        "task_id",
        "parent_id",
        "root_id",
        "reply_to",
        "stamps",
    }
)
#: Options of a chord that delay its header only, not its body.
_HEADER_ONLY_OPTIONS = frozenset({"countdown", "eta"})
#: The signature option users set to name a part of a canvas (progress).
LABEL_OPTION = "celeriac_label"
#: A group option: its errbacks run once for the group, not once per failing
#: member (Celery's behaviour, the default).
ERRBACK_ONCE_OPTION = "celeriac_errback_once"


@dataclass(frozen=True)
class Call:
    """How a part of a canvas is applied: ``part.apply_async(args, kwargs, **options)``.

    Options given with the call win over the part's own, as in Celery.
    ``links`` is a ``link`` option given with the call (a group hands its own
    to its members): it replaces the part's own callbacks; None keeps them.
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    links: list[Signature] | None = None


def call_args(sig: Signature, call: Call) -> tuple[Any, ...]:
    """A chain's or chord's own args after the call's, unless immutable."""
    if call.args and not sig.immutable:
        return call.args + tuple(sig.args)
    return tuple(sig.args)


def execution_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without canvas wiring: what reaches a task's message."""
    return {
        key: value
        for key, value in options.items()
        if key not in _WIRING_OPTIONS and key not in (LABEL_OPTION, ERRBACK_ONCE_OPTION)
    }


def body_options(options: dict[str, Any]) -> dict[str, Any]:
    """A chord's ``options`` for its body: without those that delay the header."""
    return {
        key: value for key, value in options.items() if key not in _HEADER_ONLY_OPTIONS
    }


def task_options(sig: Signature, call_options: dict[str, Any]) -> dict[str, Any]:
    """The options a task is sent with: the call's over its own.

    Except, as in Celery's ``Signature._merge``, the stamps the task carries
    (``sig.stamp()``): a group's or a chain's own stamps do not replace them.
    """
    kept = {"stamped_headers", *(sig.options.get("stamped_headers") or ())}
    return {
        **sig.options,
        **{
            key: value
            for key, value in call_options.items()
            if key not in kept or key not in sig.options
        },
    }


def stored_signature(
    sig: Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """The node's signature in Celery's dict form, without canvas wiring."""
    return {
        "task": sig.task,
        "args": list(args),
        "kwargs": kwargs,
        "options": execution_options(options),
        "subtask_type": None,
        "immutable": bool(sig.immutable),
    }
