"""A tour of Celery's canvas, each primitive run natively and through celeriac.

The same tasks are defined on two Celery apps. On the first, each canvas runs
the native way: ``canvas.apply_async(args).get()`` with a result backend and
an in-process worker. On the second, the same canvas goes through
``engine.submit(canvas, args).get()``. Each result is printed next to the
other; the script exits 1 if any pair differs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from celery import Celery, chain, chord, group
from celery.contrib.testing.worker import start_worker

from celeriac import Engine

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///tour.db")
TIMEOUT = 10.0


def make_app(name: str, **conf: Any) -> SimpleNamespace:
    """A Celery app with the tour's tasks; returns them, with ``app`` and ``notes``."""
    app = Celery(name, broker="memory://localhost/", set_as_current=False)
    # each app its own queue: kombu's in-memory queues are shared process-wide
    app.conf.update(task_default_queue=name, **conf)
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    notes: list[Any] = []
    lock = threading.Lock()

    @app.task(name="tour.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tour.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tour.square", shared=False)
    def square(x: int) -> int:
        return x * x

    @app.task(name="tour.tsum", shared=False)
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="tour.scale", shared=False)
    def scale(x: int, factor: int = 1, offset: int = 0) -> int:
        return x * factor + offset

    @app.task(name="tour.note", shared=False)
    def note(value: Any) -> Any:
        """A link callback: remembers what it was called with."""
        with lock:
            notes.append(value)
        return value

    return SimpleNamespace(
        app=app,
        notes=notes,
        add=add,
        mul=mul,
        square=square,
        tsum=tsum,
        scale=scale,
        note=note,
    )


def _linked(t: SimpleNamespace) -> Any:
    signature = t.add.s(2, 2)
    signature.link(t.note.s())
    return signature


@dataclass(frozen=True)
class Stop:
    """One stop of the tour: a canvas, and the arguments it is called with."""

    name: str
    shows: str
    build: Callable[[SimpleNamespace], Any]
    args: tuple[Any, ...] = ()
    #: how many link callbacks must have run before the result is complete
    notes: int = 0


TOUR = [
    Stop(
        "chain",
        "add(1, 2) | mul(10) | add(5)",
        lambda t: chain(t.add.s(1, 2), t.mul.s(10), t.add.s(5)),
    ),
    Stop(
        "group",
        "group(add(i, i) for i in 0..3)",
        lambda t: group(t.add.s(i, i) for i in range(4)),
    ),
    Stop(
        "chord",
        "chord(mul(i, i) for i in 0..4)(tsum)",
        lambda t: chord((t.mul.s(i, i) for i in range(5)), t.tsum.s()),
    ),
    Stop("map", "square.map([1, 2, 3])", lambda t: t.square.map([1, 2, 3])),
    Stop(
        "starmap",
        "add.starmap([(1, 2), (3, 4), (5, 6)])",
        lambda t: t.add.starmap([(1, 2), (3, 4), (5, 6)]),
    ),
    Stop(
        "chunks",
        "add.chunks(zip(0..5, 0..5), 2)",
        lambda t: t.add.chunks(zip(range(6), range(6), strict=True), 2),
    ),
    Stop("partial", "add.s(10) called with (5,)", lambda t: t.add.s(10), args=(5,)),
    Stop(
        "partial kwargs",
        "scale.s(factor=3) | scale.s(offset=1), called with (7,)",
        lambda t: t.scale.s(factor=3) | t.scale.s(offset=1),
        args=(7,),
    ),
    Stop(
        "immutable",
        "add(1, 1) | add.si(5, 5) | mul(2)",
        lambda t: t.add.s(1, 1) | t.add.si(5, 5) | t.mul.s(2),
    ),
    Stop("link", "add(2, 2) linked to note()", _linked, notes=1),
]


def observe(tasks: SimpleNamespace, stop: Stop, run: Callable[[Any], Any]) -> Any:
    """Run one stop; with link callbacks, wait for them and show what they got."""
    tasks.notes.clear()
    try:
        result = run(stop)
    except Exception as exc:
        return f"error {type(exc).__name__}: {exc}"
    if not stop.notes:
        return result
    deadline = time.monotonic() + TIMEOUT
    while len(tasks.notes) < stop.notes and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"result": result, "link got": list(tasks.notes)}


def run_native() -> list[Any]:
    tasks = make_app("tour-native", result_backend="cache+memory://")

    def run(stop: Stop) -> Any:
        canvas = stop.build(tasks)
        return canvas.apply_async(stop.args).get(timeout=TIMEOUT, interval=0.01)

    with start_worker(
        tasks.app, pool="threads", perform_ping_check=False, loglevel="WARNING"
    ):
        return [observe(tasks, stop, run) for stop in TOUR]


def run_celeriac() -> list[Any]:
    tasks = make_app("tour-celeriac")
    engine = Engine(tasks.app, DATABASE_URL)

    def run(stop: Stop) -> Any:
        workflow = engine.submit(stop.build(tasks), args=stop.args, name=stop.name)
        return workflow.get(timeout=TIMEOUT)

    with engine.embedded_worker(concurrency=4):
        return [observe(tasks, stop, run) for stop in TOUR]


def main() -> int:
    print(f"native Celery (cache+memory:// results), then celeriac ({DATABASE_URL})")
    # One in-process worker at a time: they share process-wide worker state.
    native = run_native()
    ours = run_celeriac()
    agreed = 0
    for stop, theirs, mine in zip(TOUR, native, ours, strict=True):
        same = theirs == mine
        agreed += same
        print(f"{stop.name:<15} {stop.shows}")
        print(f"{'':<15} celery:   {theirs!r}")
        print(f"{'':<15} celeriac: {mine!r}  {'same' if same else 'DIFFERENT'}")
    if agreed == len(TOUR):
        print(f"all {len(TOUR)} canvases agree with native Celery")
        return 0
    print(f"{len(TOUR) - agreed} of {len(TOUR)} canvases differ from native Celery")
    return 1


if __name__ == "__main__":
    sys.exit(main())
