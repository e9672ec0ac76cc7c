"""Converted tests that fail only by a difference listed in docs/differences.md.

Each entry: a test (``class::name``, or with its parameters in brackets) and
the id of the difference (``D1``, ...) that makes it fail, with the reason.
A test that fails through celeriac and is not listed here is an unexplained
failure. Every id must be a heading of docs/differences.md.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "differences.md"

#: The tests that run a task calling ``Task.replace`` (one of
#: t/integration/tasks.py's ``add_replaced``, ``add_to_all``,
#: ``fail_replaced``, ``replace_with_chain``, ... named in the test's body):
#: D11, not supported yet. (``test_replace_chain_with_empty_chain`` and
#: ``test_replace_merge_stamps`` are not here: they pass all the same.)
REPLACING: tuple[str, ...] = (
    "test_chain::test_complex_chain",
    "test_chain::test_second_order_replace",
    "test_chain::test_replace_with_chain_that_contains_a_group",
    "test_chain::test_chain_replaced_with_a_chain_and_a_callback",
    "test_chain::test_chain_replaced_with_a_chain_and_an_error_callback",
    "test_chain::test_chain_with_cb_replaced_with_chain_with_cb",
    "test_chain::test_chain_with_eb_replaced_with_chain_with_eb",
    "test_chain::test_chain_with_callback_child_replaced",
    "test_chain::test_chain_with_errback_child_replaced",
    "test_chain::test_chain_child_with_callback_replaced",
    "test_chain::test_chain_child_with_errback_replaced",
    "test_chain::test_task_with_callback_replaced_with_chain",
    "test_chain::test_task_replaced_with_chain",
    "test_chain::test_chain_child_replaced_with_chain_first",
    "test_chain::test_chain_child_replaced_with_chain_middle",
    "test_chain::test_chain_child_replaced_with_chain_last",
    "test_group::test_group_with_callback_child_replaced",
    "test_group::test_group_with_errback_child_replaced",
    "test_group::test_group_child_with_callback_replaced",
    "test_group::test_group_child_with_errback_replaced",
    "test_group::test_group_child_with_callback_replaced_with_chain",
    "test_group::test_group_child_replaced_with_chain_first",
    "test_group::test_group_child_replaced_with_chain_middle",
    "test_group::test_group_child_replaced_with_chain_last",
    "test_group::test_task_replace_with_group_preserves_group_order",
    "test_chord::test_replaced_nested_chord",
    "test_chord::test_group_chain",
    "test_chord::test_group_kwargs",
    "test_chord::test_group_args_and_kwargs",
    "test_chord::test_single_task_header",
    "test_chord::test_empty_header_chord",
    "test_chord::test_nested_chord",
    "test_chord::test_chord_header_task_replaced_with_chain",
    "test_chord::test_chord_header_child_replaced_with_chain_first",
    "test_chord::test_chord_header_child_replaced_with_chain_middle",
    "test_chord::test_chord_header_child_replaced_with_chain_last",
    "test_chord::test_chord_body_task_replaced_with_chain",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_first",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_middle",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_last",
)

#: test -> (difference id, why this test meets it)
LISTED: dict[str, tuple[str, str]] = {
    **{test: ("D11", "a task of the test calls Task.replace") for test in REPLACING},
    "test_chain::test_groupresult_serialization": (
        "D9",
        "a task returns a GroupResult, which is not a value to store",
    ),
    "test_chord::test_add_to_chord": ("D7", "a header task calls add_to_chord()"),
    "test_chord::test_add_chord_to_chord": ("D7", "a header task calls add_to_chord()"),
    "test_chord::test_generator": ("D8", "the header generator is consumed at submit"),
    "test_chord::test_nested_chord_header_link_error": (
        "D16",
        "the inner chord's header fails: Celery never calls the outer body's errback",
    ),
    "test_chord::test_parent_ids": (
        "D6",
        "asserts the result is an AsyncResult with parent results",
    ),
    "test_chord::test_parent_ids__OR": (
        "D6",
        "asserts the result is an AsyncResult with parent results",
    ),
    "test_chord::test_reapplying_frozen_chord_dispatches_body_again": (
        "D6",
        "submits one frozen chord twice; a frozen id names one node",
    ),
    "test_chord::test_mutable_errback_called_by_chord_from_simple": (
        "D13",
        "counts the errback's calls under the chord body's id; celeriac's "
        "errback gets the failed header task's",
    ),
    "test_chord::test_mutable_errback_called_by_chord_from_chain": (
        "D13",
        "counts the errback's calls under the chord body's id; celeriac's "
        "errback gets the failed header task's",
    ),
    "test_stamping_mechanism::test_linking_stamped_sig": (
        "D18",
        "reads the stamped callback from the received message's payload",
    ),
    "test_stamping_mechanism::test_err_linking_stamped_sig": (
        "D18",
        "reads the stamped errback from the received message (request.errbacks)",
    ),
    "test_chord::test_chain_of_implicit_chords_as_body": (
        "D6",
        "asserts the result's id is the task_id given; a Workflow's is its own",
    ),
}


def documented_ids(doc: Path = DOC) -> set[str]:
    """The ids of docs/differences.md's headings (``### D3 ...``)."""
    if not doc.is_file():
        return set()
    return set(re.findall(r"^#+\s+(D\d+)\b", doc.read_text(), flags=re.MULTILINE))


def listed(test: str) -> tuple[str, str] | None:
    """The difference a test is listed under, by its full id or its name."""
    return LISTED.get(test) or LISTED.get(test.partition("[")[0])
