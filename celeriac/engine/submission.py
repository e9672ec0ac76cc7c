"""Submitting a canvas: compile it, store it in one transaction, start it."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from celeriac.engine.compiler import compile_canvas
from celeriac.engine.handle import Workflow
from celeriac.engine.publishing import Publishing
from celeriac.states import OnFailure

logger = logging.getLogger("celeriac.engine")

#: The longest submit key the database keeps.
MAX_KEY_LENGTH = 255


class Submission(Publishing):
    """``submit``: a canvas stored as a DAG, and its first nodes published."""

    def submit(
        self,
        canvas: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        on_failure: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Workflow:
        """Store ``canvas`` as a DAG in one transaction and start it.

        ``on_failure``: ``"continue"`` (the default, or the engine's
        ``on_failure`` option): after a failure every node whose parents all
        succeeded still runs, as in Celery; ``"stop"``: nothing not yet
        started runs. ``options`` are the call options of Celery's
        ``canvas.apply_async(args, kwargs, **options)`` (``countdown``,
        ``eta``, ``expires``, ``queue``, ``priority``, ``link``,
        ``link_error``, ``headers``, ...), applied as Celery applies them.
        ``key``: an idempotency key. A submit with a key already used returns
        the workflow stored then (two racing submits store one), as long as
        the canvas, args and kwargs are the same.

        Raises:
            UnknownTask: the canvas names a task the app does not know.
            InvalidCanvas: the canvas or its arguments cannot be stored.
            ValueError: ``on_failure`` is neither "continue" nor "stop", or
                ``key`` is not a string of 1 to 255 characters without NUL.
            SubmitKeyReused: ``key`` names a workflow of another canvas.
        """
        key = submit_key(key)
        policy = OnFailure.named(on_failure) if on_failure else self.on_failure
        with collector_paused():
            new = compile_canvas(
                self.app, canvas, tuple(args), kwargs, name, metadata, options
            )
            new = replace(new, on_failure=policy, key=key)
            outcome = self._store.insert_workflow(new)
            if not outcome.recorded:  # the key named a stored workflow
                (stored,) = self._store.list_workflows(key=new.key, limit=1)
                return Workflow(self, stored.id, stored.name)
            delivery = self._after(new.id, outcome)
        self._store.analyze_new_tables()  # a new database's first statistics
        if delivery.unsent:
            logger.warning(
                "workflow %s is stored, but %d of its first nodes could not be "
                "published yet: they stay QUEUED until a recovery pass sends them",
                new.id,
                delivery.unsent,
            )
        return Workflow(self, new.id, name)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, if it was on.

    A large canvas compiles into millions of objects that all live until
    the submit returns: the collector would walk them again and again as
    they pile up (about a sixth of a 300,000-node submit's time) and find
    nothing to free. Whatever the block leaves behind is collected later.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def submit_key(key: object) -> str | None:
    """``key`` checked: None, or a non-empty string the database can keep."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or "\x00" in key:
        raise ValueError(f"key must be a non-empty string without NUL, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key is {len(key)} characters long; at most 255")
    return key
