"""Values come back exactly as Celery's JSON serializer carries them.

On SQLite and PostgreSQL alike, with a real worker: as results, as
arguments (submit's and a signature's own), as what a parent hands its
child, through a chord's join, in progress reports and exception messages.
What the serializer refuses is refused with the path to it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, chord

from celeriac import Engine, InvalidCanvas, WorkflowFailed
from celeriac.storage import connect, migrate
from celeriac.storage.schema import nodes, workflows
from celeriac.storage.values import MAX_RESULT_BYTES

#: What native Celery carries exactly; each must come back the same.
VALUES: dict[str, Any] = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "nul in a string": "a\x00b",
    "nul in a key": {"k\x00": 1, "\x00": "\x00"},
    "2**70": 2**70,
    "-(2**70)": -(2**70),
    "a 1,000-digit int": 10**999 + 7,
    "a float that is whole": 1.0,
    "a string of digits": "123",
    "unicode and emoji": "héllo wörld ✓ 日本 \u2028 😀 \U0001f9c5",
    "a lone surrogate": "x\ud800y",
    "nested, keys in order": {
        "b": 1,
        "a": {"z": [1, 2.5, None, True, {"y": [], "x": {}}], "y": "x"},
        "0": [[["deep"]]],
    },
    "a datetime": datetime(2026, 12, 4, 19, 45, tzinfo=UTC),
    "a decimal": Decimal("0.1000000000000000000001"),
    "None": None,
}


#: Encodes, but Celery's JSON loader cannot read it back: no such type.
UNREADABLE = {"__type__": "no such type", "__value__": 1}


class Unencodable:
    """An object Celery's JSON serializer refuses."""


