"""What a request asks for, read from its query string: filters and pages.

The list's filters live in the URL (``?state=FAILED&since=2026-12-01``), so
a view can be bookmarked; the API takes the same parameters. A value that
cannot be read is a :class:`BadInput`, which the app answers with 422.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from celeriac import WorkflowCursor, WorkflowFilter, WorkflowState

#: Workflows on one page of the list, unless ``limit`` says otherwise.
PAGE_SIZE = 50
#: The most ``limit`` may ask for.
MAX_PAGE_SIZE = 500
#: The parameters that filter the list, in the order the form shows them.
FILTER_PARAMETERS = ("state", "name", "since", "before", "failed", "id")


class BadInput(ValueError):
    """A request parameter that cannot be used; the message names it."""


def workflow_filter(params: Mapping[str, str]) -> WorkflowFilter:
    """The filter of ``state``, ``name``, ``since``, ``before``, ``failed``, ``id``."""
    state = params.get("state") or None
    if state is not None and state not in WorkflowState.__members__:
        names = ", ".join(WorkflowState.__members__)
        raise BadInput(f"state: {state!r} is not one of {names}")
    return WorkflowFilter(
        state=state,
        name=params.get("name") or None,
        created_after=moment(params, "since"),
        created_before=moment(params, "before"),
        id_prefix=params.get("id") or None,
        failed_node=flag(params, "failed"),
    )


def moment(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), or None."""
    text = params.get(name)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"{name}: {text!r} is not a date or time (e.g. 2026-12-05 or "
            "2026-12-05T09:30:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def flag(params: Mapping[str, str], name: str) -> bool:
    """``1``/``true``/``on`` or ``0``/``false``/absent."""
    text = params.get(name, "").lower()
    if text in ("", "0", "false", "off"):
        return False
    if text in ("1", "true", "on"):
        return True
    raise BadInput(f"{name}: {text!r} is not a flag (use 1 or 0)")


def count(params: Mapping[str, str], name: str, default: int, most: int) -> int:
    """A whole number from 1 to ``most``; ``default`` when absent."""
    text = params.get(name)
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadInput(f"{name}: {text!r} is not a whole number from 1 to {most}")
    return int(text)


def cursor(params: Mapping[str, str]) -> WorkflowCursor | None:
    """The page's start (``after``, as :func:`cursor_text` wrote it), or None."""
    text = params.get("after")
    if not text:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text.encode()).decode()
        when, _, workflow_id = decoded.partition("|")
        at = datetime.fromisoformat(when)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput(f"after: {text!r} is not a page cursor") from None
    if not workflow_id or at.tzinfo is None:
        raise BadInput(f"after: {text!r} is not a page cursor")
    return WorkflowCursor(at, workflow_id)


def cursor_text(at: datetime, workflow_id: str) -> str:
    """The ``after`` value of the page that starts below this workflow."""
    raw = f"{at.isoformat()}|{workflow_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def filter_query(params: Mapping[str, str]) -> dict[str, str]:
    """The filter parameters of ``params`` that are set, for building links."""
    return {name: params[name] for name in FILTER_PARAMETERS if params.get(name)}
