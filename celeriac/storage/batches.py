"""Bounds on what one statement or one transaction takes, whatever the size.

SQLite allows 32,766 bound variables in a statement and psycopg 65,535
parameters: a statement given a list of ids takes them in chunks of
``CHUNK``. Work on a whole large workflow is set-based SQL, or goes in
pages of ``PAGE`` nodes (publishing, recovery), so that no operation holds
a million nodes in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Ids in one statement's ``IN`` list: well under both drivers' limits,
#: with room for the statement's other parameters.
CHUNK = 5_000
#: Nodes read, published or recovered in one go.
PAGE = 1_000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
