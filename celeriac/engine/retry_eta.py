"""When a retry is due: the ETA Celery wrote on the retry's own message.

``Task.retry(countdown=...)`` publishes the retry with ``now + countdown``
and only then raises ``Retry`` carrying the bare countdown; the
``task_retry`` signal comes later still. Adding the countdown to the
signal's clock would record an ETA later than the message's by however long
the worker took in between (a second, on a loaded machine). So the publish
of a node's retry is watched, in the thread that retries, and its ETA kept
until the retry is recorded.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from celeriac.engine.scheduler import HEADER

_published = threading.local()


def note_retry_publish(headers: Any = None, **_: Any) -> None:
    """``before_task_publish``: keep the ETA of a node's retry message."""
    if not isinstance(headers, dict) or not isinstance(headers.get(HEADER), dict):
        return
    if headers.get("retries") and isinstance(headers.get("eta"), str):
        _published.retry = (headers.get("id"), headers["eta"])


def retry_eta(task_id: str, when: Any) -> datetime | None:
    """The ETA of ``task_id``'s retry, from its message if it was seen.

    Otherwise from Celery's ``Retry.when``: an ETA, or a countdown counted
    from now.
    """
    noted = getattr(_published, "retry", None)
    _published.retry = None
    if noted is not None and noted[0] == task_id:
        return _aware(datetime.fromisoformat(noted[1]))
    if isinstance(when, datetime):
        return _aware(when)
    if isinstance(when, int | float):
        return datetime.now(UTC) + timedelta(seconds=when)
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
