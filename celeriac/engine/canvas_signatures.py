"""Reading a canvas's signatures, and copies of them rewired as Celery would.

Copies only: the caller's canvas is left alone.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.canvas import Signature, _chain, chord, chunks, group, maybe_signature
from celery.utils.functional import maybe_list

from celeriac.engine.canvas_calls import LABEL_OPTION
from celeriac.errors import InvalidCanvas


def as_signature(app: Celery, canvas: Any) -> Signature:
    """``canvas`` as a signature of ``app``; chunks as the group they apply."""
    sig: object = maybe_signature(canvas, app=app) if isinstance(canvas, dict) else None
    if not isinstance(sig, Signature):
        raise InvalidCanvas(
            "expected a Celery signature, chain, group or chord, "
            f"got {type(canvas).__name__}"
        )
    if isinstance(sig, chunks):
        # what chunks.apply_async applies; like it, drop the chunks' options
        return group(list(sig.group().tasks), app=app)
    return sig


def listed(app: Celery, sig: Signature, option: str) -> list[Signature]:
    """The signatures in ``sig``'s ``option`` (``link``, ``link_error``)."""
    return [as_signature(app, s) for s in maybe_list(sig.options.get(option)) or []]


def header_tasks(sig: chord) -> list[Any]:
    """The parts of a chord's header."""
    tasks = sig.tasks
    return list(tasks.tasks if isinstance(tasks, group) else tasks)


def is_empty_chain(sig: Signature) -> bool:
    """Whether ``sig`` is a chain of no steps."""
    return isinstance(sig, _chain) and not sig.tasks


def is_empty_group(sig: Signature) -> bool:
    """Whether ``sig`` is a group of no members."""
    return (
        isinstance(sig, group) and isinstance(sig.tasks, list | tuple) and not sig.tasks
    )


def with_links(sig: Signature, callbacks: list[Signature]) -> Signature:
    """A copy of ``sig`` with ``callbacks`` added to its ``link`` option."""
    copy = sig.clone()
    copy.options["link"] = [*(maybe_list(sig.options.get("link")) or []), *callbacks]
    return copy


def linked(app: Celery, sig: Signature, callbacks: list[Signature]) -> Signature:
    """A copy of ``sig`` with ``callbacks`` linked as ``sig.link()`` would.

    A chord links them to its body; a group to its first member only, made
    immutable (the member cannot pass the group's result on); any other
    signature adds them to its ``link`` option.
    """
    if not callbacks:
        return sig
    if isinstance(sig, chord):
        chord_copy = sig.clone()
        assert isinstance(chord_copy, chord)
        chord_copy.kwargs["body"] = linked(app, as_signature(app, sig.body), callbacks)
        return chord_copy
    if isinstance(sig, group) and sig.tasks:
        first, *rest = sig.tasks
        immutable = [callback.clone().set(immutable=True) for callback in callbacks]
        group_copy = sig.clone()
        assert isinstance(group_copy, group)
        group_copy.kwargs["tasks"] = [
            linked(app, as_signature(app, first), immutable),
            *rest,
        ]
        return group_copy
    return with_links(sig, callbacks)


def labelled(sig: Signature, label: str | None) -> Signature:
    """``sig`` with ``label`` as its label, unless it has one of its own."""
    if label is None or LABEL_OPTION in sig.options:
        return sig
    copy = sig.clone()
    copy.options[LABEL_OPTION] = label
    return copy


def without_errbacks(sig: Signature) -> Signature:
    """``sig`` without its ``link_error`` option."""
    if not sig.options.get("link_error"):
        return sig
    copy = sig.clone()
    copy.options.pop("link_error", None)
    return copy