def assert_same(got: Any, expected: Any, path: str = "value") -> None:
    """``got == expected``, with the same types, key order and NaNs."""
    assert type(got) is type(expected), f"{path}: {got!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{path}: keys {list(got)!r}"
        for key, value in expected.items():
            assert_same(got[key], value, f"{path}[{key!r}]")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{path}: {len(got)} items"
        for index, (item, want) in enumerate(zip(got, expected, strict=True)):
            assert_same(item, want, f"{path}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got), f"{path}: {got!r} is not NaN"
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def nested(depth: int) -> list[Any]:
    """A list inside a list, ``depth`` times."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def stored(engine: Engine, query: Any) -> Any:
    with engine._db.connect() as conn:
        return conn.execute(query).scalar_one()


def count(engine: Engine, table: sa.Table) -> int:
    return int(stored(engine, sa.select(sa.func.count()).select_from(table)))


@pytest.fixture
def vtasks(app):
    """Tasks that report progress, fail with a message, or return what cannot go."""

    @app.task(name="v.report", bind=True, shared=False)
    def report(task, message, current, total=2**70):
        meta = {"current": current, "total": total, "message": message}
        task.update_state(state="PROGRESS", meta=meta)
        return message

    @app.task(name="v.fail", shared=False)
    def fail(message):
        raise ValueError(message)

    @app.task(name="v.unencodable", shared=False)
    def unencodable():
        return {"ok": [1, 2], "x": [0, 1, 2, Unencodable()]}

    @app.task(name="v.text", shared=False)
    def text(length):
        return "é" * length

    return {"report": report, "fail": fail, "unencodable": unencodable, "text": text}


def test_every_value_round_trips_as_argument_result_and_parent_value(
    engine, tasks, worker
):
    expected = list(VALUES.values())
    canvas = chord(
        [chain(tasks.identity.s(value), tasks.identity.s()) for value in expected],
        tasks.identity.s(),
    )
    workflow = engine.submit(canvas)

    assert_same(workflow.get(timeout=30), expected)
    results = [node.result for node in workflow.nodes()]
    assert_same(results[: 2 * len(expected) : 2], expected)  # the first steps
    assert_same(results[1 : 2 * len(expected) : 2], expected)  # their children


def test_submit_args_kwargs_and_metadata_are_stored_and_passed_exactly(
    engine, tasks, worker
):
    args = list(VALUES.values())
    kwargs = {f"k{index}": value for index, value in enumerate(args)}
    metadata = {"values": args}
    workflow = engine.submit(
        tasks.collect.s(), args=tuple(args), kwargs=kwargs, metadata=metadata
    )

    assert_same(workflow.get(timeout=30), [args, kwargs])
    row = workflows.c
    query = sa.select(row.args, row.kwargs, row.metadata).where(row.id == workflow.id)
    with engine._db.connect() as conn:
        stored_args, stored_kwargs, stored_metadata = conn.execute(query).one()
    assert_same(stored_args, args)
    assert_same(stored_kwargs, kwargs)
    assert_same(stored_metadata, metadata)


def test_a_megabyte_string_and_a_list_of_100k_items_round_trip(engine, tasks, worker):
    value = {"text": "é😀\x00" * (2**20 // 3), "items": list(range(100_000))}
    workflow = engine.submit(chain(tasks.identity.s(value), tasks.identity.s()))

    assert_same(workflow.get(timeout=60), value)


def test_progress_and_exception_messages_keep_nul_and_emoji(engine, vtasks, worker):
    message = "a\x00b 😀 \ud800 \x01"
    reported = engine.submit(vtasks["report"].s(message, 2**69))
    assert reported.get(timeout=30) == message
    (node,) = reported.nodes()
    assert node.progress is not None
    assert node.progress.message == message
    assert node.progress.current == float(2**69)
    assert node.progress.total == float(2**70)

    failed = engine.submit(vtasks["fail"].s(message))
    with pytest.raises(WorkflowFailed) as raised:
        failed.get(timeout=30)
    assert raised.value.exc_message == message
    (node,) = failed.nodes()
    assert node.attempts[-1].exc_message == message
    assert node.attempts[-1].traceback is not None
    assert message in node.attempts[-1].traceback


def test_a_nan_progress_is_no_report_and_infinities_are_kept(engine, vtasks, worker):
    nan = engine.submit(vtasks["report"].s("nan", float("nan")))
    infinite = engine.submit(vtasks["report"].s("inf", float("inf"), float("inf")))
    assert (nan.get(timeout=30), infinite.get(timeout=30)) == ("nan", "inf")

    assert nan.nodes()[0].progress is None
    progress = infinite.nodes()[0].progress
    assert progress is not None
    assert (progress.current, progress.total) == (float("inf"), float("inf"))


def test_escaped_text_reads_plainly_in_sql_unless_it_holds_nul(engine, vtasks, worker):
    messages = ["plain é 😀", "a\x00b", "\x01 starts like an escaped one"]
    failed = [engine.submit(vtasks["fail"].s(message)) for message in messages]
    for workflow in failed:
        with pytest.raises(WorkflowFailed) as raised:
            workflow.get(timeout=30)
        assert raised.value.exc_message in messages
    query = "SELECT exc_message FROM celeriac_workflows WHERE id = :id"
    with engine._db.connect() as conn:
        raw = [conn.execute(sa.text(query), {"id": w.id}).scalar_one() for w in failed]
    assert raw == [
        "plain é 😀",
        '\x01"a\\u0000b"',
        '\x01"\\u0001 starts like an escaped one"',
    ]
    assert [w.nodes()[0].attempts[0].exc_message for w in failed] == messages


def test_a_stored_value_that_is_not_celery_json_raises_value_error(engine, tasks):
    workflow = engine.submit(tasks.identity.s(1))
    with engine._db.begin() as conn:
        conn.execute(
            sa.text("UPDATE celeriac_workflows SET args = '[1, ' WHERE id = :id"),
            {"id": workflow.id},
        )
    with (
        engine._db.connect() as conn,
        pytest.raises(ValueError, match="cannot be read"),
    ):
        conn.execute(sa.select(workflows.c.args)).all()


@pytest.mark.parametrize(
    ("submit", "where"),
    [
        (
            lambda t: ((t.collect.s(), (1, {"x": [0, 1, 2, Unencodable()]})), {}),
            'args[1]["x"][3]',
        ),
        (
            lambda t: ((t.collect.s(), ()), {"kwargs": {"k": {Unencodable}}}),
            'kwargs["k"]',
        ),
        (
            lambda t: ((t.collect.s(),), {"metadata": {"m": [Unencodable()]}}),
            'metadata["m"][0]',
        ),
        (
            lambda t: (
                (chain(t.identity.s(1), t.collect.s(2, [Unencodable()])),),
                {},
            ),
            'args[1][0] of task t.collect at canvas["kwargs"]["tasks"][1]',
        ),
        (
            lambda t: ((t.collect.s(k={(1, 2): 3}),), {}),
            'kwargs["k"][(1, 2)] of task t.collect is under a key of type tuple',
        ),
        (
            lambda t: ((t.collect.s(), (1, [10**5000])), {}),
            "args[1][0] cannot be encoded: Exceeds the limit (4300 digits)",
        ),
        (
            lambda t: ((t.collect.s(), (nested(100_000),)), {}),
            "args is nested too deeply",
        ),
        (
            lambda t: ((t.collect.s(), ()), {"kwargs": {"k": [UNREADABLE]}}),
            'kwargs["k"][0] has the keys "__type__" and "__value__"',
        ),
    ],
    ids=[
        "args",
        "kwargs",
        "metadata",
        "signature",
        "key",
        "huge int",
        "deep",
        "envelope",
    ],
)
def test_an_unencodable_argument_is_refused_with_its_path_and_nothing_stored(
    engine, tasks, submit, where
):
    before = count(engine, workflows), count(engine, nodes)
    args, options = submit(tasks)

    with pytest.raises(InvalidCanvas) as raised:
        engine.submit(*args, **options)

    assert where in str(raised.value)
    assert (count(engine, workflows), count(engine, nodes)) == before


def test_a_circular_argument_is_refused_with_its_path(engine, tasks):
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(InvalidCanvas, match=r"args\[0\]\[1\] contains itself"):
        engine.submit(tasks.collect.s(), args=(loop,))
    assert count(engine, workflows) == 0


def test_an_unencodable_result_fails_the_node_with_the_path(
    engine, vtasks, tasks, worker
):
    workflow = engine.submit(chain(vtasks["unencodable"].s(), tasks.identity.s()))

    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=30)

    assert raised.value.exc_type == "EncodeError"
    assert 'result["x"][3] is a Unencodable' in raised.value.exc_message
    assert workflow.state == "FAILED"
    first, second = workflow.nodes()
    assert (first.state, first.result, second.state) == ("FAILED", None, "SKIPPED")


def test_a_result_over_max_result_bytes_fails_the_node_with_size_and_limit(
    app, database_url, vtasks
):
    engine = Engine(app, database_url, max_result_bytes=1000)
    engine.migrate()
    try:
        with engine.embedded_worker():
            fits = engine.submit(vtasks["text"].s(100))  # "\u00e9" * 100: 602 bytes
            too_large = engine.submit(vtasks["text"].s(200))
            assert fits.get(timeout=30) == "é" * 100
            with pytest.raises(WorkflowFailed) as raised:
                too_large.get(timeout=30)
            assert too_large.state == "FAILED"
            assert too_large.nodes()[0].result is None
    finally:
        engine.close()

    assert raised.value.exc_type == "ResultTooLarge"
    assert "1,202 bytes" in raised.value.exc_message
    assert "max_result_bytes (1,000)" in raised.value.exc_message


def test_max_result_bytes_defaults_to_10_mib(engine):
    assert engine.max_result_bytes == MAX_RESULT_BYTES == 10 * 1024 * 1024


def test_upgrading_keeps_stored_values_rows_and_views(empty_database_url):
    """Revision 0006 turns the value columns into text and loses nothing."""
    db = connect(empty_database_url)
    migrate.upgrade(db, "0005")
    canvas = {"task": "t.identity", "args": [2.5], "kwargs": {"b": 1, "a": 2}}
    values = {"canvas": json.dumps(canvas), "at": datetime(2026, 12, 1, tzinfo=UTC)}
    with db.begin() as conn:
        for statement in OLD_ROWS:
            conn.execute(sa.text(statement), values)
    migrate.upgrade(db)
    try:
        with db.connect() as conn:
            workflow = conn.execute(sa.select(workflows)).one()
            node = conn.execute(sa.select(nodes)).one()
            attempts = conn.execute(sa.text("SELECT count(*) FROM celeriac_attempts"))
            summary = conn.execute(
                sa.text("SELECT tasks_done FROM celeriac_workflow_summary_v1")
            )
            assert (attempts.scalar_one(), summary.scalar_one()) == (1, 1)
    finally:
        db.dispose()
    assert (workflow.args, workflow.kwargs, workflow.metadata) == ([1, "x"], {}, None)
    assert workflow.result == node.result == ["done", 2**40]
    assert workflow.canvas == node.signature == canvas


#: A finished workflow as revision 0005 stored it: JSON (JSONB) columns.
OLD_ROWS = [
    "INSERT INTO celeriac_workflows (id, state, canvas, args, kwargs, metadata,"
    " result_node_id, result, created_at, updated_at) VALUES ('w', 'COMPLETED',"
    " :canvas, '[1, \"x\"]', '{}', NULL, 'n', '[\"done\", 1099511627776]', :at, :at)",
    "INSERT INTO celeriac_nodes (id, workflow_id, position, kind, task, signature,"
    " state, waiting, result, created_at) VALUES ('n', 'w', 0, 'TASK', 't.identity',"
    " :canvas, 'SUCCEEDED', 0, '[\"done\", 1099511627776]', :at)",
    "INSERT INTO celeriac_attempts (node_id, workflow_id, number, state, started_at)"
    " VALUES ('n', 'w', 1, 'SUCCEEDED', :at)",
]
