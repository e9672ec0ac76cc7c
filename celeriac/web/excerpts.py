"""Values cut for a page: the start of their JSON text, and the whole's size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Characters of a value a page shows.
SHOWN = 2000


@dataclass(frozen=True)
class Excerpt:
    """The first characters of a value's JSON text, and how large all of it is."""

    text: str
    #: bytes of the whole text, as UTF-8
    size: int
    cut: bool

    @property
    def note(self) -> str:
        """What a cut value says of itself: ``12.4 kB, truncated``."""
        return f"{byte_size(self.size)}, truncated"


def byte_size(size: int) -> str:
    """``812 B``, ``12.4 kB``, ``3.1 MB``: decimal units, as a browser counts."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def excerpt(value: Any, most: int = SHOWN) -> Excerpt:
    r"""``value`` as JSON (``str()`` of what JSON cannot hold), cut at ``most``.

    A lone surrogate, which a page cannot carry, shows escaped (``\udc80``).
    """
    text = json.dumps(value, ensure_ascii=False, default=str)
    shown = text[:most].encode("utf-8", "backslashreplace").decode("utf-8")
    size = len(text.encode("utf-8", "surrogatepass"))
    return Excerpt(shown, size, len(text) > most)
