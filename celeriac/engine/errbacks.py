"""What an errback taking ``(request, exc, traceback)`` is called with.

Celery calls such an errback in the worker whose task failed, with that
task's request, its exception and its traceback, and celeriac does the same.
When that worker died after recording the failure, the recovery pass runs
the errback instead, with the three rebuilt from what the database stored.
"""

from __future__ import annotations

import builtins
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

from celery import Celery
from celery import exceptions as celery_exceptions
from celery.app.task import Context
from celery.utils.functional import arity_greater
from celery.utils.serialization import create_exception_cls

from celeriac.engine.scheduler import call_arguments
from celeriac.records import FailedCall

#: The module named by an exception class celeriac had to make up, because
#: only its name was stored and no built-in or Celery exception has it.
REBUILT_MODULE = "celeriac.rebuilt"


@dataclass(frozen=True)
class ErrbackArguments:
    """``(request, exc, traceback)``: the failed task's request, error, traceback."""

    request: Any
    exc: BaseException
    traceback: str | None


def rebuilt_arguments(failed: FailedCall) -> ErrbackArguments:
    """The arguments an errback would have had inline, from the stored failure.

    ``request`` is a Celery ``Context`` with the failed node's id, task name,
    and the arguments its message carried; ``exc`` is rebuilt by
    :func:`rebuilt_exception`; ``traceback`` is the stored traceback text of
    the failed attempt (None when the node failed before it ran).
    """
    args, kwargs = call_arguments(failed.dispatch)
    request = Context(
        id=failed.dispatch.node_id,
        task=failed.task,
        args=list(args),
        kwargs=kwargs,
    )
    exc = rebuilt_exception(failed.exc_type, failed.exc_message)
    return ErrbackArguments(request, exc, failed.traceback)


def rebuilt_exception(exc_type: str, message: str) -> Exception:
    """An exception of the stored class name, with the stored message.

    A built-in exception (``ValueError``, ``KeyError``, …) or one of Celery's
    is rebuilt as itself, from its message alone. Any other name (only the
    class name is stored, not its module) becomes a subclass of ``Exception``
    of that name in the module ``celeriac.rebuilt``, made the way Celery's
    result backend makes an exception class it cannot import.
    """
    for module in (builtins, celery_exceptions):
        cls = getattr(module, exc_type, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:  # a constructor that wants more than a message
                break
    name = exc_type if exc_type.isidentifier() else "Exception"
    made: type[Exception] = create_exception_cls(name, REBUILT_MODULE)
    return made(message)


def takes_request(app: Celery, signature: dict[str, Any]) -> bool:
    """Whether an errback takes ``(request, exc, traceback)`` (Celery's test).

    As in Celery's backend, the arguments a mutable errback stores count
    as given: ``old.s("label")`` of ``old(task_id, label)`` takes a task id.
    """
    task = app.tasks.get(signature["task"])
    header = getattr(task, "__header__", None)
    if header is None or isinstance(header, partial):
        return False
    args, kwargs = signature.get("args") or (), signature.get("kwargs") or {}
    if not signature.get("immutable") and (args or kwargs):
        with suppress(TypeError, ValueError):  # Celery counts them all then
            return bool(arity_greater(partial(header, *args, **kwargs), 1))
    return bool(arity_greater(header, 1))
