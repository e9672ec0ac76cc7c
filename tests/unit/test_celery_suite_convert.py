"""The conversion of Celery's canvas tests: dispatches rewritten, nothing else."""

from __future__ import annotations

import ast

from tests.celery_suite.convert import IMPORT, convert
from tests.celery_suite.tally import (
    LISTED_DIFFERENCE,
    NOT_APPLICABLE,
    NOT_EXPRESSIBLE,
    OTHER,
    PASSED,
    PASSED_LOCALLY,
    classify,
)

SAMPLE = """
from celery import chain, group
from .tasks import add


class test_chain:
    def test_simple_chain(self, manager):
        c = add.s(4, 4) | add.s(8)
        assert c().get(timeout=10) == 16
        assert chain(add.s(1, 1))().get(timeout=10) == 2
        assert add.delay(1, 2).get() == 3
        res = group(add.s(1, 1)).apply_async(queue="q")
        assert len(res.get()) == 1
        assert sorted([2, 1]) == [1, 2]
"""


def _calls(source: str) -> list[str]:
    return [
        ast.unparse(node.func)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
    ]


def test_dispatches_go_through_the_helpers_and_assertions_stay() -> None:
    converted, counts = convert(SAMPLE)

    assert converted.splitlines()[0] == IMPORT
    assert counts == {"apply_async": 1, "delay": 1, "call": 2}
    calls = _calls(converted)
    assert calls.count("_celeriac_.call") == 2
    assert "_celeriac_.delay" in calls
    assert "_celeriac_.apply_async" in calls
    # names the module imports or defines, builtins and methods are left alone
    assert {"chain", "group", "sorted", "len", "add.s"} <= set(calls)
    original = ast.parse(SAMPLE)
    asserts = [
        node for node in ast.walk(ast.parse(converted)) if isinstance(node, ast.Assert)
    ]
    assert len(asserts) == sum(isinstance(n, ast.Assert) for n in ast.walk(original))
    names = [
        n.name for n in ast.walk(ast.parse(converted)) if isinstance(n, ast.FunctionDef)
    ]
    assert names == ["test_simple_chain"]


def _record(outcome: str, **more: object) -> dict[str, object]:
    return {"outcome": outcome, "message": "", "submitted": 1, **more}


def test_each_outcome_is_counted_where_it_belongs() -> None:
    passed = _record("passed")
    failed = _record("failed", message="AssertionError: 1 == 2")
    listed = "test_chord::test_chord_body_task_replaced_with_chain"

    assert classify("t::a", _record("skipped"), passed).category == NOT_APPLICABLE
    assert classify("t::a", passed, passed).category == PASSED
    assert (
        classify("t::a", passed, _record("passed", submitted=0)).category
        == PASSED_LOCALLY
    )
    refused = _record("failed", not_expressible=["submit() takes no call option x"])
    assert classify("t::a", passed, refused).detail == "submit() takes no call option x"
    assert classify("t::a", passed, refused).category == NOT_EXPRESSIBLE
    assert classify(listed, passed, failed).category == LISTED_DIFFERENCE
    assert classify(listed, passed, failed).detail.startswith("D4: ")
    assert classify("t::a", passed, failed).category == OTHER
