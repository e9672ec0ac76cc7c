"""What a submit stores, checked as Celery's JSON serializer would carry it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.canvas import Signature

from celeriac.errors import InvalidCanvas
from celeriac.storage.values import Encoded, Unencodable, encode, subscript


def check_storable(
    sig: Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> Encoded:
    """Refuse what Celery's JSON serializer cannot encode, before anything is stored.

    Returns the canvas as that serializer's text, to be stored as it is.

    Raises:
        InvalidCanvas: naming where the refused value is: ``args[1]["x"][3]``,
            or the task whose signature holds it and where in it.
    """
    try:
        encode(list(args), "args")
        encode(kwargs or {}, "kwargs")
        encode(metadata, "metadata")
        return Encoded(encode(dict(sig), "canvas"))
    except Unencodable as exc:
        where = _in_signature(sig, exc) if exc.path.startswith("canvas") else exc.path
        raise InvalidCanvas(f"cannot be stored: {where} {exc.reason}") from exc


def _in_signature(sig: Signature, exc: Unencodable) -> str:
    """The innermost signature on the way to the refused value, and where in it.

    For example ``args[0] of task t.add at canvas["kwargs"]["tasks"][1]``.
    """
    value: Any = sig
    start, task = 0, sig.get("task")
    for depth, key in enumerate(exc.keys):
        if isinstance(value, Mapping) and isinstance(value.get("task"), str):
            start, task = depth, value["task"]
        value = value[key]
    inner, outer = exc.keys[start:], exc.keys[:start]
    if not inner:
        return f"the signature of task {task}"
    where = str(inner[0]) + "".join(map(subscript, inner[1:]))
    at = "".join(map(subscript, outer))
    return f"{where} of task {task}" + (f" at canvas{at}" if at else "")
