"""Chaos: processes and servers die under running workflows.

Real ``celery -A tests.proc_app worker`` processes (prefork, two pool
processes each, late acks, prefetch 1, reject on worker lost) run workflows
against the test's own PostgreSQL database and Redis, and something dies at a
bad moment: worker processes (SIGKILL, twenty times at random), Redis
(restarted empty: every message lost), PostgreSQL (down for ten seconds), the
producer (between its commit and its publish), every worker of a paused
workflow. Each workflow must still end with the result native Celery gives,
and the database must show every completion recorded once.

The chaos test prints its seed; ``CELERIAC_CHAOS_SEED=<seed>`` replays its
random choices (the canvas's timings, which process dies, and when).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import kombu.pools
import pytest
import sqlalchemy as sa
from celery import Celery, chain, chord, group

from celeriac import Workflow, WorkflowState
from celeriac.storage.schema import attempts, edges, events, nodes
from tests.servers import Server
from tests.waiting import wait_for
from tests.workers import Workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
W = WorkflowState

#: Liveness in seconds rather than minutes: a dead worker's nodes run again
#: about three seconds after it died.
FAST = {
    "heartbeat_interval": 0.3,
    "worker_timeout": 2,
    "recovery_interval": 0.5,
    "recovery_delay": 2,
}
#: kombu sweeps the unacknowledged messages of Redis every 100 s by default
#: (``unacked_restore_interval`` 10 s, and a scan every 10th time): once a
#: second instead, so a short visibility timeout has its effect at once.
SWEEP = {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
RECOVERED = "published again by recovery"


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_broker_connections() -> Iterator[None]:
    """No pooled broker connection outlives a test.

    kombu pools broker connections per URL for the whole process, across
    Celery apps: once a test restarted Redis, the pooled ones are dead, and
    the workers' ping (``Workers.start``) does not reconnect.
    """
    kombu.pools.reset()
    yield
    kombu.pools.reset()


def engine_options(**engine: Any) -> Any:
    """Parametrize ``proc_env`` indirectly with these options."""
    return pytest.mark.parametrize(
        "proc_env", [pytest.param(engine, id="-".join(engine))], indirect=True
    )


# -- reading the database ----------------------------------------------------------


def table_rows(proc: ModuleType, table: sa.Table, workflow_id: str) -> list[Any]:
    """Every row of ``table`` that belongs to the workflow, in insertion order."""
    order = table.c.id if "id" in table.c and table is not nodes else None
    query = sa.select(table).where(table.c.workflow_id == workflow_id)
    if order is not None:
        query = query.order_by(order)
    with proc.engine._db.connect() as conn:
        return list(conn.execute(query).all())


def recovered(proc: ModuleType, workflow_id: str) -> list[Any]:
    """The events of the nodes the recovery pass published again."""
    return [e for e in table_rows(proc, events, workflow_id) if e.detail == RECOVERED]


def one_success_each(workflow: Workflow) -> list[str]:
    """Nodes without exactly one SUCCEEDED attempt, or with an attempt still open."""
    wrong = []
    for node in workflow.nodes():
        states = [attempt.state for attempt in node.attempts]
        if states.count("SUCCEEDED") != 1 or "RUNNING" in states:
            wrong.append(f"{node.task} {node.id}: {states}")
    return wrong


def restart_redis_empty(
    proc: ModuleType, workers: Workers, server: Server
) -> list[str]:
    """Kill Redis (every message is lost) and start it again, empty.

    Returns the workers that did not survive it, replaced by new ones:
    kombu 5.7 may crash a worker whose broker connection breaks while it
    holds unacknowledged messages ("Unrecoverable error: AttributeError:
    'NoneType' object has no attribute 'hostname'", raised from
    ``restore_unacked`` on the closing channel). That is Celery's to fix, and
    a process supervisor restarts such a worker; so does this.
    """
    names = sorted(workers.processes)
    server.stop(immediate=True)
    server.start()

    def fate(name: str) -> str | None:
        log = workers.log_path(name).read_text(errors="replace")
        if "Unrecoverable error" in log:
            return "crashed"
        return "reconnected" if log.count("Connected to redis") >= 2 else None

    wait_for(
        lambda: all(fate(name) for name in names),
        timeout=30,
        interval=0.1,
        what=f"workers {names} reconnected to Redis, or crashed",
    )
    crashed = [name for name in names if fate(name) == "crashed"]
    for name in crashed:
        workers.kill(name)  # its pool processes too
    if crashed:
        # kombu keeps this process's broker connections in process-wide
        # pools, dead since Redis died, and the workers' ping does not
        # reconnect: fresh pools, and a fresh app to ping from (this
        # process publishes nothing more)
        kombu.pools.reset()
        workers.app = Celery("ping", broker=proc.BROKER_URL, set_as_current=False)
        workers.start(len(crashed))
    return crashed


def chain_of_groups(
    task: Any, levels: int, width: int, seconds: float
) -> tuple[Any, list[int]]:
    """A chain of ``levels`` groups of ``width`` ``task`` nodes, and its result.

    Each node gets the list of the results of the group before it:
    ``task(values, j) == (sum(values) + j) % 1009``.
    """
    steps = [group(task.s([], j, seconds) for j in range(width))]
    steps += [
        group(task.s(j, seconds) for j in range(width)) for _ in range(levels - 1)
    ]
    expected = [j % 1009 for j in range(width)]
    for _ in range(levels - 1):
        expected = [(sum(expected) + j) % 1009 for j in range(width)]
    return chain(*steps), expected


# -- 1. twenty random SIGKILLs -----------------------------------------------------

KILLS = 20


def chaos_canvas(p: ModuleType, rng: random.Random) -> tuple[Any, int, dict[str, int]]:
    """A 300-node canvas, the value Celery returns for it, and its retrying keys.

    Built from chains, groups, chords (a group in a chain is one too), and
    two kinds of retrying tasks: ``p.flaky`` calls ``self.retry``, ``p.auto``
    raises an exception in ``autoretry_for``. Each is told which of its runs
    fail (``failures``), counted per ``key`` across all processes.
    """

    def secs() -> float:
        return round(rng.uniform(0.05, 0.6), 2)

    retrying: dict[str, int] = {}

    # A: a chord of 40 chains of three, then tsum(values, 0)   [121 tasks]
    header, values = [], []
    for i in range(40):
        key, failures = f"a{i}", (2 if i % 9 == 0 else 1 if i % 3 == 0 else 0)
        retrying[key] = failures
        first = p.slow_add.s(i, 1, secs())
        second = p.flaky.s(i, key=key, failures=failures)
        header.append(chain(first, second, p.add.s(2)))
        values.append(((i + 1) + i) + 2)
    part_a = chord(header, p.tsum.s(0))
    value_a = sum(values) + 0

    # B: a group of six chords; each header task gets A's value first,
    # slow_add(value_a, 10k + j); each body adds k             [96 tasks]
    part_b = group(
        chord([p.slow_add.s(10 * k + j, secs()) for j in range(15)], p.tsum.s(k))
        for k in range(6)
    )
    value_b = [sum(value_a + 10 * k + j for j in range(15)) + k for k in range(6)]

    # C: B's list of six, summed, plus 100                       [1 task]
    part_c = p.tsum.s(100)
    value_c = sum(value_b) + 100

    # D: a group of 30 chains, each getting C's value first     [80 tasks]
    members, value_d = [], []
    for m in range(30):
        key = f"d{m}"
        if m % 3 == 0:  # a chain with a group inside: x, [x + 1, x + 2], their sum
            retrying[key] = 1
            inner = group(p.slow_add.s(1, secs()), p.slow_add.s(2, secs()))
            members.append(chain(p.auto.s(m, key=key, failures=1), inner, p.tsum.s()))
            x = value_c + m
            value_d.append((x + 1) + (x + 2))
        else:
            retrying[key] = 1 if m % 4 == 1 else 0
            auto = p.auto.s(m, key=key, failures=retrying[key])
            members.append(chain(auto, p.slow_add.s(m, secs())))
            value_d.append((value_c + m) + m)
    part_d = group(members)

    # E: D's results summed, through the gate, which holds the workflow
    # open until the chaos is over                              [2 tasks]
    canvas = chain(part_a, part_b, part_c, part_d, p.tsum.s(), p.gate.s())
    return canvas, sum(value_d), retrying


def pool_children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` (a worker's pool)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def unfinished(workflow: Workflow) -> dict[str, list[str]]:
    """The nodes that did not succeed (yet), by state: ``task id [attempts]``."""
    found: dict[str, list[str]] = defaultdict(list)
    for node in workflow.nodes():
        if node.state != "SUCCEEDED":
            tried = [attempt.state for attempt in node.attempts]
            found[node.state].append(f"{node.task} {node.id} {tried}")
    return dict(found)


def unleash(
    workers: Workers,
    workflow: Workflow,
    rng: random.Random,
    total: int,
    seed: int,
) -> list[str]:
    """SIGKILL worker processes ``KILLS`` times while the workflow runs.

    The k-th kill comes at a random moment of the k-th twentieth of the
    workflow's progress, a little later still, and kills either a whole
    worker (its process group, as if its machine died: a new worker replaces
    it at once) or one of its pool processes (its worker starts another).
    """
    kills: list[str] = []
    for k in range(KILLS):
        target = int((total - 1) * (k + rng.random()) / KILLS)
        try:
            wait_for(
                lambda target=target: workflow.progress().done >= target,
                timeout=90,
                interval=0.05,
                what=f"{target} nodes done before kill {k + 1} (seed {seed})",
            )
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}; stuck: {unfinished(workflow)}") from None
        time.sleep(rng.uniform(0.0, 0.4))
        kills.append(kill_one(workers, rng))
    return kills


def kill_one(workers: Workers, rng: random.Random) -> str:
    """SIGKILL a whole worker (a new one replaces it) or one of its pool processes."""
    while True:
        name = rng.choice(sorted(workers.processes))
        children = pool_children(workers.processes[name].pid)
        if rng.random() < 0.4 or not children:
            workers.kill(name)
            workers.start(1)
            return f"worker {name}"
        pid = rng.choice(children)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it exited between the listing and the kill
            continue
        return f"pool process {pid} of {name}"


def queued_once(proc: ModuleType, workflow: Workflow) -> list[str]:
    """Nodes whose events show a dispatch that was not the engine's to make.

    A node is marked QUEUED (an event ``to_state`` QUEUED) in three ways:

    - ``PENDING -> QUEUED``: the dispatch by the one recorded completion that
      made it ready (or by ``submit`` for a root): exactly once per node.
      Two would mean a parent's successors, or a chord's body, were
      dispatched twice.
    - ``QUEUED -> QUEUED``, detail "published again by recovery": the same
      message again (same attempt base, the claim drops the second
      delivery); only the recovery pass does this.
    - ``RUNNING -> QUEUED``: a new dispatch generation (attempt base n) after
      attempt n was lost. The recovery pass writes it in the transaction
      that marks attempt n LOST, so its event "attempt n lost" has the very
      same timestamp; each attempt is lost at most once.

    And a node's completion is recorded once: one ``RUNNING -> SUCCEEDED``.
    """
    by_node: dict[str, list[Any]] = defaultdict(list)
    for event in table_rows(proc, events, workflow.id):
        if event.node_id is not None:
            by_node[event.node_id].append(event)
    wrong = []
    for node in workflow.nodes():
        mine = by_node[node.id]
        lost = [e for e in mine if (e.detail or "").endswith(" lost")]
        lost_at = {e.at for e in lost}
        dispatched = sorted(
            (e.from_state or "None") for e in mine if e.to_state == "QUEUED"
        )
        problems = []
        if dispatched.count("PENDING") != 1:
            problems.append(f"{dispatched.count('PENDING')} dispatches")
        for event in mine:
            if event.to_state != "QUEUED" or event.from_state == "PENDING":
                continue
            if event.from_state == "QUEUED" and event.detail == RECOVERED:
                continue
            if event.from_state == "RUNNING" and event.at in lost_at:
                continue
            problems.append(f"queued from {event.from_state} ({event.detail})")
        if len({e.detail for e in lost}) != len(lost):
            problems.append(f"an attempt lost twice: {[e.detail for e in lost]}")
        if [e.to_state for e in mine].count("SUCCEEDED") != 1:
            problems.append("not one recorded success")
        if problems:
            wrong.append(f"{node.task} {node.id}: {problems}")
    return wrong


def started_before_parents_finished(proc: ModuleType, workflow: Workflow) -> list[str]:
    """Task nodes with an attempt that started before a parent task succeeded.

    A node's task parents are found through the join nodes between them
    (a chord's body hangs on its header through one join).
    """
    kind = {row.id: row.kind for row in table_rows(proc, nodes, workflow.id)}
    parents: dict[str, list[str]] = defaultdict(list)
    for edge in table_rows(proc, edges, workflow.id):
        if not edge.on_error:
            parents[edge.child_id].append(edge.parent_id)

    def task_parents(node_id: str) -> set[str]:
        found: set[str] = set()
        for parent in parents[node_id]:
            found |= {parent} if kind[parent] == "TASK" else task_parents(parent)
        return found

    finished = {}
    first_start: dict[str, datetime] = {}
    for attempt in table_rows(proc, attempts, workflow.id):
        if attempt.state == "SUCCEEDED":
            finished[attempt.node_id] = attempt.finished_at
        earliest = first_start.get(attempt.node_id, attempt.started_at)
        first_start[attempt.node_id] = min(earliest, attempt.started_at)
    early = [
        (node_id, parent)
        for node_id, started in first_start.items()
        for parent in task_parents(node_id)
        if started < finished[parent]
    ]
    return [
        f"{node_id} started {first_start[node_id]}, parent {parent} "
        f"finished {finished[parent]}: {history(proc, workflow, {node_id, parent})}"
        for node_id, parent in early
    ]


def history(proc: ModuleType, workflow: Workflow, node_ids: set[str]) -> str:
    """The attempts and events of ``node_ids``, for a failure's message."""
    lines = [
        f"attempt {a.node_id} #{a.number} {a.state} {a.worker} pid {a.pid} "
        f"delivery {a.delivery} {a.started_at} - {a.finished_at}"
        for a in table_rows(proc, attempts, workflow.id)
        if a.node_id in node_ids
    ]
    lines += [
        f"event {e.node_id} {e.from_state} -> {e.to_state} {e.at} {e.detail}"
        for e in table_rows(proc, events, workflow.id)
        if e.node_id in node_ids
    ]
    return "\n".join(lines)


@pytest.mark.timeout(300)
@engine_options(engine=FAST)
def test_twenty_random_sigkills_of_workers_and_pool_processes(
    proc: ModuleType, workers: Workers
) -> None:
    seed = int(os.environ.get("CELERIAC_CHAOS_SEED") or random.randrange(2**32))
    print(f"\nchaos seed {seed}: CELERIAC_CHAOS_SEED={seed} replays it")
    rng = random.Random(seed)
    canvas, expected, retrying = chaos_canvas(proc, rng)
    workers.start(2)
    began = time.monotonic()
    workflow = proc.engine.submit(canvas, name="chaos")
    total = workflow.progress().total
    assert total == 300

    kills = unleash(workers, workflow, rng, total, seed)
    chaos_took = time.monotonic() - began
    proc.open_gate()
    try:
        result = workflow.get(timeout=120)
    except TimeoutError as stuck:
        raise AssertionError(f"{stuck} (seed {seed}): {unfinished(workflow)}") from None
    took = time.monotonic() - began

    seeded = f"(seed {seed}; kills: {kills})"
    assert len(kills) == KILLS
    assert result == expected, seeded
    assert workflow.state == W.COMPLETED
    # every completion was recorded once, by one attempt, and its
    # successors were dispatched once, after it
    assert one_success_each(workflow) == [], seeded
    assert queued_once(proc, workflow) == [], seeded
    early = started_before_parents_finished(proc, workflow)
    assert early == [], "\n".join([seeded, *early])
    # the retrying tasks did retry through Celery, and got past their failures
    nodes_ = workflow.nodes()
    states = [a.state for node in nodes_ for a in node.attempts]
    assert states.count("RETRY") >= 1, seeded
    short = {k: proc.retried(k) for k, n in retrying.items() if proc.retried(k) <= n}
    assert short == {}, seeded
    # chord bodies (every p.tsum node) ran once each, but for an attempt
    # that a kill interrupted (LOST): a body runs again only after a crash
    bodies = [node for node in nodes_ if node.task == "p.tsum"]
    interrupted = sum(a.state == "LOST" for node in bodies for a in node.attempts)
    assert len(bodies) == 1 + 6 + 1 + 10 + 1
    assert len(bodies) <= proc.runs("p.tsum") <= len(bodies) + interrupted, seeded

    lost = states.count("LOST")
    moves = [(e.from_state, e.to_state) for e in table_rows(proc, events, workflow.id)]
    dropped = sum(
        path.read_text(errors="replace").count("dropped: duplicate")
        for path in workers.logs.glob("*.log")
    )
    print(
        f"chaos seed {seed}: {len(kills)} kills in {chaos_took:.1f} s, "
        f"completed after {took:.1f} s; {lost} attempts lost, "
        f"{states.count('RETRY')} Celery retries, "
        f"{len(recovered(proc, workflow.id))} nodes published again by recovery, "
        f"{moves.count(('RUNNING', 'QUEUED'))} dispatched again after a lost attempt, "
        f"{dropped} duplicate deliveries dropped, {interrupted} chord bodies "
        f"interrupted\n  kills: {kills}"
    )


# -- 2. Redis restarted empty ------------------------------------------------------


@engine_options(engine=FAST)
def test_redis_restarted_empty_in_the_middle_of_a_chain_of_groups(
    proc: ModuleType, workers: Workers, redis_server: Server
) -> None:
    workers.start(2)
    # p.fold does not touch Redis: a body must not fail while Redis is away
    canvas, expected = chain_of_groups(proc.fold, levels=8, width=10, seconds=0.2)
    workflow = proc.engine.submit(canvas)

    def queued() -> int:
        counts = workflow.node_counts()
        return int(counts.get(("TASK", "QUEUED"), 0))

    # more nodes QUEUED than four pool processes can hold: some messages
    # wait in Redis, and are lost with it
    wait_for(
        lambda: workflow.progress().done >= 20 and queued() >= 5,
        timeout=30,
        interval=0.02,
        what="20 nodes done and 5 queued",
    )
    done = workflow.progress().done
    crashed = restart_redis_empty(proc, workers, redis_server)
    assert done < 80, "Redis died too late to test anything"

    assert workflow.get(timeout=60) == expected
    assert one_success_each(workflow) == []
    assert recovered(proc, workflow.id), "no node needed the recovery pass"
    print(f"\nworkers that crashed when Redis died (replaced): {crashed}")


# -- 3. PostgreSQL down for ten seconds --------------------------------------------


#: A worker silent for 30 s is dead (the default): longer than the outage,
#: during which no heartbeat gets through.
@engine_options(engine={"heartbeat_interval": 1, "recovery_interval": 1})
def test_postgres_stopped_for_ten_seconds_in_the_middle_of_a_workflow(
    proc: ModuleType, workers: Workers, postgres_server: Server
) -> None:
    workers.start(2)
    canvas, expected = chain_of_groups(proc.step, levels=10, width=8, seconds=0.1)
    workflow = proc.engine.submit(canvas)
    wait_for(lambda: workflow.progress().done >= 20, timeout=30, what="20 nodes")

    postgres_server.stop()
    stopped = time.monotonic()
    wait_for(
        lambda: time.monotonic() - stopped >= 10, timeout=11, interval=0.1, what="10 s"
    )
    postgres_server.start()
    done = workflow.progress().done
    assert done < 80, "PostgreSQL stopped too late to test anything"

    assert workflow.get(timeout=90) == expected
    # every step was retried until the database came back: nothing ran twice
    assert one_success_each(workflow) == []
    assert all(len(node.attempts) == 1 for node in workflow.nodes())
    assert proc.runs("p.step") == 80


# -- 4. the producer dies between its commit and its publish -----------------------

#: Runs in a process of its own: submits with publishing sabotaged, so that
#: the process dies right after the workflow's transaction committed.
PRODUCER = """
import os, sys
from celery import chain, group
import celeriac.engine.scheduler
import tests.proc_app as p

def die(app, dispatches):
    os._exit(9)

celeriac.engine.scheduler.publish = die
width = int(sys.argv[2])
canvas = chain(group(p.add.s(i, i) for i in range(width)), p.tsum.s(1))
p.engine.submit(canvas, name=sys.argv[1])
"""


@engine_options(engine=FAST)
def test_a_producer_killed_between_commit_and_publish(
    proc: ModuleType, proc_env: dict[str, str], workers: Workers
) -> None:
    name, width = f"orphan-{uuid.uuid4().hex[:8]}", 6
    producer = subprocess.run(
        [sys.executable, "-c", PRODUCER, name, str(width)],
        cwd=ROOT,
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert producer.returncode == 9, producer.stderr

    # stored and started in the database, but not a message went out
    (record,) = proc.engine.list_workflows(name=name)
    workflow = proc.engine.workflow(record.id)
    assert workflow.state == W.IN_PROGRESS
    assert [node.state for node in workflow.nodes()] == ["QUEUED"] * width + ["PENDING"]
    assert proc.backlog() == 0

    workers.start(2)  # their recovery pass publishes the queued nodes
    assert workflow.get(timeout=30) == sum(i + i for i in range(width)) + 1
    assert one_success_each(workflow) == []
    roots = {node.id for node in workflow.nodes()[:width]}
    assert {event.node_id for event in recovered(proc, workflow.id)} >= roots
    assert queued_once(proc, workflow) == []


# -- 5. paused, every worker killed, restarted, resumed ----------------------------


def attempted(workflow: Workflow) -> set[str]:
    """Ids of the nodes a worker was allowed to start."""
    return {node.id for node in workflow.nodes() if node.attempts}


@engine_options(engine=FAST)
def test_a_paused_workflow_whose_workers_all_died_settles_and_resumes(
    proc: ModuleType, workers: Workers
) -> None:
    names = workers.start(2)
    tags = [f"n{i:02d}" for i in range(12)]
    workflow = proc.engine.submit(group(proc.stamp.si(tag, 1.5) for tag in tags))
    tag_of = {node.id: tag for node, tag in zip(workflow.nodes(), tags, strict=True)}
    wait_for(
        lambda: proc.stamp_workers() == set(names),
        timeout=20,
        what="both workers running a node",
    )

    workflow.pause()
    paused, paused_at = time.time(), datetime.now(UTC)
    admitted = attempted(workflow)
    for name in names:
        workers.kill(name)
    orphans = {node.id for node in workflow.nodes() if node.state == "RUNNING"}
    assert orphans, "no node was running when the workers died"
    assert workflow.state == W.REQUESTING_PAUSE

    workers.start(2)
    # recovery: the dead workers' attempts are LOST, their nodes go back to
    # PENDING, and with nothing running the workflow settles
    wait_for(lambda: workflow.state == W.PAUSED, timeout=20, what="PAUSED")
    for node in workflow.nodes():
        if node.id in orphans:
            assert (node.state, node.attempts[-1].state) == ("PENDING", "LOST")
    # A window in which nothing must happen: the live workers and their
    # recovery passes (every 0.5 s, republishing after 2 s) leave it alone.
    time.sleep(3)
    assert workflow.state == W.PAUSED
    assert attempted(workflow) == admitted
    resumed, resumed_at = time.time(), datetime.now(UTC)
    workflow.resume()

    assert workflow.get(timeout=40) == tags
    nodes_ = workflow.nodes()
    # no node started while the workflow was pausing or paused: every attempt
    # was claimed before pause() returned or after resume() was called, and
    # every body that started in between belongs to a node admitted before
    # (its claim came first), once
    starts = [a.started_at for node in nodes_ for a in node.attempts]
    assert [at for at in starts if paused_at <= at < resumed_at] == []
    between = [tag for tag, at in proc.stamps() if paused <= at < resumed]
    assert set(between) <= {tag_of[node_id] for node_id in admitted}
    assert len(between) == len(set(between))
    assert not [
        e for e in recovered(proc, workflow.id) if paused_at <= e.at < resumed_at
    ]
    assert one_success_each(workflow) == []
    for node in nodes_:
        if node.id in orphans:
            assert [a.state for a in node.attempts] == ["LOST", "SUCCEEDED"]
    history = [
        (e.from_state, e.to_state, e.detail)
        for e in table_rows(proc, events, workflow.id)
        if e.node_id is None
    ]
    assert history == [
        (None, "IN_PROGRESS", None),
        ("IN_PROGRESS", "REQUESTING_PAUSE", "pause"),
        ("REQUESTING_PAUSE", "PAUSED", "settle"),
        ("PAUSED", "IN_PROGRESS", "resume"),
        ("IN_PROGRESS", "COMPLETED", "complete"),
    ]


# -- 6. a long task under a short visibility timeout -------------------------------


@pytest.mark.parametrize(
    "proc_env",
    [{"engine": FAST, "transport": {"visibility_timeout": 2, **SWEEP}}],
    ids=["visibility-2s"],
    indirect=True,
)
def test_a_long_task_is_not_run_twice_under_a_short_visibility_timeout(
    proc: ModuleType, workers: Workers
) -> None:
    """Redis delivers the 6 s node again after 2 s; the claim drops it.

    The worker that runs it stays alive (its lease is renewed every 0.3 s
    while the body sleeps), so the second delivery is a duplicate.
    """
    workers.start(2)
    workflow = proc.engine.submit(chain(proc.stamp.si("long", 6), proc.add.si(1, 2)))
    assert workflow.get(timeout=30) == 3

    long_node = workflow.nodes()[0]
    assert [tag for tag, _ in proc.stamps()] == ["long"]
    assert proc.runs("p.stamp") == 1
    assert [(a.number, a.state) for a in long_node.attempts] == [(1, "SUCCEEDED")]
    logs = "".join(path.read_text() for path in workers.logs.glob("*.log"))
    assert f"node {long_node.id} dropped: duplicate" in logs


# -- a Celery retry whose message was lost ----------------------------------------


@engine_options(engine=FAST)
@pytest.mark.parametrize("loss", ["redis-restarted-empty", "worker-killed"])
def test_a_retrying_node_whose_retry_message_was_lost_runs_again(
    proc: ModuleType, workers: Workers, redis_server: Server, loss: str
) -> None:
    """redis-restarted-empty: the worker held the retry message (an ETA in
    its memory), and Celery drops it when its broker connection breaks;
    worker-killed: the message dies with its worker, and Redis gives it back
    only after the visibility timeout (an hour here; operations.md advises
    six hours)."""
    (name,) = workers.start(1)
    flaky = proc.flaky.s(1, 2, key="k", failures=1, countdown=4)
    workflow = proc.engine.submit(chain(flaky, proc.add.s(3)))
    wait_for(
        lambda: workflow.nodes()[0].state == "RETRYING", timeout=20, what="RETRYING"
    )
    if loss == "worker-killed":
        workers.kill(name)
        workers.start(1)
    else:
        crashed = restart_redis_empty(proc, workers, redis_server)
        print(f"\nworkers that crashed when Redis died (replaced): {crashed}")
    # recovery sends the retry again once it is recovery_delay overdue
    assert workflow.get(timeout=30) == 6
    first = workflow.nodes()[0]
    assert [e.node_id for e in recovered(proc, workflow.id)] == [first.id]
    # Redis restarted empty also forgot p.flaky's count of its failures: its
    # body fails once more then, and Celery retries it again
    runs = 2 if loss == "worker-killed" else 3
    states = [a.state for a in first.attempts]
    assert states == ["RETRY"] * (runs - 1) + ["SUCCEEDED"]
    # the message sent again is Celery's next retry of the first dispatch:
    # max_retries goes on counting from where the lost message left it
    rows = table_rows(proc, attempts, workflow.id)
    deliveries = [a.delivery for a in rows if a.node_id == first.id]
    assert deliveries == [f"0.{retries}" for retries in range(runs)]
