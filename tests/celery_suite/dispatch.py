"""What converted tests call in place of ``apply_async``, ``delay``, ``canvas()``.

The conversion (``convert``) routes every dispatch of Celery's tests through
this module. In ``native`` mode each call does what the original did; in
``celeriac`` mode the canvas goes to ``engine.submit(...)`` and the test gets a
``WorkflowResult``, whose ``get()`` is ``Workflow.get()``. What a test does
that ``submit()`` or a ``Workflow`` has no counterpart for raises
``NotExpressible``, and the test is counted as such, with the reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from celery import Task
from celery.canvas import Signature, _chain, chord, group

from celeriac import Engine, Workflow

NATIVE = "native"
CELERIAC = "celeriac"


class NotExpressible(BaseException):
    """What the test does has no counterpart through ``submit()``.

    A ``BaseException``, so that no ``except Exception`` in a test swallows it.
    """


@dataclass
class Run:
    """The dispatch mode, and what the current test did through it."""

    mode: str = NATIVE
    engine: Engine | None = None
    submitted: int = 0
    not_expressible: list[str] = field(default_factory=list)

    def start_test(self) -> None:
        self.submitted = 0
        self.not_expressible.clear()

    def refuse(self, reason: str) -> NotExpressible:
        """Note that the current test cannot be expressed, and why."""
        self.not_expressible.append(reason)
        return NotExpressible(reason)


#: The one run of this process; the fixtures set its mode and engine.
RUN = Run()


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``: calling a chain, group or chord dispatches it.

    A plain signature's call runs the task here, as in Celery; anything else
    is called as it is.
    """
    if RUN.mode == NATIVE or not isinstance(function, _chain | group | chord):
        return function(*args, **kwargs)
    if isinstance(function, chord):
        # chord.__call__(body=None, **options)
        body = args[0] if args else kwargs.pop("body", None)
        canvas = function.clone()
        if body is not None:
            canvas.kwargs["body"] = body
        return apply_async(canvas, **kwargs)
    if isinstance(function, group):
        return apply_async(function, args, **kwargs)
    if not function.tasks:
        return None
    return apply_async(function, args, kwargs)


def delay(target: Any, *args: Any, **kwargs: Any) -> Any:
    """``target.delay(*args, **kwargs)``."""
    if RUN.mode == NATIVE:
        return target.delay(*args, **kwargs)
    return apply_async(target, args, kwargs)


def apply_async(
    target: Any,
    args: Any = None,
    kwargs: Any = None,
    *more: Any,
    **options: Any,
) -> Any:
    """``target.apply_async(args, kwargs, **options)``: a task or a canvas."""
    if RUN.mode == NATIVE:
        return target.apply_async(args, kwargs, *more, **options)
    if more:
        raise RUN.refuse("apply_async() with more than two positional arguments")
    canvas = target.s() if isinstance(target, Task) else target
    if not isinstance(canvas, Signature):
        raise RUN.refuse(f"apply_async() on {type(target).__name__}")
    engine = _engine()
    _check_options(engine, options)
    workflow = engine.submit(canvas, args=tuple(args or ()), kwargs=kwargs, **options)
    RUN.submitted += 1
    return WorkflowResult(workflow)


def _engine() -> Engine:
    if RUN.engine is None:
        raise RuntimeError(
            "celeriac mode without an engine: the worker fixture sets it"
        )
    return RUN.engine


def _check_options(engine: Engine, options: dict[str, Any]) -> None:
    """Refuse the call options ``engine.submit()`` does not take."""
    parameters = inspect.signature(engine.submit).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise RUN.refuse(f"submit() takes no call option {', '.join(unknown)}")


class WorkflowResult:
    """Stands where Celery's ``AsyncResult`` stood: ``get()`` is ``Workflow.get()``.

    Any other attribute is the ``Workflow``'s, if it has one by that name;
    else the test is not expressible.
    """

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **more: Any,
    ) -> Any:
        """``Workflow.get(timeout)``; the polling options have nothing to set."""
        del interval, disable_sync_subtasks  # how Celery polls; not a result
        if more:
            raise RUN.refuse(f"AsyncResult.get({', '.join(sorted(more))}=...)")
        if propagate:
            return self.workflow.get(timeout=timeout)
        parameters = inspect.signature(self.workflow.get).parameters
        if "propagate" not in parameters:
            raise RUN.refuse("Workflow.get() takes no propagate=False")
        return self.workflow.get(timeout=timeout, propagate=False)  # type: ignore[call-arg, unused-ignore]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self.workflow, name)
        except AttributeError:
            raise RUN.refuse(
                f"AsyncResult.{name} has no counterpart on a Workflow"
            ) from None
