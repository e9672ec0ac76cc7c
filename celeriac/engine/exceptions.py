"""A failed task's exception, kept in the database and raised again by ``get()``.

Celery's result backend keeps an exception as its class's module and
qualified name and its arguments, and rebuilds it from the class it finds
loaded under that name (``celery/backends/base.py``, ``exception_to_python``).
celeriac keeps the same three things and rebuilds the exception the same way,
as an instance of a class derived from both the task's own class and
``WorkflowFailed``: ``except ExpectedException`` catches it, as natively, and
so does ``except WorkflowFailed``. A class Celery could not rebuild either
(not loaded, not an exception, arguments it refuses) gives plain
``WorkflowFailed``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from celery.utils.serialization import ensure_serializable

from celeriac.errors import WorkflowFailed
from celeriac.records import Failure

#: The longest "module:qualname" the workflows table keeps.
_CLASS_LIMIT = 255
#: Each class combined with WorkflowFailed, made once: two failures of one
#: class raise exceptions of one class.
_NATIVE_CLASSES: dict[type[BaseException], type[WorkflowFailed]] = {}


def failure_of(node_id: str | None, exc: BaseException) -> Failure:
    """``exc`` as the workflow keeps it: type, message, class and arguments."""
    cls = type(exc)
    name = f"{cls.__module__}:{cls.__qualname__}"
    args = ensure_serializable(list(exc.args), json.dumps)
    return Failure(
        node_id,
        cls.__name__,
        str(exc),
        name if len(name) <= _CLASS_LIMIT else None,
        json.dumps(list(args)),
    )


def raised_by(
    failed: WorkflowFailed, exc_class: str | None, exc_args: str | None
) -> WorkflowFailed:
    """The exception ``get()`` raises: the task's own class as well, if it can be.

    ``failed`` keeps its attributes (``workflow_id``, ``node_id``,
    ``exc_type``, ``exc_message``); ``str()`` of the rebuilt exception is the
    task's own message, as natively.
    """
    cls = _loaded_exception_class(exc_class)
    if cls is None or exc_args is None:
        return failed
    try:
        args = json.loads(exc_args)
        native = _native_class(cls)
        rebuilt = native(*args)
    except Exception:
        return failed
    vars(rebuilt).update(vars(failed))
    return rebuilt


def _loaded_exception_class(exc_class: str | None) -> type[BaseException] | None:
    """The class named "module:qualname", found as Celery finds it: loaded only."""
    module, _, qualname = (exc_class or "").partition(":")
    found: Any = sys.modules.get(module)
    for name in qualname.split("."):
        found = getattr(found, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return None


def _native_class(cls: type[BaseException]) -> type[WorkflowFailed]:
    """``cls`` and ``WorkflowFailed`` in one class, made once per class.

    It is built and looks like ``cls`` (name, module, message, arguments),
    and pickles as ``cls``: re-raised inside another task, it travels as the
    task's own exception. Raises TypeError when the two cannot be combined
    (incompatible layouts, a class already deriving from ``WorkflowFailed``).
    """
    made = _NATIVE_CLASSES.get(cls)
    if made is not None:
        return made

    def reduce(self: BaseException) -> tuple[type[BaseException], tuple[Any, ...]]:
        return cls, tuple(self.args)

    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__init__": cls.__init__,
        "__reduce__": reduce,
    }
    # WorkflowFailed first: a ``super().__init__(message)`` in ``cls`` then
    # reaches Exception, as it does natively, not WorkflowFailed
    made = type(cls.__name__, (WorkflowFailed, cls), namespace)
    _NATIVE_CLASSES[cls] = made
    return made
