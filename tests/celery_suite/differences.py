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

#: The tests whose replacement (``Task.replace``) links ``redis_echo`` to a
#: chain ending in a list, the result of a chord's body: the callback fails
#: (Redis takes no list). Celery's ``get()`` returns the body's result all the
#: same; through celeriac the failed callback fails the workflow (D4).
FAILING_CALLBACK: tuple[str, ...] = (
    "test_chord::test_chord_body_task_replaced_with_chain",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_first",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_middle",
    "test_chord::test_chord_body_chain_child_replaced_with_chain_last",
)

#: test -> (difference id, why this test meets it)
LISTED: dict[str, tuple[str, str]] = {
    **{
        test: ("D4", "a callback of the replacement fails: the workflow fails")
        for test in FAILING_CALLBACK
    },
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
