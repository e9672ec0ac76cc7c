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

#: test -> (difference id, why this test meets it)
LISTED: dict[str, tuple[str, str]] = {}


def documented_ids(doc: Path = DOC) -> set[str]:
    """The ids of docs/differences.md's headings (``### D3 ...``)."""
    if not doc.is_file():
        return set()
    return set(re.findall(r"^#+\s+(D\d+)\b", doc.read_text(), flags=re.MULTILINE))


def listed(test: str) -> tuple[str, str] | None:
    """The difference a test is listed under, by its full id or its name."""
    return LISTED.get(test) or LISTED.get(test.partition("[")[0])
