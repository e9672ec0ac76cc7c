"""Rows → records: what the store hands back to its callers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from celeriac.records import Attempt, WorkflowRecord
from celeriac.storage import integrity


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def workflow_record(row: sa.Row[Any]) -> WorkflowRecord:
    return WorkflowRecord(
        id=row.id,
        name=row.name,
        state=integrity.workflow_state(row.id, row.state),
        result=row.result,
        failed_node_id=row.failed_node_id,
        exc_type=row.exc_type,
        exc_message=row.exc_message,
        metadata=integrity.metadata(row.id, row.metadata),
        created_at=aware(row.created_at) or now(),
        updated_at=aware(row.updated_at) or now(),
        finished_at=aware(row.finished_at),
        key=row.submit_key,
        exc_class=row.exc_class,
        exc_args=row.exc_args,
    )


def attempt_record(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        number=row.number,
        state=row.state,
        worker=row.worker,
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        exc_type=row.exc_type,
        exc_message=row.exc_message,
        pid=row.pid,
        traceback=row.traceback,
        retry_eta=aware(row.retry_eta),
    )
