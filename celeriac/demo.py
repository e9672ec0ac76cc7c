"""``celeriac demo``: the embedded default from submit to result.

One process holds everything: a Celery app on the in-memory broker, a worker
running in threads (``engine.embedded_worker()``) and the SQLite file
``celeriac.db`` in the current directory. The workflow is a chain of three
tasks, a group of eight and a chord body; the demo pauses it after a third of
its tasks, shows that nothing moves while it is PAUSED, resumes it and prints
the result. It uses only celeriac's public API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery, chain, chord
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as ProgressBar
from rich.table import Table

from celeriac import CeleriacError, Engine, Progress, Workflow, WorkflowState

#: How long each demo task works, in seconds.
STEP_SECONDS = 0.5
#: Pause once this many of the twelve tasks are done (about a third).
PAUSE_AFTER = 4
#: How long the demo holds the workflow PAUSED before resuming it.
HOLD_SECONDS = 1.0
#: Give up on any one wait after this many seconds.
TIMEOUT = 60.0

Stop = Callable[[str, Progress], bool]


def make_app() -> Celery:
    """A Celery app on the in-memory broker with the three demo tasks."""
    app = Celery("celeriac-demo", broker="memory://localhost/", set_as_current=False)

    @app.task(name="celeriac.demo.prepare", shared=False)
    def prepare(value: int) -> int:
        time.sleep(STEP_SECONDS)
        return value * 2

    @app.task(name="celeriac.demo.crunch", shared=False)
    def crunch(value: int, part: int) -> int:
        time.sleep(STEP_SECONDS)
        return value * part

    @app.task(name="celeriac.demo.total", shared=False)
    def total(values: list[int]) -> int:
        time.sleep(STEP_SECONDS)
        return sum(values)

    return app


def make_canvas(app: Celery) -> Any:
    """The workflow: prepare x3 (1 -> 8), crunch x8 (8 * part), total (224)."""
    prepare = app.tasks["celeriac.demo.prepare"]
    crunch = app.tasks["celeriac.demo.crunch"]
    total = app.tasks["celeriac.demo.total"]
    return chain(
        prepare.s(1),
        prepare.s(),
        prepare.s(),
        chord([crunch.s(part) for part in range(8)], total.s()),
    )


def run_demo(console: Console, database_url: str | None = None) -> int:
    """Run the demo, printing to ``console``; return the exit code."""
    app = make_app()
    engine = Engine(app, database_url)
    engine.migrate()
    console.print(f"celeriac demo: database {engine.database_url}, embedded worker")
    try:
        with engine.embedded_worker(concurrency=2):
            workflow = engine.submit(make_canvas(app), name="celeriac-demo")
            console.print(f"submitted workflow {workflow.id}")
            console.print("  3 x prepare (a chain) -> 8 x crunch (a group) -> total")
            result = _drive(console, workflow)
        console.print(f"result: [bold]{result!r}[/]")
        console.print(_node_table(workflow))
    except (CeleriacError, TimeoutError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        engine.close()  # on SQLite: the data moves from the -wal file into the db
    console.print(f"see it again with: celeriac show {workflow.id}")
    return 0


def _drive(console: Console, workflow: Workflow) -> Any:
    """Follow the workflow, pause it, hold it, resume it; return its result."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]} running"),
    )
    with ProgressBar(*columns, console=console) as bar:
        task = bar.add_task(workflow.state, total=None, running=0)
        seen = _follow(workflow, bar, task, lambda state, p: p.done >= PAUSE_AFTER)
        workflow.pause()
        bar.console.print(
            f"pause requested at {seen.done}/{seen.total} done; running tasks finish"
        )
        progress = _follow(
            workflow, bar, task, lambda state, p: state == WorkflowState.PAUSED
        )
        bar.console.print(
            f"[yellow]PAUSED[/]: {progress.done}/{progress.total} done, "
            f"{progress.running} running, {progress.failed} failed"
        )
        time.sleep(HOLD_SECONDS)
        bar.console.print(
            f"after {HOLD_SECONDS:.0f} s still {workflow.progress().done} done: "
            "nothing is dispatched while PAUSED; resuming"
        )
        workflow.resume()
        _follow(
            workflow, bar, task, lambda state, p: state != WorkflowState.IN_PROGRESS
        )
        return workflow.get(timeout=TIMEOUT)


def _follow(workflow: Workflow, bar: ProgressBar, task: TaskID, stop: Stop) -> Progress:
    """Update the bar until ``stop(state, progress)`` holds; return the progress."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        state, progress = workflow.state, workflow.progress()
        bar.update(
            task,
            description=state,
            completed=progress.done,
            total=progress.total,
            running=progress.running,
        )
        if stop(state, progress):
            return progress
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow {workflow.id} is stuck in {state}")
        time.sleep(0.05)


def _node_table(workflow: Workflow) -> Table:
    table = Table("TASK", "STATE", "ATTEMPTS", "DURATION")
    for node in workflow.nodes():
        runtimes = [a.runtime for a in node.attempts if a.runtime is not None]
        duration = f"{sum(runtimes):.2f}s" if runtimes else "-"
        table.add_row(node.task, node.state, str(len(node.attempts)), duration)
    return table
