"""What ``submit`` checks before anything else: the canvas's type, name, metadata.

Each refusal is an ``InvalidCanvas`` (a ``ValueError``) naming what was
wrong, raised before anything is stored, the same on SQLite and PostgreSQL
(SQLite would store a name of any length, PostgreSQL refuses it with a
driver error; neither should see it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.canvas import Signature

from celeriac.errors import InvalidCanvas

#: The longest name the ``name`` column keeps, in characters.
NAME_LENGTH = 255
#: The keys of a signature given as a dict (``dict(sig)``), and their types.
_SIGNATURE_KEYS: dict[str, type | tuple[type, ...]] = {
    "task": str,
    "args": (list, tuple),
    "kwargs": dict,
    "options": dict,
}


def check_submission(canvas: Any, name: Any, metadata: Any) -> None:
    """Refuse a canvas, name or metadata that cannot be a workflow's."""
    check_canvas_type(canvas)
    check_name(name)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidCanvas(
            f"metadata must be a JSON object (a dict), not {type(metadata).__name__}"
        )


def check_canvas_type(canvas: Any) -> None:
    """A signature, chain, group or chord; or one's dict with all of its keys."""
    if isinstance(canvas, Signature):
        return
    if not isinstance(canvas, dict):
        return  # the compiler names the type it got
    for key, kind in _SIGNATURE_KEYS.items():
        if not isinstance(canvas.get(key), kind):
            raise InvalidCanvas(
                "a dict canvas must be a signature's dict (dict(task.s(...))): "
                f"its {key!r} is missing or not {_type_names(kind)}"
            )


def check_name(name: Any) -> None:
    """None, or a string the ``name`` column keeps as given."""
    if name is None:
        return
    if not isinstance(name, str):
        raise InvalidCanvas(f"name must be a string, not {type(name).__name__}")
    if len(name) > NAME_LENGTH:
        raise InvalidCanvas(
            f"name is {len(name):,} characters long; at most {NAME_LENGTH} are kept"
        )
    if "\x00" in name:
        raise InvalidCanvas("name holds a NUL character, which no database keeps")


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
