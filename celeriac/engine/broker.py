"""Noticing that the broker lost its messages: a marker kept in a Redis broker.

A Redis restarted without persistence (or flushed) forgets every message it
held; the nodes whose messages it held stay QUEUED in the database, and the
periodic recovery pass would publish them only once they are
``recovery_delay`` overdue. celeriac keeps a key of its own in the broker's
database: when it is missing, the broker's data is gone, and every QUEUED
node is published again at once. A broker that keeps its messages (RabbitMQ's
durable queues, a persistent Redis) keeps the key, and nothing is published
early. Other transports have no such check.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import OperationalError

logger = logging.getLogger("celeriac.recovery")

#: The key celeriac keeps in a Redis broker's database.
MARKER_KEY = "celeriac:broker-marker"


def broker_emptied(app: Celery) -> bool:
    """Whether the app's Redis broker lost its data since this was last asked.

    Sets the marker when it is missing, so that of several processes asking
    at once exactly one hears True. False for any other transport, and
    while the broker cannot be reached.
    """
    with app.connection_for_write() as connection:
        faults: tuple[type[BaseException], ...] = (
            OperationalError,
            *connection.connection_errors,
            *connection.channel_errors,
        )
        try:
            connection.ensure_connection(max_retries=0)
            if connection.transport.driver_type != "redis":
                return False
            client = connection.default_channel.client  # type: ignore[attr-defined]
            created = bool(client.set(MARKER_KEY, "1", nx=True))
        except faults as exc:
            logger.debug("broker marker not checked: %s", exc)
            return False
    if created:
        logger.warning(
            "the broker holds no celeriac marker: it lost its messages (or is "
            "new); every QUEUED node is published again"
        )
    return created
