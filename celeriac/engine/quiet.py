"""Celery log lines about a result backend, which celeriac does not use.

A worker asked to revoke tasks marks each one revoked in the app's result
backend. Without one (celeriac keeps results in its own database), Celery logs
``Failed to mark task … as revoked in backend: No result backend is
configured.`` once per task: a cancel of a large workflow would print a line
per node about nothing that went wrong.
"""

from __future__ import annotations

import logging

#: The logger of Celery's remote-control commands (``revoke``).
CONTROL_LOGGER = "celery.worker.control"
_NO_BACKEND = "No result backend is configured"


class NoBackendRevokeFilter(logging.Filter):
    """Drops the revoke warning whose cause is that no backend is configured."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the warning about the missing backend; True otherwise."""
        message = record.getMessage()
        return not ("as revoked in backend" in message and _NO_BACKEND in message)


_FILTER = NoBackendRevokeFilter()


def quiet_missing_backend() -> None:
    """Install the filter (once per process)."""
    logger = logging.getLogger(CONTROL_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
