"""Persistence: the schema, the store and migrations. Knows nothing of Celery."""

from celeriac.storage.database import connect
from celeriac.storage.store import Store

__all__ = ["Store", "connect"]
