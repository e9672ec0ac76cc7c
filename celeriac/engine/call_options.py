"""The call options of ``engine.submit``: those of Celery's ``apply_async``.

``canvas.apply_async(args, kwargs, **options)`` applies its options to the
part of the canvas that starts it (a signature, a chain's first task, each
member of a group, a chord's header); ``link`` and ``link_error`` given with
the call replace the canvas's own. The compiler places them as Celery does;
this module only sorts them out and checks that they can be stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from celery.canvas import Signature, group
from celery.utils.functional import maybe_list
from kombu.utils.json import dumps

from celeriac.errors import InvalidCanvas

#: Options Celery takes as a datetime; a node's message is sent later, so
#: they are kept as the ISO 8601 text Celery's message carries them as.
_TIMES = ("eta", "expires")


@dataclass(frozen=True)
class CallOptions:
    """A submit's call options, sorted: message options and callbacks."""

    #: options for the messages of the tasks that start the canvas
    options: dict[str, Any]
    #: ``link``: replaces the canvas's own callbacks (None: none given)
    links: list[Signature] | None
    #: ``link_error``: replaces the canvas's own errbacks (empty: none given)
    errbacks: list[Signature]


def sort_call_options(
    app: Celery, sig: Signature, given: dict[str, Any]
) -> CallOptions:
    """Sort ``given`` (as passed to ``apply_async``) for the canvas ``sig``.

    Raises:
        TypeError: ``link`` or ``link_error`` given for a group, as Celery
            raises it (a group's callback is a chord's body).
        InvalidCanvas: an option cannot be stored as JSON.
    """
    options = dict(given)
    links = _signatures(app, options.pop("link", None))
    errbacks = _signatures(app, options.pop("link_error", None))
    if isinstance(sig, group) and links:
        raise TypeError("Cannot add link to group: use a chord")
    if isinstance(sig, group) and errbacks:
        raise TypeError("Cannot add link to group: do that on individual tasks")
    for key in _TIMES:
        if isinstance(options.get(key), datetime):
            options[key] = options[key].isoformat()
    try:
        dumps([options, links, errbacks])
    except TypeError as exc:
        raise InvalidCanvas(f"the call options cannot be stored: {exc}") from exc
    return CallOptions(options, links or None, errbacks)


def _signatures(app: Celery, value: Any) -> list[Signature]:
    items = maybe_list(value) or []
    if not all(isinstance(item, dict) for item in items):
        raise InvalidCanvas("link and link_error take Celery signatures")
    return [Signature.from_dict(item, app=app) for item in items]
