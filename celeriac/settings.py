"""Where celeriac's configuration comes from, and how its options are checked."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    ParamSpec,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

DEFAULT_DATABASE_URL = "sqlite:///celeriac.db"
DATABASE_URL_VARIABLE = "CELERIAC_DATABASE_URL"
APP_VARIABLE = "CELERIAC_APP"


def database_url(explicit: str | None = None) -> str:
    """The database URL: the argument, else $CELERIAC_DATABASE_URL, else SQLite."""
    return explicit or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL


class AtLeast:
    """An ``Annotated`` bound: the option's number is at least ``minimum``."""

    def __init__(self, minimum: float, strict: bool = False) -> None:
        self.minimum = minimum
        #: the number must be above ``minimum``, not equal to it
        self.strict = strict

    def refuses(self, value: float) -> bool:
        return value <= self.minimum if self.strict else value < self.minimum

    def __str__(self) -> str:
        return f"{'above' if self.strict else 'at least'} {self.minimum:g}"


#: A duration in seconds: a number, zero or more.
Seconds = Annotated[float, AtLeast(0)]
#: An interval in seconds: a number above zero.
Interval = Annotated[float, AtLeast(0, strict=True)]
#: A size in bytes: an integer, one or more.
ByteCount = Annotated[int, AtLeast(1)]
#: How many of something: an integer, one or more.
Count = Annotated[int, AtLeast(1)]

P = ParamSpec("P")
R = TypeVar("R")


def checked_options(function: Callable[P, R]) -> Callable[P, R]:
    """Check each keyword-only argument of ``function`` against its annotation.

    The signature is the one definition of the options: a value of the
    wrong type is a ``TypeError``, one out of range (an ``AtLeast`` bound,
    a ``Literal``) a ``ValueError``, each naming the option. Python itself
    refuses an unknown option with a ``TypeError`` naming it.
    """
    parameters = inspect.signature(function).parameters
    options = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    hints: dict[str, Any] = {}

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not hints:  # resolved once, on first use: the module is complete then
            resolved = get_type_hints(function, include_extras=True)
            hints.update({name: resolved[name] for name in options})
        for name, value in kwargs.items():
            if name in hints:
                check_option(name, value, hints[name])
        return function(*args, **kwargs)

    return call


def check_option(name: str, value: object, annotation: Any) -> None:
    """Raise ``TypeError`` or ``ValueError`` unless ``value`` fits ``annotation``."""
    bounds: tuple[Any, ...] = ()
    if get_origin(annotation) is Annotated:
        annotation, *rest = get_args(annotation)
        bounds = tuple(rest)
    union = get_origin(annotation) in _UNIONS
    members = get_args(annotation) if union else (annotation,)
    if value is None and type(None) in members:
        return
    kinds = tuple(kind for kind in members if kind is not type(None))
    if not any(_has_type(value, kind) for kind in kinds):
        expected = " or ".join(_describe(kind) for kind in members)
        raise TypeError(f"option {name} must be {expected}, not {value!r}")
    for kind in kinds:
        if get_origin(kind) is Literal and value not in get_args(kind):
            allowed = ", ".join(repr(choice) for choice in get_args(kind))
            raise ValueError(f"option {name} must be one of {allowed}, not {value!r}")
    for bound in bounds:
        if isinstance(bound, AtLeast) and bound.refuses(float(value)):  # type: ignore[arg-type]
            raise ValueError(f"option {name} must be {bound}, not {value!r}")


_UNIONS = (Union, UnionType)


def _has_type(value: object, kind: Any) -> bool:
    """Whether ``value`` is of ``kind`` (a bool is no number; an int is a float)."""
    if get_origin(kind) is Literal:
        return isinstance(value, str)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if get_origin(kind) is Literal:
        return "a string"
    if kind is type(None):
        return "None"
    names = {bool: "True or False", int: "an integer", float: "a number"}
    return names.get(kind) or str(kind.__name__)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for bare ``postgresql://`` URLs (SQLAlchemy picks psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
